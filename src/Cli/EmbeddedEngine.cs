using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Queue.Contracts.Jobs;
using Queue.Contracts.Ports;

namespace Queue.Cli;

/// <summary>The whole engine in this process (coordinator, workers, embedded queue and store), as the ingress hosts it by default.</summary>
public sealed class EmbeddedEngine : IAsyncDisposable
{
    private readonly IHost host;

    private EmbeddedEngine(IHost host) => this.host = host;

    public JobStore Jobs => host.Services.GetRequiredService<JobStore>();

    public JobSubmission Submission => host.Services.GetRequiredService<JobSubmission>();

    public IBlobStore Blobs => host.Services.GetRequiredService<IBlobStore>();

    /// <summary>The engine's calls on its blob store so far, on the intermediate container, once the ended jobs' intermediates are deleted.</summary>
    public async Task<Queue.Hosting.BlobCallCounts> IntermediateOperationsAsync(CancellationToken cancellationToken)
    {
        var cleanup = host.Services.GetRequiredService<Queue.Coordinator.IntermediateCleanup>();
        for (var i = 0; i < 600 && cleanup.Pending > 0; i++)
        {
            await Task.Delay(50, cancellationToken);
        }
        return host.Services.GetRequiredService<Queue.Hosting.BlobOperations>().Count("intermediate");
    }

    public static async Task<EmbeddedEngine> StartAsync(string dataPath, int slots, CancellationToken cancellationToken, IReadOnlyDictionary<string, string?>? settings = null)
    {
        var builder = Queue.Hosting.QueueApplication.CreateHostBuilder();
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Queue:Adapters:DataPath"] = dataPath,
            ["Queue:Worker:Slots"] = slots.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["Queue:Coordinator:PollInterval"] = "00:00:00.100",
        });
        if (settings is not null)
        {
            builder.Configuration.AddInMemoryCollection(settings);
        }
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.AddQueueAdapters();
        builder.AddCoordinator();
        builder.AddWorker();
        var host = builder.Build();
        try
        {
            // Opening the coordination store takes the data folder's lock: say so plainly if another engine holds it.
            host.Services.GetRequiredService<IKeyValueStore>();
        }
        catch (InvalidOperationException e) when (e.Message.Contains("in use by another process", StringComparison.Ordinal))
        {
            host.Dispose();
            throw new CliException(e.Message, 1);
        }
        await host.StartAsync(cancellationToken);
        return new EmbeddedEngine(host);
    }

    /// <summary>Starts the engine, or prints why it cannot (another engine holds the folder) and returns null.</summary>
    public static async Task<EmbeddedEngine?> StartOrReportAsync(string dataPath, int slots, CancellationToken cancellationToken, IReadOnlyDictionary<string, string?>? settings = null)
    {
        try
        {
            return await StartAsync(dataPath, slots, cancellationToken, settings);
        }
        catch (CliException e)
        {
            await Console.Error.WriteLineAsync($"error: {e.Message}");
            return null;
        }
    }

    /// <summary>Submits a job; returns its id.</summary>
    public async Task<string> SubmitAsync(JobRequest request, CancellationToken cancellationToken)
    {
        var (id, error) = await Submission.SubmitAsync(request, cancellationToken);
        return error is null ? id! : throw new InvalidOperationException($"{error.Title}: {error.Detail}");
    }

    public async Task<JobView> ViewAsync(string id, CancellationToken cancellationToken) =>
        await Jobs.GetAsync(id, cancellationToken) ?? throw new InvalidOperationException($"Job {id} vanished.");

    /// <summary>Submits a job and waits for it to end, calling <paramref name="progress"/> as it runs.</summary>
    public async Task<JobView> RunAsync(JobRequest request, Action<JobStatus>? progress, CancellationToken cancellationToken)
    {
        var id = await SubmitAsync(request, cancellationToken);
        while (true)
        {
            var view = await ViewAsync(id, cancellationToken);
            progress?.Invoke(view.Status);
            if (view.Status.IsTerminal)
            {
                return view;
            }
            // An in-process read: polling often costs nothing and keeps the measured time the job's own.
            await Task.Delay(10, cancellationToken);
        }
    }

    /// <summary>Deletes a job's output parts (the benchmarks' outputs are large and checked already).</summary>
    public Task DeleteOutputAsync(JobView view, CancellationToken cancellationToken) =>
        view.Status.OutputContainer is { } container ? Blobs.DeletePrefixAsync(container, view.Spec.Id + "/", cancellationToken) : Task.CompletedTask;

    public async ValueTask DisposeAsync()
    {
        await host.StopAsync(CancellationToken.None);
        host.Dispose();
    }
}
