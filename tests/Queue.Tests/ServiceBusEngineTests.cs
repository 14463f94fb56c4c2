using System.Net.Http.Json;
using Queue.Contracts;
using Queue.Contracts.Jobs;
using Queue.ServiceBusEndpoint;
using Queue.Tests.Infrastructure;
using Queue.Worker.Apps;

namespace Queue.Tests;

/// <summary>
/// The engine on Service Bus (Azure.Messaging.ServiceBus against the test endpoint) with etcd and the
/// filesystem blob store, as processes: the queues made as deploy/README.md says (lock 3 s here, so a
/// killed worker's task comes back within seconds; max delivery count 100).
/// </summary>
public sealed class ServiceBusClusterFixture : ProcessClusterFixture
{
    public ServiceBusTestEndpoint Bus { get; private set; } = null!;

    protected override int EtcdMembers => 1;

    protected override Task StartStorageAsync()
    {
        RepoPaths.CopyBooksTo(Path.Combine(Folder, "data", "books"));
        Bus = ServiceBusTestEndpoint.Start();
        foreach (var name in new[] { "queue-tasks", "queue-events", "short-tasks", "short-events" })
        {
            Bus.CreateQueue(name, TimeSpan.FromSeconds(3), name.StartsWith("short", StringComparison.Ordinal) ? 5 : 100);
        }
        return Task.CompletedTask;
    }

    protected override ValueTask StopStorageAsync()
    {
        Bus?.Dispose();
        return ValueTask.CompletedTask;
    }

    protected override Dictionary<string, string> AdapterEnvironment() => new()
    {
        ["Queue__Adapters__WorkQueue"] = "servicebus",
        ["Queue__Adapters__DataPath"] = Path.Combine(Folder, "data"),
        ["Queue__ServiceBus__ConnectionString"] = Bus.ConnectionString(),
        ["Queue__ServiceBus__AdministrationConnectionString"] = Bus.AdministrationConnectionString(),
        ["Queue__WorkQueue__LeaseDuration"] = "00:00:03",
    };
}

public sealed class ServiceBusEngineTests(ServiceBusClusterFixture cluster) : IClassFixture<ServiceBusClusterFixture>
{
    private static readonly Lazy<List<string>> Reference = new(() => SequentialReference.Run(new WordCountApp(), SequentialReference.ReadFolder(RepoPaths.Gutenberg)));

    [Fact]
    public async Task WordCountOnServiceBusEqualsTheReference()
    {
        var id = await cluster.Client.SubmitAsync(new { app = "wordcount", input = "books", mapTasks = 8, reduceTasks = 3 });
        var view = await cluster.Client.WaitAsync(id, TimeSpan.FromMinutes(2));
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        Assert.Equal(Reference.Value, await cluster.Client.OutputAsync(id));
        // The ingress reads the depth from the administration API.
        var queues = await cluster.Client.Http.GetFromJsonAsync<List<Queue.Contracts.Ports.QueueDepth>>("/queues");
        Assert.Equal(["tasks", "events"], queues!.Select(q => q.Queue));
    }

    [Fact]
    public async Task WorkersAndTheLeaderKilledMidTaskStillGiveTheReference()
    {
        var args = new Dictionary<string, string> { ["stallRate"] = "1", ["stallSeconds"] = "1" };
        var id = await cluster.Client.SubmitAsync(new { app = "crash", input = "books", mapTasks = 10, reduceTasks = 3, args, maxAttempts = 20 });
        var kills = 0;
        var leaderKilled = false;
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(3);
        JobView view;
        while (!(view = await cluster.Client.GetAsync(id)).Status.IsTerminal)
        {
            Assert.True(DateTime.UtcNow < deadline, "The job did not end.");
            await Task.Delay(700);
            if (kills < 3 && view.Status.State is JobState.Mapping or JobState.Reducing && view.Status.Map.Running + view.Status.Reduce.Running > 0)
            {
                var index = kills % cluster.Workers.Count;
                cluster.Workers[index].Kill();
                kills++;
                cluster.Workers[index] = await cluster.StartWorkerAsync(index);
            }
            else if (!leaderKilled && view.Status.State == JobState.Reducing)
            {
                var leader = await cluster.LeaderAsync();
                var at = cluster.Coordinators.IndexOf(leader);
                leader.Kill();
                leaderKilled = true;
                cluster.Coordinators[at] = await cluster.StartAsync("Queue.Coordinator", new() { ["Queue__Coordinator__CandidateId"] = $"coordinator-{at}" });
            }
        }
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        Assert.True(kills >= 2, $"Only {kills} kills happened.");
        Assert.Equal(Reference.Value, await cluster.Client.OutputAsync(id));
    }

    [Fact]
    public async Task AServiceWhoseQueuesCannotServeTheEngineStopsWithAClearMessage()
    {
        // short-tasks allows 5 deliveries; the engine is configured for up to 100.
        var (code, output) = await ExitOfAsync("Queue.Coordinator", new()
        {
            ["Queue__Coordinator__CandidateId"] = "misconfigured",
            ["Queue__ServiceBus__QueuePrefix"] = "short-",
        });
        Assert.True(code == 78, output);
        Assert.Contains("MaxDeliveryCount is 5, below Queue:WorkQueue:MaxDeliveryCount (100)", output, StringComparison.Ordinal);

        var key = cluster.Bus.Policies[0].Key;
        (code, output) = await ExitOfAsync("Queue.Worker", new()
        {
            ["Queue__Worker__WorkerId"] = "wrong-key",
            ["Queue__ServiceBus__ConnectionString"] = cluster.Bus.ConnectionString().Replace(key, Convert.ToBase64String(new byte[32]), StringComparison.Ordinal),
        });
        Assert.True(code == 78, output);
        Assert.Contains("not authorized", output, StringComparison.Ordinal);
        Assert.DoesNotContain(key, output, StringComparison.Ordinal);
    }

    /// <summary>Starts a service that should stop at once; its exit code and output (it may or may not answer /healthz first).</summary>
    private async Task<(int Code, string Output)> ExitOfAsync(string project, Dictionary<string, string> settings)
    {
        ServiceProcess service;
        try
        {
            service = await cluster.StartAsync(project, settings);
        }
        catch (InvalidOperationException e) when (e.Message.StartsWith("The service exited with ", StringComparison.Ordinal))
        {
            var code = int.Parse(e.Message["The service exited with ".Length..e.Message.IndexOf(':', StringComparison.Ordinal)], System.Globalization.CultureInfo.InvariantCulture);
            return (code, e.Message);
        }
        await using (service)
        {
            Assert.True(await service.WaitForExitAsync(TimeSpan.FromSeconds(60)), $"{project} kept running:\n{service.Output}");
            return (service.ExitCode, service.Output);
        }
    }

    [Fact]
    public async Task WithoutTheManageRightTheScaleSignalCountsFromTheJobStore()
    {
        await using var ingress = await cluster.StartAsync("Queue.Ingress", new()
        {
            ["Queue__ServiceBus__ConnectionString"] = cluster.Bus.ConnectionString("send-listen"),
            ["Queue__ServiceBus__AdministrationConnectionString"] = cluster.Bus.AdministrationConnectionString("send-listen"),
        });
        using var client = new JobClient(ingress.BaseAddress);
        var id = await client.SubmitAsync(new { app = "wordcount", input = "books", mapTasks = 8, reduceTasks = 2 });
        var signal = await client.Http.GetFromJsonAsync("/scale", QueueJsonContext.Default.ScaleSignal);
        Assert.NotNull(signal);
        var view = await client.WaitAsync(id, TimeSpan.FromMinutes(2));
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        Assert.Equal(Reference.Value, await client.OutputAsync(id));
        Assert.Contains("no Manage right", ingress.Output, StringComparison.Ordinal);
    }
}

/// <summary>
/// <c>scripts/cluster.sh up 2 servicebus</c> as a user runs it (etcd, the Service Bus test endpoint,
/// three coordinators, two workers, the ingress), a worker killed by its PID mid-task. Shares port 5000
/// with the README test, so it runs in that collection.
/// </summary>
[Collection("readme")]
public sealed class ServiceBusClusterScriptTests : IAsyncLifetime
{
    private readonly ScriptedCluster cluster = new("queue-sb-cluster");

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await cluster.DisposeAsync();

    [Fact]
    public async Task AWorkerKilledMidTaskOnTheServiceBusClusterLeavesTheOutputExact()
    {
        var (exit, output) = await cluster.RunAsync("up 2 servicebus", TimeSpan.FromMinutes(5));
        Assert.True(exit == 0, output);
        Assert.Contains("put input under", output, StringComparison.Ordinal);
        RepoPaths.CopyBooksTo(Path.Combine(cluster.Root, "data", "books"));
        using var client = new JobClient(new Uri("http://127.0.0.1:5000"));
        var args = new Dictionary<string, string> { ["stallRate"] = "1", ["stallSeconds"] = "1" };
        var id = await client.SubmitAsync(new { app = "crash", input = "books", mapTasks = 10, reduceTasks = 3, args, maxAttempts = 20 });
        var killed = false;
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(3);
        JobView view;
        while (!(view = await client.GetAsync(id)).Status.IsTerminal)
        {
            Assert.True(DateTime.UtcNow < deadline, "The job did not end.");
            await Task.Delay(300);
            if (!killed && view.Status.Map.Running > 0)
            {
                var pid = File.ReadAllLines(Path.Combine(cluster.Root, "pids")).Select(l => l.Split(' ')).Single(p => p[0] == "worker-1")[1];
                OsProcess.Signal(int.Parse(pid, System.Globalization.CultureInfo.InvariantCulture), "KILL");
                killed = true;
            }
        }
        Assert.True(killed, "No map was seen running.");
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        Assert.Equal(SequentialReference.Run(new WordCountApp(), SequentialReference.ReadFolder(RepoPaths.Gutenberg)), await client.OutputAsync(id));
        // The key the script made for the cluster stays in its folder, out of the logs.
        var key = (await File.ReadAllTextAsync(Path.Combine(cluster.Root, "servicebus.key"))).Trim();
        foreach (var log in Directory.GetFiles(Path.Combine(cluster.Root, "logs")))
        {
            Assert.DoesNotContain(key, await File.ReadAllTextAsync(log), StringComparison.Ordinal);
        }
    }
}
