using Queue.Contracts.Jobs;
using Queue.Coordinator;
using Queue.Tests.Infrastructure;
using Queue.Worker.Apps;
using System.Net.Http.Json;

namespace Queue.Tests;

/// <summary>
/// The engine as separate processes on loopback: a real etcd and RabbitMQ, two coordinators, two
/// workers and an ingress, sharing a filesystem blob store.
/// </summary>
public sealed class ClusterFixture : IAsyncLifetime
{
    public string Folder { get; } = Path.Combine(Path.GetTempPath(), "queue-cluster", Guid.NewGuid().ToString("N"));

    public EtcdServer Etcd { get; private set; } = null!;

    public RabbitMqServer Rabbit { get; private set; } = null!;

    public List<ServiceProcess> Coordinators { get; } = [];

    public List<ServiceProcess> Workers { get; } = [];

    public ServiceProcess Ingress { get; private set; } = null!;

    public JobClient Client { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        var books = Path.Combine(Folder, "data", "books");
        Directory.CreateDirectory(books);
        foreach (var file in Directory.GetFiles(RepoPaths.Gutenberg, "*.txt"))
        {
            File.Copy(file, Path.Combine(books, Path.GetFileName(file)));
        }
        Etcd = await EtcdServer.StartAsync();
        Rabbit = await RabbitMqServer.StartAsync();
        for (var i = 0; i < 2; i++)
        {
            Coordinators.Add(await StartAsync("Queue.Coordinator", new() { ["Queue__Coordinator__CandidateId"] = $"coordinator-{i}" }));
        }
        for (var i = 0; i < 2; i++)
        {
            Workers.Add(await StartAsync("Queue.Worker", new() { ["Queue__Worker__WorkerId"] = $"worker-{i}", ["Queue__Worker__Slots"] = "2" }));
        }
        Ingress = await StartAsync("Queue.Ingress", []);
        Client = new JobClient(Ingress.BaseAddress);
    }

    public Task<ServiceProcess> StartAsync(string project, Dictionary<string, string> extra)
    {
        var environment = new Dictionary<string, string>
        {
            ["Queue__Adapters__WorkQueue"] = "rabbitmq",
            ["Queue__Adapters__Coordination"] = "etcd",
            ["Queue__Adapters__DataPath"] = Path.Combine(Folder, "data"),
            ["Queue__RabbitMq__ConnectionString"] = Rabbit.ConnectionString,
            ["Queue__RabbitMq__Prefetch"] = "2",
            ["Queue__Etcd__Endpoints"] = Etcd.Endpoints,
            ["Queue__Etcd__LeaseTtl"] = "00:00:02",
            ["Queue__Coordinator__PollInterval"] = "00:00:00.100",
            ["Queue__Coordinator__RetryDelay"] = "00:00:00.300",
            ["Queue__Worker__TempPath"] = Path.Combine(Folder, "tmp"),
            ["Queue__Worker__CancelCheckInterval"] = "00:00:00.500",
        };
        foreach (var (key, value) in extra)
        {
            environment[key] = value;
        }
        return ServiceProcess.StartAsync(project, Folder, environment);
    }

    public async Task DisposeAsync()
    {
        Client.Dispose();
        foreach (var process in Coordinators.Concat(Workers).Append(Ingress))
        {
            await process.DisposeAsync();
        }
        await Rabbit.DisposeAsync();
        await Etcd.DisposeAsync();
        Directory.Delete(Folder, recursive: true);
    }
}

public sealed class DistributedEngineTests(ClusterFixture cluster) : IClassFixture<ClusterFixture>
{
    private static readonly Lazy<List<(string Name, string Text)>> Books = new(() => SequentialReference.ReadFolder(RepoPaths.Gutenberg).ToList());

    [Fact]
    public async Task WordCountThroughTheClusterEqualsTheReferenceWithEveryMapRunOnce()
    {
        var id = await cluster.Client.SubmitAsync(new { app = "wordcount", input = "books", mapTasks = 8, reduceTasks = 3 });
        var view = await cluster.Client.WaitAsync(id, TimeSpan.FromMinutes(2));
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        Assert.Equal(SequentialReference.Run(new WordCountApp(), Books.Value), await cluster.Client.OutputAsync(id));
        var details = await cluster.Client.GetDetailsAsync(id);
        Assert.All(details.Tasks, t => Assert.Equal(1, t.Attempts)); // no needless re-execution
        Assert.Equal(details.Tasks.Count, view.Status.Attempts);
    }

    [Fact]
    public async Task MapTasksRunInParallelOnBothWorkerProcesses()
    {
        // Each attempt stalls a second, so parallelism shows in overlapping run times.
        var args = new Dictionary<string, string> { ["stallRate"] = "1", ["stallSeconds"] = "1" };
        var id = await cluster.Client.SubmitAsync(new { app = "crash", input = "books", mapTasks = 8, reduceTasks = 2, args });
        var view = await cluster.Client.WaitAsync(id, TimeSpan.FromMinutes(2));
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        var maps = (await cluster.Client.GetDetailsAsync(id)).Tasks.Where(t => t.Phase == TaskPhase.Map).ToList();
        Assert.Equal(2, maps.Select(t => t.Worker).Distinct().Count());
        var overlapping = maps.Count(a => maps.Any(b => b != a && b.Worker != a.Worker && a.StartedAt < b.FinishedAt && b.StartedAt < a.FinishedAt));
        Assert.True(overlapping >= 2, "No two map tasks on different workers overlapped in time.");
        Assert.Equal(SequentialReference.Run(new WordCountApp(), Books.Value), await cluster.Client.OutputAsync(id));
    }

    [Fact]
    public async Task JobCompletesWhenTheLeaderIsKilledDuringTheMapPhase()
    {
        var args = new Dictionary<string, string> { ["stallRate"] = "1", ["stallSeconds"] = "1" };
        var id = await cluster.Client.SubmitAsync(new { app = "crash", input = "books", mapTasks = 12, reduceTasks = 2, args });
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while ((await cluster.Client.GetAsync(id)).Status is not { State: JobState.Mapping, Map.Done: > 0 })
        {
            Assert.True(DateTime.UtcNow < deadline, "The job never reached the map phase.");
            await Task.Delay(50);
        }
        var leader = await LeaderAsync();
        leader.Kill();
        var view = await cluster.Client.WaitAsync(id, TimeSpan.FromMinutes(2));
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        Assert.Equal(SequentialReference.Run(new WordCountApp(), Books.Value), await cluster.Client.OutputAsync(id));
        // The killed coordinator comes back as a follower, as Kubernetes would restart it.
        var index = cluster.Coordinators.IndexOf(leader);
        cluster.Coordinators[index] = await cluster.StartAsync("Queue.Coordinator", new() { ["Queue__Coordinator__CandidateId"] = $"coordinator-{index}-again" });
    }

    private async Task<ServiceProcess> LeaderAsync()
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        foreach (var coordinator in cluster.Coordinators.Where(c => !c.HasExited))
        {
            var status = await http.GetFromJsonAsync(new Uri(coordinator.BaseAddress, "/coordinator"), CoordinatorJsonContext.Default.CoordinatorStatus);
            if (status!.Leader)
            {
                return coordinator;
            }
        }
        throw new InvalidOperationException("No coordinator leads.");
    }
}
