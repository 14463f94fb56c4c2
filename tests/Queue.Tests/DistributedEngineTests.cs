using Queue.Contracts.Jobs;
using Queue.Coordinator;
using Queue.Tests.Infrastructure;
using Queue.Worker.Apps;
using System.Net.Http.Json;

namespace Queue.Tests;

/// <summary>
/// The engine as separate processes on loopback: a real etcd, a work-queue broker and a blob store,
/// two coordinators, two workers and an ingress. Subclasses pick the queue and blob technology.
/// </summary>
public abstract class ProcessClusterFixture : IAsyncLifetime
{
    public string Folder { get; } = Path.Combine(Path.GetTempPath(), "queue-cluster", Guid.NewGuid().ToString("N"));

    public EtcdServer Etcd { get; private set; } = null!;

    public List<ServiceProcess> Coordinators { get; } = [];

    public List<ServiceProcess> Workers { get; } = [];

    public ServiceProcess Ingress { get; private set; } = null!;

    public JobClient Client { get; private set; } = null!;

    protected virtual int EtcdMembers => 3;

    /// <summary>Starts the queue broker and blob store and puts the books into the <c>books</c> container.</summary>
    protected abstract Task StartStorageAsync();

    protected abstract ValueTask StopStorageAsync();

    /// <summary>The adapter settings every service process gets.</summary>
    protected abstract Dictionary<string, string> AdapterEnvironment();

    protected virtual Task<EtcdServer> StartEtcdAsync() => EtcdServer.StartAsync(memberCount: EtcdMembers);

    /// <summary>How services reach etcd: its endpoints, and whatever credentials a subclass adds.</summary>
    protected virtual Dictionary<string, string> EtcdEnvironment() => new() { ["Queue__Etcd__Endpoints"] = Etcd.Endpoints };

    /// <summary>Settings for one kind of service only (its own broker user, say).</summary>
    protected virtual void ForService(string project, Dictionary<string, string> environment)
    {
    }

    public async Task InitializeAsync()
    {
        Directory.CreateDirectory(Folder);
        try
        {
            Etcd = await StartEtcdAsync();
            await StartStorageAsync();
            for (var i = 0; i < 2; i++)
            {
                Coordinators.Add(await StartAsync("Queue.Coordinator", new() { ["Queue__Coordinator__CandidateId"] = $"coordinator-{i}" }));
            }
            for (var i = 0; i < 2; i++)
            {
                Workers.Add(await StartWorkerAsync(i));
            }
            Ingress = await StartAsync("Queue.Ingress", []);
            Client = new JobClient(Ingress.BaseAddress);
        }
        catch
        {
            // xunit does not dispose a fixture whose start failed: stop what did start, then report.
            await DisposeAsync();
            throw;
        }
    }

    /// <summary>The coordinator that says it leads.</summary>
    public async Task<ServiceProcess> LeaderAsync()
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        foreach (var coordinator in Coordinators.Where(c => !c.HasExited))
        {
            var status = await http.GetFromJsonAsync(new Uri(coordinator.BaseAddress, "/coordinator"), CoordinatorJsonContext.Default.CoordinatorStatus);
            if (status!.Leader)
            {
                return coordinator;
            }
        }
        throw new InvalidOperationException("No coordinator leads.");
    }

    public Task<ServiceProcess> StartWorkerAsync(int index) =>
        StartAsync("Queue.Worker", new() { ["Queue__Worker__WorkerId"] = $"worker-{index}-{Guid.NewGuid():N}"[..16], ["Queue__Worker__Slots"] = "2" });

    public Task<ServiceProcess> StartAsync(string project, Dictionary<string, string> extra)
    {
        var environment = new Dictionary<string, string>(AdapterEnvironment())
        {
            ["Queue__Adapters__Coordination"] = "etcd",
            ["Queue__Etcd__LeaseTtl"] = "00:00:02",
            ["Queue__Coordinator__PollInterval"] = "00:00:00.100",
            ["Queue__Coordinator__RetryDelay"] = "00:00:00.300",
            ["Queue__Worker__TempPath"] = Path.Combine(Folder, "tmp"),
            ["Queue__Worker__CancelCheckInterval"] = "00:00:00.500",
            ["Queue__Worker__HeartbeatInterval"] = "00:00:01",
            ["Queue__Coordinator__BackupFloor"] = "00:00:03",
            ["Queue__Coordinator__DeadLetterInterval"] = "00:00:00.250",
        };
        foreach (var (key, value) in EtcdEnvironment())
        {
            environment[key] = value;
        }
        ForService(project, environment);
        foreach (var (key, value) in extra)
        {
            environment[key] = value;
        }
        return ServiceProcess.StartAsync(project, Folder, environment);
    }

    public virtual async Task DisposeAsync()
    {
        Client?.Dispose();
        foreach (var process in Coordinators.Concat(Workers).Append(Ingress))
        {
            if (process is not null)
            {
                await process.DisposeAsync();
            }
        }
        await StopStorageAsync();
        if (Etcd is not null)
        {
            await Etcd.DisposeAsync();
        }
        if (Directory.Exists(Folder))
        {
            Directory.Delete(Folder, recursive: true);
        }
    }
}

/// <summary>RabbitMQ for the queues, the filesystem blob store for data.</summary>
public class ClusterFixture : ProcessClusterFixture
{
    public RabbitMqServer Rabbit { get; private set; } = null!;

    protected override async Task StartStorageAsync()
    {
        RepoPaths.CopyBooksTo(Path.Combine(Folder, "data", "books"));
        Rabbit = await RabbitMqServer.StartAsync();
    }

    protected override ValueTask StopStorageAsync() => Rabbit?.DisposeAsync() ?? ValueTask.CompletedTask;

    protected override Dictionary<string, string> AdapterEnvironment() => new()
    {
        ["Queue__Adapters__WorkQueue"] = "rabbitmq",
        ["Queue__Adapters__DataPath"] = Path.Combine(Folder, "data"),
        ["Queue__RabbitMq__ConnectionString"] = Rabbit.ConnectionString,
        ["Queue__RabbitMq__Prefetch"] = "2",
        // The leader compacts etcd's history every 2 s instead of every minute: every cluster test runs through compactions.
        ["Queue__Coordinator__HistoryCompactionInterval"] = "00:00:02",
    };
}

public sealed class DistributedEngineTests(ClusterFixture cluster) : IClassFixture<ClusterFixture>
{
    private static readonly Lazy<List<(string Name, string Text)>> Books = new(() => SequentialReference.ReadFolder(RepoPaths.Gutenberg).ToList());

    [Fact]
    public async Task AStragglerOnTheClusterGetsABackupThatWins()
    {
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var id = await cluster.Client.SubmitAsync(new
        {
            app = "crash", input = "books", mapTasks = 8, reduceTasks = 3,
            args = new Dictionary<string, string> { ["slowFile"] = "pg-sherlock_holmes.txt", ["slowSeconds"] = "120" },
        });
        var view = await cluster.Client.WaitAsync(id, TimeSpan.FromSeconds(90));
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(45), $"The job took {watch.Elapsed}, waiting on its straggler (120 s).");
        Assert.True(view.Status.BackupWins >= 1, $"Backups launched {view.Status.BackupAttempts}, won {view.Status.BackupWins}.");
        Assert.Equal(SequentialReference.Run(new WordCountApp(), Books.Value), await cluster.Client.OutputAsync(id));
    }

    /// <summary>
    /// The leader compacts etcd's history (here every 2 s): a revision from before a job can no longer be
    /// read once the job is done, and the jobs after it, whose admission and active-job watch run on the
    /// compacted store, are exact. Without compaction etcd kept every batch's values until its space
    /// quota stopped all writes.
    /// </summary>
    [Fact]
    public async Task TheLeaderCompactsEtcdsHistoryAndJobsGoOnAfterIt()
    {
        using var etcd = new Queue.Adapters.Etcd.EtcdConnection(Microsoft.Extensions.Options.Options.Create(new Queue.Adapters.Etcd.EtcdOptions { Endpoints = cluster.Etcd.Endpoints }),
            Microsoft.Extensions.Logging.Abstractions.NullLogger<Queue.Adapters.Etcd.EtcdConnection>.Instance);
        var before = await new Queue.Adapters.Etcd.EtcdKeyValueStore(etcd).RevisionAsync(CancellationToken.None);
        var reference = SequentialReference.Run(new WordCountApp(), Books.Value);
        var first = await cluster.Client.SubmitAsync(new { app = "wordcount", input = "books", mapTasks = 8, reduceTasks = 3 });
        var view = await cluster.Client.WaitAsync(first, TimeSpan.FromSeconds(60));
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        var compacted = false;
        for (var i = 0; i < 100 && !compacted; i++)
        {
            try
            {
                await etcd.RangeAsync(new Etcdserverpb.RangeRequest { Key = Google.Protobuf.ByteString.CopyFromUtf8("/queue/"), Revision = before }, CancellationToken.None);
                await Task.Delay(200);
            }
            catch (Queue.Adapters.Etcd.EtcdException e) when (e.Code == Grpc.Core.StatusCode.OutOfRange)
            {
                compacted = true;
            }
        }
        Assert.True(compacted, $"Revision {before} could still be read 20 s after the job.");
        for (var run = 0; run < 2; run++)
        {
            var id = await cluster.Client.SubmitAsync(new { app = "wordcount", input = "books", mapTasks = 8, reduceTasks = 3 });
            var next = await cluster.Client.WaitAsync(id, TimeSpan.FromSeconds(60));
            Assert.True(next.Status.State == JobState.Succeeded, next.Status.Error);
            Assert.Equal(reference, await cluster.Client.OutputAsync(id));
        }
    }

    /// <summary>
    /// A worker that reaches the broker but not etcd (a partition) takes no task and gives back what the
    /// broker pushed to it. Before, it took every other task, waited on etcd, handed the task back and
    /// took the next: beside it a books job of under a second was still not done after 200 s. Three jobs
    /// in a row must each end within 20 s, exact, and the cut-off worker says why it stays idle.
    /// </summary>
    [Fact]
    public async Task AWorkerCutOffFromEtcdTakesNoTaskAndJobsDoNotWaitForIt()
    {
        await using var cutOff = await cluster.StartAsync("Queue.Worker", new()
        {
            ["Queue__Worker__WorkerId"] = "cut-off-" + Guid.NewGuid().ToString("N")[..6],
            ["Queue__Worker__Slots"] = "2",
            ["Queue__Etcd__Endpoints"] = $"http://127.0.0.1:{ServiceProcess.FreePort()}",
        });
        var reference = SequentialReference.Run(new WordCountApp(), Books.Value);
        for (var run = 0; run < 3; run++)
        {
            var watch = System.Diagnostics.Stopwatch.StartNew();
            var id = await cluster.Client.SubmitAsync(new { app = "wordcount", input = "books", mapTasks = 8, reduceTasks = 3 });
            var view = await cluster.Client.WaitAsync(id, TimeSpan.FromSeconds(120));
            Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(20), $"Run {run} took {watch.Elapsed} beside a worker that cannot reach etcd.");
            Assert.Equal(reference, await cluster.Client.OutputAsync(id));
        }
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (!cutOff.Output.Contains("cannot reach the coordination store", StringComparison.Ordinal))
        {
            Assert.True(DateTime.UtcNow < deadline, $"The cut-off worker never said why it takes no task:\n{cutOff.Output}");
            await Task.Delay(250);
        }
        Assert.False(cutOff.HasExited, cutOff.Output);
        Assert.DoesNotContain("could not be reported or settled", cutOff.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task WorkersAreListedFromTheirHeartbeatsAndAKilledOneDropsOut()
    {
        var id = "doomed-" + Guid.NewGuid().ToString("N")[..8];
        await using var doomed = await cluster.StartAsync("Queue.Worker", new() { ["Queue__Worker__WorkerId"] = id, ["Queue__Worker__Slots"] = "3" });
        var seen = await WaitForWorkersAsync(workers => workers.Any(w => w.Worker == id), TimeSpan.FromSeconds(15));
        var mine = seen.Single(w => w.Worker == id);
        Assert.Equal(3, mine.Slots);
        Assert.False(string.IsNullOrEmpty(mine.Version));
        Assert.True(seen.Count >= 3, $"Expected the fixture's workers too: {string.Join(", ", seen.Select(w => w.Worker))}");

        // SIGKILL: no goodbye; the heartbeat's lease (three 1 s beats) lapses and the worker leaves the list.
        doomed.Signal("KILL");
        await WaitForWorkersAsync(workers => workers.All(w => w.Worker != id), TimeSpan.FromSeconds(15));
    }

    private async Task<List<WorkerHeartbeat>> WaitForWorkersAsync(Func<List<WorkerHeartbeat>, bool> condition, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var workers = (await cluster.Client.Http.GetFromJsonAsync("/workers", Queue.Contracts.QueueJsonContext.Default.ListWorkerHeartbeat))!;
            if (condition(workers))
            {
                return workers;
            }
            Assert.True(DateTime.UtcNow < deadline, $"/workers did not change as expected within {timeout}: {string.Join(", ", workers.Select(w => w.Worker))}");
            await Task.Delay(250);
        }
    }

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
        // An ended job leaves the active index, so the leader's scans no longer read it.
        using var etcd = new Queue.Adapters.Etcd.EtcdConnection(Microsoft.Extensions.Options.Options.Create(new Queue.Adapters.Etcd.EtcdOptions { Endpoints = cluster.Etcd.Endpoints }),
            Microsoft.Extensions.Logging.Abstractions.NullLogger<Queue.Adapters.Etcd.EtcdConnection>.Instance);
        var store = new Queue.Adapters.Etcd.EtcdKeyValueStore(etcd);
        Assert.Null(await store.GetAsync(JobStore.ActiveKey(id), CancellationToken.None));
        Assert.NotNull(await store.GetAsync(JobStore.StatusKey(id), CancellationToken.None));
    }

    [Fact]
    public async Task AJobWithThousandsOfTasksKeepsEtcdWritesSmall()
    {
        // 1 KiB splits over the books: over three thousand map tasks, each with its own small record in etcd.
        var id = await cluster.Client.SubmitAsync(new { app = "wordcount", input = "books", splitSizeBytes = 1024, reduceTasks = 4 });
        var view = await cluster.Client.WaitAsync(id, TimeSpan.FromMinutes(4));
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        Assert.True(view.Status.Map.Total > 3000, $"Only {view.Status.Map.Total} map tasks.");
        Assert.Equal(SequentialReference.Run(new WordCountApp(), Books.Value), await cluster.Client.OutputAsync(id));
        var details = await cluster.Client.GetDetailsAsync(id);
        Assert.Equal(view.Status.Map.Total + 4, details.Tasks.Count);
        // The job's status document does not grow with its tasks.
        Assert.True(System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(view.Status, Queue.Contracts.QueueJsonContext.Default.JobStatus).Length < 4096);
    }

    [Fact]
    public async Task MapAndReduceTasksRunInParallelOnBothWorkerProcesses()
    {
        // Each attempt stalls a second, so parallelism shows in overlapping run times.
        var args = Stall(seconds: 1);
        var id = await cluster.Client.SubmitAsync(new { app = "crash", input = "books", mapTasks = 8, reduceTasks = 4, args });
        var view = await cluster.Client.WaitAsync(id, TimeSpan.FromMinutes(2));
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        var tasks = (await cluster.Client.GetDetailsAsync(id)).Tasks;
        foreach (var phase in new[] { TaskPhase.Map, TaskPhase.Reduce })
        {
            var ofPhase = tasks.Where(t => t.Phase == phase).ToList();
            Assert.Equal(2, ofPhase.Select(t => t.Worker).Distinct().Count());
            var overlapping = ofPhase.Count(a => ofPhase.Any(b => b != a && b.Worker != a.Worker && a.StartedAt < b.FinishedAt && b.StartedAt < a.FinishedAt));
            Assert.True(overlapping >= 2, $"No two {phase} tasks on different workers overlapped in time.");
        }
        Assert.Equal(SequentialReference.Run(new WordCountApp(), Books.Value), await cluster.Client.OutputAsync(id));
    }

    [Fact]
    public async Task IndexerThroughTheClusterEqualsTheReference()
    {
        var id = await cluster.Client.SubmitAsync(new { app = "indexer", input = "books", mapTasks = 10, reduceTasks = 4 });
        var view = await cluster.Client.WaitAsync(id, TimeSpan.FromMinutes(2));
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        Assert.Equal(SequentialReference.Run(new IndexerApp(), Books.Value), await cluster.Client.OutputAsync(id));
    }

    [Fact]
    public async Task WorkersKilledAtRandomMomentsInBothPhasesStillGiveTheReference()
    {
        // Every attempt stalls a second, so the job outlasts at least two kills however fast the machine is.
        var args = Stall(seconds: 1);
        var id = await cluster.Client.SubmitAsync(new { app = "crash", input = "books", mapTasks = 16, reduceTasks = 4, args, maxAttempts = 20 });
        var random = new Random(7);
        var kills = 0;
        var phases = new HashSet<JobState>();
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(3);
        JobView view;
        while (!(view = await cluster.Client.GetAsync(id)).Status.IsTerminal)
        {
            Assert.True(DateTime.UtcNow < deadline, "The job did not end.");
            await Task.Delay(random.Next(300, 1200));
            if (kills < 6 && view.Status.State is JobState.Mapping or JobState.Reducing)
            {
                var index = random.Next(cluster.Workers.Count);
                cluster.Workers[index].Kill(); // SIGKILL, mid-task or not
                kills++;
                phases.Add(view.Status.State);
                cluster.Workers[index] = await cluster.StartWorkerAsync(index);
            }
            // Nothing partial is ever visible under the job's output names.
            Assert.All(OutputFiles(id), name => Assert.Matches("^part-[0-9]{5}$", name));
        }
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        Assert.True(kills >= 2, $"Only {kills} kills happened.");
        Assert.Equal(SequentialReference.Run(new WordCountApp(), Books.Value), await cluster.Client.OutputAsync(id));
        var final = OutputFiles(id).Select(f => File.ReadAllBytes(Path.Combine(cluster.Folder, "data", "dfs-dest", id, f))).ToList();
        await Task.Delay(2000);
        // A job reported Succeeded has all its output final: nothing changes after.
        Assert.Equal(final, OutputFiles(id).Select(f => File.ReadAllBytes(Path.Combine(cluster.Folder, "data", "dfs-dest", id, f))).ToList());
    }

    [Fact]
    public async Task JobCompletesWhenRabbitMqIsRestartedMidJob()
    {
        var args = Stall(seconds: 1);
        var id = await cluster.Client.SubmitAsync(new { app = "crash", input = "books", mapTasks = 12, reduceTasks = 2, args, maxAttempts = 20 });
        await cluster.Client.WaitUntilAsync(id, s => s is { State: JobState.Mapping, Map.Done: > 0 });
        await cluster.Rabbit.RestartAsync();
        var view = await cluster.Client.WaitAsync(id, TimeSpan.FromMinutes(3));
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        Assert.Equal(SequentialReference.Run(new WordCountApp(), Books.Value), await cluster.Client.OutputAsync(id));
    }

    [Fact]
    public async Task JobCompletesWhenTheLeaderIsKilledDuringTheReducePhase()
    {
        var args = Stall(seconds: 2);
        var id = await cluster.Client.SubmitAsync(new { app = "crash", input = "books", mapTasks = 4, reduceTasks = 6, args });
        await cluster.Client.WaitUntilAsync(id, s => s is { State: JobState.Reducing });
        var leader = await LeaderAsync();
        leader.Kill();
        var view = await cluster.Client.WaitAsync(id, TimeSpan.FromMinutes(2));
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        Assert.Equal(SequentialReference.Run(new WordCountApp(), Books.Value), await cluster.Client.OutputAsync(id));
        var index = cluster.Coordinators.IndexOf(leader);
        cluster.Coordinators[index] = await cluster.StartAsync("Queue.Coordinator", new() { ["Queue__Coordinator__CandidateId"] = $"coordinator-{index}-r" });
    }

    [Fact]
    public async Task KillingOneEtcdMemberMidJobDoesNotStopTheJob()
    {
        var args = Stall(seconds: 1);
        var id = await cluster.Client.SubmitAsync(new { app = "crash", input = "books", mapTasks = 10, reduceTasks = 2, args });
        await cluster.Client.WaitUntilAsync(id, s => s is { State: JobState.Mapping, Map.Done: > 0 });
        cluster.Etcd.KillMember(0);
        try
        {
            var view = await cluster.Client.WaitAsync(id, TimeSpan.FromMinutes(2));
            Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
            Assert.Equal(SequentialReference.Run(new WordCountApp(), Books.Value), await cluster.Client.OutputAsync(id));
        }
        finally
        {
            await cluster.Etcd.RestartMemberAsync(0);
        }
    }

    [Fact]
    public async Task SigtermLetsABusyWorkerFinishItsTasksWithinTheDrainTime()
    {
        await using var drainer = await StartWorkerAsync("drainer", drainTime: "00:00:15");
        var args = Stall(seconds: 3);
        var id = await cluster.Client.SubmitAsync(new { app = "crash", input = "books", mapTasks = 10, reduceTasks = 2, args });
        var running = await WaitForRunningOnAsync(id, "drainer");
        drainer.Signal("TERM");
        Assert.True(await drainer.WaitForExitAsync(TimeSpan.FromSeconds(15)), "The worker did not exit within its drain time.");
        var view = await cluster.Client.WaitAsync(id, TimeSpan.FromMinutes(2));
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        var tasks = (await cluster.Client.GetDetailsAsync(id)).Tasks;
        // What it was running when told to stop, it finished: one attempt each, won by the drainer.
        Assert.All(running, index => Assert.Equal(("drainer", 1), (tasks[index].Worker, tasks[index].Attempts)));
        Assert.Equal(SequentialReference.Run(new WordCountApp(), Books.Value), await cluster.Client.OutputAsync(id));
    }

    [Fact]
    public async Task SigtermAbandonsWhatCannotFinishSoItIsRedeliveredAtOnce()
    {
        await using var drainer = await StartWorkerAsync("quitter", drainTime: "00:00:01");
        var args = Stall(seconds: 4);
        var id = await cluster.Client.SubmitAsync(new { app = "crash", input = "books", mapTasks = 8, reduceTasks = 2, args });
        var running = await WaitForRunningOnAsync(id, "quitter");
        drainer.Signal("TERM");
        Assert.True(await drainer.WaitForExitAsync(TimeSpan.FromSeconds(10)), "The worker did not exit after its drain time.");
        Assert.Contains("abandoned at shutdown", drainer.Output, StringComparison.Ordinal);
        var view = await cluster.Client.WaitAsync(id, TimeSpan.FromMinutes(3));
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        var tasks = (await cluster.Client.GetDetailsAsync(id)).Tasks;
        foreach (var index in running)
        {
            Assert.NotEqual("quitter", tasks[index].Worker);
            Assert.Equal(2, tasks[index].Attempts);
        }
        Assert.Equal(SequentialReference.Run(new WordCountApp(), Books.Value), await cluster.Client.OutputAsync(id));
    }

    /// <summary>Crash-app arguments that make attempts hang for a while (ignoring cancellation), so tests can act mid-task.</summary>
    private static Dictionary<string, string> Stall(int seconds, double rate = 1) => new()
    {
        ["stallRate"] = rate.ToString(System.Globalization.CultureInfo.InvariantCulture),
        ["stallSeconds"] = seconds.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };

    /// <summary>An extra worker process with a name and a drain time of its own.</summary>
    private Task<ServiceProcess> StartWorkerAsync(string name, string drainTime) => cluster.StartAsync("Queue.Worker", new()
    {
        ["Queue__Worker__WorkerId"] = name, ["Queue__Worker__Slots"] = "2", ["Queue__Worker__DrainTimeout"] = drainTime,
    });

    /// <summary>Waits until the named worker runs at least one map task of the job; returns their indices.</summary>
    private async Task<List<int>> WaitForRunningOnAsync(string id, string worker)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (true)
        {
            var running = (await cluster.Client.GetDetailsAsync(id)).Tasks
                .Where(t => t.Phase == TaskPhase.Map && t.State == TaskState.Running && t.Worker == worker).Select(t => t.Index).ToList();
            if (running.Count > 0)
            {
                return running;
            }
            Assert.True(DateTime.UtcNow < deadline, $"{worker} never ran a task.");
            await Task.Delay(50);
        }
    }

    private IEnumerable<string> OutputFiles(string id)
    {
        var folder = Path.Combine(cluster.Folder, "data", "dfs-dest", id);
        return Directory.Exists(folder) ? Directory.GetFiles(folder).Select(f => Path.GetFileName(f)).ToList() : [];
    }

    [Fact]
    public async Task JobCompletesWhenTheLeaderIsKilledDuringTheMapPhase()
    {
        var args = Stall(seconds: 1);
        var id = await cluster.Client.SubmitAsync(new { app = "crash", input = "books", mapTasks = 12, reduceTasks = 2, args });
        await cluster.Client.WaitUntilAsync(id, s => s is { State: JobState.Mapping, Map.Done: > 0 });
        var leader = await LeaderAsync();
        leader.Kill();
        var view = await cluster.Client.WaitAsync(id, TimeSpan.FromMinutes(2));
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        Assert.Equal(SequentialReference.Run(new WordCountApp(), Books.Value), await cluster.Client.OutputAsync(id));
        // The killed coordinator comes back as a follower, as Kubernetes would restart it.
        var index = cluster.Coordinators.IndexOf(leader);
        cluster.Coordinators[index] = await cluster.StartAsync("Queue.Coordinator", new() { ["Queue__Coordinator__CandidateId"] = $"coordinator-{index}-again" });
    }

    private Task<ServiceProcess> LeaderAsync() => cluster.LeaderAsync();
}
