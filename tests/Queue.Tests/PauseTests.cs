using System.Diagnostics;
using System.Net.Http.Json;
using Microsoft.Extensions.Options;
using Queue.Adapters.RabbitMq;
using Queue.Contracts.Jobs;
using Queue.Contracts.Ports;
using Queue.Coordinator;
using Queue.Tests.Infrastructure;
using Queue.Worker.Apps;

namespace Queue.Tests;

/// <summary>
/// The cluster of <see cref="ClusterFixture"/> tuned for freezing: the default 10 s AMQP heartbeat (the
/// broker drops a frozen process's connection only after about two missed beats, later than the
/// freezes here, so what a frozen process holds stays held), a 5 s lease and a 10 s grace
/// before the leader sends again a task whose report was lost: 15 s, longer than the freezes, so a
/// frozen leader's held reports must come back by themselves.
/// </summary>
public sealed class PauseClusterFixture : ClusterFixture
{
    public static readonly TimeSpan Patience = TimeSpan.FromSeconds(15);

    protected override Dictionary<string, string> AdapterEnvironment()
    {
        var environment = base.AdapterEnvironment();
        environment["Queue__WorkQueue__LeaseDuration"] = "00:00:05";
        environment["Queue__Coordinator__LostTaskGrace"] = "00:00:10";
        return environment;
    }
}

/// <summary>
/// Processes frozen with SIGSTOP and thawed with SIGCONT — a GC pause, a stalled VM — while a job
/// runs: the leader past its lease in either phase, a worker past its lease, the broker, etcd's
/// leading member. Every job ends with the reference's output, within the pause plus 15 s, with
/// backups off so speculation cannot hide a lost report.
/// </summary>
public sealed class PauseTests(PauseClusterFixture cluster) : IClassFixture<PauseClusterFixture>
{
    private static readonly TimeSpan Pause = TimeSpan.FromSeconds(8);
    private static readonly TimeSpan Slack = TimeSpan.FromSeconds(15);
    private static readonly Lazy<List<string>> Reference = new(() =>
        SequentialReference.Run(new WordCountApp(), SequentialReference.ReadFolder(RepoPaths.Gutenberg).ToList()));

    [Fact]
    public Task ALeaderFrozenPastItsLeaseMidMapHandsBackItsEventsAndTheJobFinishes() =>
        FreezeTheLeaderAsync(mapTasks: 16, reduceTasks: 2, s => s is { State: JobState.Mapping, Map.Done: > 0 });

    [Fact]
    public Task ALeaderFrozenPastItsLeaseMidReduceHandsBackItsEventsAndTheJobFinishes() =>
        FreezeTheLeaderAsync(mapTasks: 4, reduceTasks: 12, s => s is { State: JobState.Reducing, Reduce.Done: > 0 });

    private async Task FreezeTheLeaderAsync(int mapTasks, int reduceTasks, Func<JobStatus, bool> when)
    {
        var id = await SubmitAsync(mapTasks, reduceTasks);
        await cluster.Client.WaitUntilAsync(id, when);
        var leader = await LeaderAsync();
        var frozen = await FreezeAsync(leader.Signal);
        var view = await FinishesWithinAsync(id, frozen);
        Assert.Equal(0, view.Status.RecoveredAttempts); // no report was lost: the thawed leader handed back what it held
        await StepsDownAsync(leader);
    }

    [Fact]
    public async Task AWorkerFrozenPastItsLeaseMidTaskLosesItAndTheJobFinishes()
    {
        var id = await SubmitAsync(mapTasks: 12, reduceTasks: 2);
        await cluster.Client.WaitUntilAsync(id, s => s is { State: JobState.Mapping, Map.Running: > 0 });
        var worker = cluster.Workers[0];
        var frozen = await FreezeAsync(worker.Signal);
        await FinishesWithinAsync(id, frozen);
    }

    [Fact]
    public async Task AJobFinishesWhenTheBrokerIsFrozenForTenSeconds()
    {
        var id = await SubmitAsync(mapTasks: 12, reduceTasks: 2);
        await cluster.Client.WaitUntilAsync(id, s => s is { State: JobState.Mapping, Map.Done: > 0 });
        var frozen = await FreezeAsync(cluster.Rabbit.Signal, TimeSpan.FromSeconds(10));
        await FinishesWithinAsync(id, frozen);
    }

    [Fact]
    public async Task AJobFinishesWhenEtcdsLeadingMemberIsFrozen()
    {
        var id = await SubmitAsync(mapTasks: 12, reduceTasks: 2);
        await cluster.Client.WaitUntilAsync(id, s => s is { State: JobState.Mapping, Map.Done: > 0 });
        var member = await cluster.Etcd.LeaderIndexAsync();
        var frozen = await FreezeAsync(signal => cluster.Etcd.SignalMember(member, signal));
        await FinishesWithinAsync(id, frozen);
    }

    [Fact]
    public async Task TheLeaderSendsAgainATaskWhoseReportWasLost()
    {
        // A rogue consumer takes events off the queue and drops them, as a coordinator that settles what
        // it did not apply would: only the leader's own safety net can finish the job.
        var id = await SubmitAsync(mapTasks: 12, reduceTasks: 2);
        await cluster.Client.WaitUntilAsync(id, s => s is { State: JobState.Mapping, Map.Running: > 0 });
        await using var thief = new RabbitMqWorkQueue(QueueNames.Events,
            Options.Create(new RabbitMqOptions { ConnectionString = cluster.Rabbit.ConnectionString, Prefetch = 2 }),
            Options.Create(new WorkQueueOptions()));
        var stolen = 0;
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(3);
        while (DateTime.UtcNow < until)
        {
            foreach (var message in await thief.ReceiveAsync(1, TimeSpan.FromMilliseconds(200), CancellationToken.None))
            {
                await message.CompleteAsync(CancellationToken.None);
                stolen++;
            }
        }
        await thief.StopReceivingAsync(deadLetters: false, CancellationToken.None);
        Assert.True(stolen > 0, "The rogue consumer took no events.");
        var view = await cluster.Client.WaitAsync(id, TimeSpan.FromSeconds(60) + PauseClusterFixture.Patience);
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        Assert.Equal(Reference.Value, await cluster.Client.OutputAsync(id));
        Assert.True(view.Status.RecoveredAttempts > 0, $"{stolen} events were dropped, but the leader recovered no task.");
        Assert.Equal(0, view.Status.BackupAttempts);
    }

    /// <summary>Word count whose every attempt stalls a second (ignoring cancellation), with backups off.</summary>
    private Task<string> SubmitAsync(int mapTasks, int reduceTasks) => cluster.Client.SubmitAsync(new
    {
        app = "crash", input = "books", mapTasks, reduceTasks, speculative = false, maxAttempts = 20,
        args = new Dictionary<string, string> { ["stallRate"] = "1", ["stallSeconds"] = "1" },
    });

    /// <summary>SIGSTOP, the pause, SIGCONT; returns when the freeze began.</summary>
    private static async Task<Stopwatch> FreezeAsync(Action<string> signal, TimeSpan? pause = null)
    {
        var frozen = Stopwatch.StartNew();
        signal("STOP");
        try
        {
            await Task.Delay(pause ?? Pause);
        }
        finally
        {
            signal("CONT");
        }
        return frozen;
    }

    /// <summary>The job succeeds with the reference output within the pause plus <see cref="Slack"/> of the freeze, and without backups.</summary>
    private async Task<JobView> FinishesWithinAsync(string id, Stopwatch frozen)
    {
        var bound = Pause + TimeSpan.FromSeconds(2) + Slack;
        JobView view;
        while (!(view = await TolerantGetAsync(id)).Status.IsTerminal)
        {
            Assert.True(frozen.Elapsed < bound, $"The job had not ended {frozen.Elapsed.TotalSeconds:0} s after the freeze began: " +
                $"map {view.Status.Map.Done}/{view.Status.Map.Total}, reduce {view.Status.Reduce.Done}/{view.Status.Reduce.Total}.\n" +
                string.Join("\n", cluster.Coordinators.Select(c => c.Output)));
            await Task.Delay(100);
        }
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        Assert.Equal(Reference.Value, await cluster.Client.OutputAsync(id));
        Assert.Equal(0, view.Status.BackupAttempts);
        return view;
    }

    /// <summary>The job's view, riding out the moments a frozen server makes the ingress fail.</summary>
    private async Task<JobView> TolerantGetAsync(string id)
    {
        for (var attempt = 0; ; attempt++)
        {
            try
            {
                return await cluster.Client.GetAsync(id);
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException && attempt < 100)
            {
                await Task.Delay(200);
            }
        }
    }

    private async Task<ServiceProcess> LeaderAsync()
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(15);
        while (true)
        {
            foreach (var coordinator in cluster.Coordinators)
            {
                if ((await http.GetFromJsonAsync(new Uri(coordinator.BaseAddress, "/coordinator"), CoordinatorJsonContext.Default.CoordinatorStatus))!.Leader)
                {
                    return coordinator;
                }
            }
            Assert.True(DateTime.UtcNow < deadline, "No coordinator leads.");
            await Task.Delay(100);
        }
    }

    /// <summary>The thawed leader finds its lease gone and follows.</summary>
    private static async Task StepsDownAsync(ServiceProcess leader)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while ((await http.GetFromJsonAsync(new Uri(leader.BaseAddress, "/coordinator"), CoordinatorJsonContext.Default.CoordinatorStatus))!.Leader)
        {
            Assert.True(DateTime.UtcNow < deadline, "The thawed leader still says it leads.\n" + leader.Output);
            await Task.Delay(100);
        }
    }
}
