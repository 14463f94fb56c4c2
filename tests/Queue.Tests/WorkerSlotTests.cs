using System.Collections.Concurrent;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Queue.Adapters.Embedded;
using Queue.Contracts.Jobs;
using Queue.Contracts.Ports;
using Queue.Tests.Infrastructure;
using Queue.Worker.Apps;

namespace Queue.Tests;

/// <summary>
/// A worker rides out broker outages (the port's <see cref="BrokerUnavailableException"/>) with back-off,
/// and stops its host on anything else, so a bug restarts the process instead of hiding in a log.
/// The engine is real (embedded queue, store and folder); only the task queue's receive has faults injected.
/// </summary>
public sealed class WorkerSlotTests : IAsyncLifetime
{
    private readonly string folder = Path.Combine(Path.GetTempPath(), "queue-slots", Guid.NewGuid().ToString("N"));
    private readonly ConcurrentQueue<Exception> faults = new();
    private readonly BoundedLog log = new();
    private IHost host = null!;

    public async Task InitializeAsync()
    {
        RepoPaths.CopyBooksTo(Path.Combine(folder, "data", "books"));
        var builder = Host.CreateApplicationBuilder();
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Queue:Adapters:DataPath"] = Path.Combine(folder, "data"),
            ["Queue:Worker:Slots"] = "2",
            ["Queue:Worker:TempPath"] = Path.Combine(folder, "tmp"),
            ["Queue:Worker:ReceiveWait"] = "00:00:00.200",
            ["Queue:Coordinator:PollInterval"] = "00:00:00.100",
        });
        builder.Logging.ClearProviders().AddProvider(new LogCapture(log));
        builder.AddQueueAdapters();
        builder.AddCoordinator();
        builder.AddWorker();
        builder.Services.AddKeyedSingleton<IWorkQueue>(QueueNames.Tasks, (sp, _) => new FaultyReceive(
            new EmbeddedWorkQueue(QueueNames.Tasks, sp.GetRequiredService<IOptions<WorkQueueOptions>>().Value, TimeProvider.System), faults));
        host = builder.Build();
        await host.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await host.StopAsync();
        host.Dispose();
        Directory.Delete(folder, recursive: true);
    }

    [Fact]
    public async Task BrokerOutagesAreRiddenOutAndTheJobStillFinishesExactly()
    {
        for (var i = 0; i < 6; i++)
        {
            faults.Enqueue(new BrokerUnavailableException("test broker", "connection refused"));
        }
        var (id, error) = await host.Services.GetRequiredService<JobSubmission>().SubmitAsync(
            new JobRequest { App = "wordcount", Input = "books", MapTasks = 4, ReduceTasks = 2 }, CancellationToken.None);
        Assert.Null(error);
        var jobs = host.Services.GetRequiredService<JobStore>();
        var view = await WaitAsync(jobs, id!);
        Assert.Equal(JobState.Succeeded, view.Status.State);
        Assert.True(faults.IsEmpty);
        Assert.Contains("Receiving a task failed, retrying in", log.ToString(), StringComparison.Ordinal);
        Assert.False(host.Services.GetRequiredService<IHostApplicationLifetime>().ApplicationStopping.IsCancellationRequested);

        var blobs = host.Services.GetRequiredService<IBlobStore>();
        var lines = new List<string>();
        foreach (var part in view.Status.Outputs)
        {
            lines.AddRange(System.Text.Encoding.UTF8.GetString(await blobs.ReadAllBytesAsync(view.Status.OutputContainer!, part, CancellationToken.None)).Split('\n'));
        }
        Assert.Equal(SequentialReference.Run(new WordCountApp(), SequentialReference.ReadFolder(RepoPaths.Gutenberg)), SequentialReference.SortByKey(lines));
    }

    [Fact]
    public async Task AnyOtherErrorStopsTheHostWithAClearLog()
    {
        var stopping = new TaskCompletionSource();
        host.Services.GetRequiredService<IHostApplicationLifetime>().ApplicationStopping.Register(() => stopping.TrySetResult());
        try
        {
            faults.Enqueue(new InvalidOperationException("a bug in the adapter"));
            await stopping.Task.WaitAsync(TimeSpan.FromSeconds(10));
            Assert.Equal(70, Environment.ExitCode);
        }
        finally
        {
            // The exit code belongs to this test's host, not to the test runner.
            Environment.ExitCode = 0;
        }
        Assert.Contains("stops: a slot failed with an error that is not a broker outage", log.ToString(), StringComparison.Ordinal);
        Assert.Contains("a bug in the adapter", log.ToString(), StringComparison.Ordinal);
    }

    private static async Task<JobView> WaitAsync(JobStore jobs, string id)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(1);
        while (true)
        {
            var view = await jobs.GetAsync(id, CancellationToken.None);
            if (view!.Status.IsTerminal || DateTime.UtcNow > deadline)
            {
                return view;
            }
            await Task.Delay(100);
        }
    }

    /// <summary>The real queue, whose receives first throw the injected faults, one each.</summary>
    private sealed class FaultyReceive(IWorkQueue inner, ConcurrentQueue<Exception> faults) : IWorkQueue
    {
        public string Name => inner.Name;

        public bool IsDurable => inner.IsDurable;

        public Task SendAsync(ReadOnlyMemory<byte> body, CancellationToken cancellationToken) => inner.SendAsync(body, cancellationToken);

        public Task<IReadOnlyList<ILeasedMessage>> ReceiveAsync(int maxMessages, TimeSpan maxWait, CancellationToken cancellationToken) =>
            faults.TryDequeue(out var fault) ? Task.FromException<IReadOnlyList<ILeasedMessage>>(fault) : inner.ReceiveAsync(maxMessages, maxWait, cancellationToken);

        public Task<IReadOnlyList<ILeasedMessage>> ReceiveDeadLetteredAsync(int maxMessages, TimeSpan maxWait, CancellationToken cancellationToken) =>
            inner.ReceiveDeadLetteredAsync(maxMessages, maxWait, cancellationToken);

        public Task<QueueDepth> GetDepthAsync(CancellationToken cancellationToken) => inner.GetDepthAsync(cancellationToken);
    }

    private sealed class LogCapture(BoundedLog log) : ILoggerProvider
    {
        public ILogger CreateLogger(string categoryName) => new Logger(log);

        public void Dispose()
        {
        }

        private sealed class Logger(BoundedLog log) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
                log.Append($"{logLevel}: {formatter(state, exception)} {exception?.Message}");
        }
    }
}
