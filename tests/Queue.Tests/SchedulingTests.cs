using System.Text.Json;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Queue.Adapters.Embedded;
using Queue.Contracts;
using Queue.Contracts.Jobs;
using Queue.Contracts.Ports;
using Queue.Coordinator;
using Queue.Coordinator.Scheduling;
using Queue.Tests.Infrastructure;

namespace Queue.Tests;

/// <summary>
/// The coordinator's rooms on their own, without its loop: the planner and the event handler on the
/// embedded store and queues (real ones), driven by hand-written worker events.
/// </summary>
public sealed class SchedulingTests : IAsyncLifetime
{
    private readonly string folder = Path.Combine(Path.GetTempPath(), "queue-scheduling", Guid.NewGuid().ToString("N"));
    private IHost host = null!;

    public Task InitializeAsync()
    {
        var books = Path.Combine(folder, "books");
        Directory.CreateDirectory(books);
        File.Copy(Directory.GetFiles(RepoPaths.Gutenberg, "*.txt")[0], Path.Combine(books, "one.txt"));
        var builder = Host.CreateApplicationBuilder();
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?> { ["Queue:Adapters:DataPath"] = folder });
        builder.AddQueueAdapters();
        builder.AddCoordinator();
        // Built, never started: no scheduler loop runs, the test drives the rooms.
        host = builder.Build();
        return Task.CompletedTask;
    }

    public Task DisposeAsync()
    {
        host.Dispose();
        Directory.Delete(folder, recursive: true);
        return Task.CompletedTask;
    }

    private T Get<T>() where T : notnull => host.Services.GetRequiredService<T>();

    /// <summary>Creates the job and has a new leadership plan it, as a leader's scan would.</summary>
    private async Task<(JobStore Jobs, LeaderSession Session, JobRun Run)> PlanAsync(JobSpec spec)
    {
        var jobs = Get<JobStore>();
        var lead = await Get<ILeaderElection>().CampaignAsync("test", CancellationToken.None);
        Assert.True(await jobs.CreateAsync(spec, CancellationToken.None));
        var session = new LeaderSession(lead, jobs, resendUnfinished: false);
        var planner = Get<JobPlanner>();
        var run = await planner.LoadAsync((await jobs.ListActiveEntriesAsync(CancellationToken.None)).Single(), CancellationToken.None);
        session.Active[spec.Id] = run;
        await planner.ResumeAsync(session, run, CancellationToken.None);
        return (jobs, session, run);
    }

    [Fact]
    public async Task DuplicateReportsCountOnceAndTheLastMapMovesTheJobToReduce()
    {
        var spec = new JobSpec { Id = "job-1", App = "wordcount", InputContainer = "books", InputPrefix = "", MapTasks = 2, ReduceTasks = 3, SubmittedAt = DateTimeOffset.UtcNow };
        var (jobs, session, run) = await PlanAsync(spec);
        var lead = session.Lead;
        Assert.Equal(JobState.Mapping, run.Status.State);
        // Planned and let in by fair admission in the same write: with no worker alive yet, the queue is kept two tasks deep.
        Assert.All(run.Maps, m => Assert.Equal(TaskState.Queued, m.State));
        Assert.All(await jobs.GetTasksAsync(spec.Id, CancellationToken.None), t => Assert.Equal(TaskState.Queued, t.State));
        var admission = Get<FairAdmission>();

        var tasks = host.Services.GetRequiredKeyedService<IWorkQueue>(QueueNames.Tasks);
        var events = host.Services.GetRequiredKeyedService<IWorkQueue>(QueueNames.Events);
        var sent = await tasks.ReceiveAsync(10, TimeSpan.Zero, CancellationToken.None);
        Assert.Equal(run.Maps.Length, sent.Count);
        foreach (var index in Enumerable.Range(0, run.Maps.Length))
        {
            await SendAsync(events, TaskEventKind.Started, spec.Id, index, "a" + index);
            // The same report twice (redelivered): one attempt.
            await SendAsync(events, TaskEventKind.Started, spec.Id, index, "a" + index);
            await SendAsync(events, TaskEventKind.Succeeded, spec.Id, index, "a" + index);
            // A redelivered attempt's report of the same task arrives late: ignored.
            await SendAsync(events, TaskEventKind.Succeeded, spec.Id, index, "b" + index);
        }
        var handler = Get<TaskEventHandler>();
        while (await handler.HandleBatchAsync(session, TimeSpan.Zero, CancellationToken.None) > 0)
        {
        }
        var stored = (await jobs.GetAsync(spec.Id, CancellationToken.None))!.Status;
        Assert.Equal(JobState.Reducing, stored.State);
        Assert.Equal(run.Maps.Length * 10L, stored.MapCounters.InputRecords);
        Assert.Equal(run.Maps.Length, stored.Attempts);
        Assert.All(await jobs.GetTasksAsync(spec.Id, CancellationToken.None), t =>
        {
            if (t.Phase == TaskPhase.Map)
            {
                Assert.Equal("a" + t.Index, t.WinningAttempt);
            }
        });
        // The leader steps the counts per report (no recount): they must still be what the stored tasks say.
        var storedTasks = await jobs.GetTasksAsync(spec.Id, CancellationToken.None);
        Assert.Equal(JobRun.Progress([.. storedTasks.Where(t => t.Phase == TaskPhase.Map)]), stored.Map);
        Assert.Equal(JobRun.Progress([.. storedTasks.Where(t => t.Phase == TaskPhase.Reduce)]), stored.Reduce);
        // The reduces the queue had room for went out with their plan; the room was held for them while the maps ended.
        Assert.Equal(1, stored.Reduce.Pending);
        Assert.Equal(2, stored.Reduce.Queued);
        Assert.Equal(2, (await tasks.ReceiveAsync(10, TimeSpan.Zero, CancellationToken.None)).Count);
        await admission.FillAsync(session, CancellationToken.None);
        Assert.Equal(1, (await jobs.GetAsync(spec.Id, CancellationToken.None))!.Status.Reduce.Pending);
        // The batch's changes to the job went in one transaction: every map record has the same revision.
        var store = Get<IKeyValueStore>();
        var revisions = new HashSet<long>();
        foreach (var index in Enumerable.Range(0, run.Maps.Length))
        {
            revisions.Add((await store.GetAsync(JobStore.TaskKey(spec.Id, TaskPhase.Map, index), CancellationToken.None))!.ModRevision);
        }
        Assert.Single(revisions);

        // A deposed leader changes nothing: its write fails the fence and the event goes back to the queue.
        await ((EmbeddedLeaderElection)Get<ILeaderElection>()).ExpireAsync(lead, CancellationToken.None);
        await SendAsync(events, TaskEventKind.Started, spec.Id, 0, "r0", TaskPhase.Reduce);
        await Assert.ThrowsAsync<LeadershipLostException>(() => handler.HandleBatchAsync(session, TimeSpan.Zero, CancellationToken.None));
        Assert.Equal(1, (await events.GetDepthAsync(CancellationToken.None)).Active);
        Assert.Equal(stored.Attempts, (await jobs.GetAsync(spec.Id, CancellationToken.None))!.Status.Attempts);
    }

    [Fact]
    public async Task AdmissionKeepsEachJobWithinMaxQueuedPerJobAndItsMaxRunningTasks()
    {
        var other = Path.Combine(folder, "limits");
        var builder = Host.CreateApplicationBuilder();
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Queue:Adapters:DataPath"] = other,
            ["Queue:Coordinator:MaxQueuedPerJob"] = "2",
            ["Queue:Coordinator:QueueAhead"] = "50",
        });
        Directory.CreateDirectory(Path.Combine(other, "books"));
        File.Copy(Directory.GetFiles(RepoPaths.Gutenberg, "*.txt")[0], Path.Combine(other, "books", "one.txt"));
        builder.AddQueueAdapters();
        builder.AddCoordinator();
        using var limited = builder.Build();
        var jobs = limited.Services.GetRequiredService<JobStore>();
        var lead = await limited.Services.GetRequiredService<ILeaderElection>().CampaignAsync("test", CancellationToken.None);
        var session = new LeaderSession(lead, jobs, resendUnfinished: false);
        var planner = limited.Services.GetRequiredService<JobPlanner>();
        var now = DateTimeOffset.UtcNow;
        foreach (var (id, most) in new[] { ("job-a", (int?)null), ("job-b", 1) })
        {
            var spec = new JobSpec { Id = id, App = "wordcount", InputContainer = "books", MapTasks = 8, ReduceTasks = 1, SubmittedAt = now, MaxRunningTasks = most };
            Assert.True(await jobs.CreateAsync(spec, CancellationToken.None));
        }
        foreach (var entry in await jobs.ListActiveEntriesAsync(CancellationToken.None))
        {
            var run = await planner.LoadAsync(entry, CancellationToken.None);
            session.Active[entry.Spec.Id] = run;
            await planner.ResumeAsync(session, run, CancellationToken.None);
        }
        // Room for 50 ahead, but job-a may have only 2 on the queue and job-b 1 queued or running.
        await limited.Services.GetRequiredService<FairAdmission>().FillAsync(session, CancellationToken.None);
        Assert.Equal(2, session.Active["job-a"].Status.Map.Queued);
        Assert.Equal(session.Active["job-a"].Status.Map.Total - 2, session.Active["job-a"].Status.Map.Pending);
        Assert.Equal(1, session.Active["job-b"].Status.Map.Queued);
        Assert.Equal(3, (await limited.Services.GetRequiredKeyedService<IWorkQueue>(QueueNames.Tasks).GetDepthAsync(CancellationToken.None)).Active);
    }

    [Fact]
    public async Task AReduceThatFindsAMapOutputLostHasThatMapRunAgainThenGoesOutAnewAndLossesPastMaxAttemptsFailTheJob()
    {
        var spec = new JobSpec { Id = "job-lost", App = "wordcount", InputContainer = "books", MapTasks = 2, ReduceTasks = 2, MaxAttempts = 2, SubmittedAt = DateTimeOffset.UtcNow };
        var (jobs, session, run) = await PlanAsync(spec);
        Assert.Equal(2, run.Maps.Length);
        var events = host.Services.GetRequiredKeyedService<IWorkQueue>(QueueNames.Events);
        var handler = Get<TaskEventHandler>();
        var admission = Get<FairAdmission>();
        // What the scheduler's loop does: apply every report, then fill the room they made.
        async Task<(JobStatus Status, Dictionary<(TaskPhase, int), TaskRecord> Tasks)> ApplyAsync()
        {
            while (await handler.HandleBatchAsync(session, TimeSpan.Zero, CancellationToken.None) > 0)
            {
            }
            await admission.FillAsync(session, CancellationToken.None);
            var stored = (await jobs.GetAsync(spec.Id, CancellationToken.None))!.Status;
            var tasks = (await jobs.GetTasksAsync(spec.Id, CancellationToken.None)).ToDictionary(t => (t.Phase, t.Index));
            if (!stored.IsTerminal)
            {
                // Stepped per report, never recounted: still what the stored tasks say.
                Assert.Equal(JobRun.Progress([.. tasks.Values.Where(t => t.Phase == TaskPhase.Map).OrderBy(t => t.Index)]), stored.Map);
                Assert.Equal(JobRun.Progress([.. tasks.Values.Where(t => t.Phase == TaskPhase.Reduce).OrderBy(t => t.Index)]), stored.Reduce);
            }
            return (stored, tasks);
        }
        async Task<MapManifest> ManifestAsync() => JsonSerializer.Deserialize(
            await Get<IBlobStore>().ReadAllBytesAsync(Get<Microsoft.Extensions.Options.IOptions<StorageOptions>>().Value.IntermediateContainer, TaskNames.MapManifest(spec.Id), CancellationToken.None),
            QueueJsonContext.Default.MapManifest)!;

        await SendAsync(events, TaskEventKind.Succeeded, spec.Id, 0, "a0");
        await SendAsync(events, TaskEventKind.Succeeded, spec.Id, 1, "a1");
        var (status, tasks) = await ApplyAsync();
        Assert.Equal(JobState.Reducing, status.State);
        Assert.Equal(["a0", "a1"], (await ManifestAsync()).Attempts);

        // Both reduces find map 1's output gone, in one batch: the map runs once more, the job is back in its map phase.
        await SendLostAsync(events, spec.Id, 0, "r0", 1, "a1");
        await SendLostAsync(events, spec.Id, 1, "r1", 1, "a1");
        (status, tasks) = await ApplyAsync();
        Assert.Equal(JobState.Mapping, status.State);
        Assert.Equal(1, status.MapReruns);
        Assert.Null(status.MapFinishedAt); // the map phase ends again once the map has run again
        Assert.Equal(10, status.MapCounters.InputRecords); // map 1's records come off, for its re-run to count again
        var map = tasks[(TaskPhase.Map, 1)];
        Assert.Equal(TaskState.Queued, map.State); // let in again at once
        Assert.Null(map.WinningAttempt);
        Assert.Equal(1, map.Reruns);
        Assert.Equal(AttemptOutcome.OutputLost, AttemptRecord.Find(map.History, "a1")!.Outcome);
        Assert.Equal(TaskState.Done, tasks[(TaskPhase.Map, 0)].State);
        Assert.All([tasks[(TaskPhase.Reduce, 0)], tasks[(TaskPhase.Reduce, 1)]], r => Assert.Equal(TaskState.Planned, r.State));

        // The re-run commits: a new manifest, and the reduces go out again.
        await SendAsync(events, TaskEventKind.Succeeded, spec.Id, 1, "c1");
        (status, tasks) = await ApplyAsync();
        Assert.Equal(JobState.Reducing, status.State);
        Assert.NotNull(status.MapFinishedAt);
        Assert.Equal(20, status.MapCounters.InputRecords);
        Assert.Equal(["a0", "c1"], (await ManifestAsync()).Attempts);
        Assert.All([tasks[(TaskPhase.Reduce, 0)], tasks[(TaskPhase.Reduce, 1)]], r => Assert.Equal(TaskState.Queued, r.State));

        // A late report about the output already replaced runs no map; its reduce goes out again.
        await SendLostAsync(events, spec.Id, 0, "r0-late", 1, "a1");
        (status, tasks) = await ApplyAsync();
        Assert.Equal(JobState.Reducing, status.State);
        Assert.Equal(1, status.MapReruns);
        Assert.Equal(TaskState.Queued, tasks[(TaskPhase.Reduce, 0)].State);

        // Lost again: a second re-run (maxAttempts 2); a third loss fails the job, naming the map.
        await SendLostAsync(events, spec.Id, 0, "r0-2", 1, "c1");
        (status, _) = await ApplyAsync();
        Assert.Equal(2, status.MapReruns);
        await SendAsync(events, TaskEventKind.Succeeded, spec.Id, 1, "d1");
        (status, _) = await ApplyAsync();
        Assert.Equal(JobState.Reducing, status.State);
        await SendLostAsync(events, spec.Id, 1, "r1-3", 1, "d1");
        (status, _) = await ApplyAsync();
        Assert.Equal(JobState.Failed, status.State);
        Assert.Contains($"{TaskNames.TaskId(TaskPhase.Map, 1)} was lost 3 times", status.Error, StringComparison.Ordinal);
    }

    /// <summary>A reduce attempt's report that map <paramref name="map"/>'s output (attempt <paramref name="mapAttempt"/>) was missing or damaged.</summary>
    private static Task SendLostAsync(IWorkQueue events, string jobId, int reduce, string attempt, int map, string mapAttempt) =>
        SendAsync(events, TaskEventKind.Failed, jobId, reduce, attempt, TaskPhase.Reduce, (map, mapAttempt));

    private static Task SendAsync(IWorkQueue events, TaskEventKind kind, string jobId, int index, string attempt, TaskPhase phase = TaskPhase.Map,
        (int Map, string Attempt)? lost = null) =>
        events.SendAsync(JsonSerializer.SerializeToUtf8Bytes(new TaskEvent
        {
            Kind = kind,
            JobId = jobId,
            Phase = phase,
            Index = index,
            AttemptId = attempt,
            DeliveryCount = 1,
            Epoch = 1,
            WorkerId = "w",
            At = DateTimeOffset.UtcNow,
            Counters = kind == TaskEventKind.Succeeded ? TaskCounters.Zero with { InputRecords = 10 } : null,
            OutputLength = kind == TaskEventKind.Succeeded ? 16 : null,
            // A lost-output report comes from an attempt that ended before it reported its start, as a fast fetch does.
            StartedAt = lost is null ? null : DateTimeOffset.UtcNow,
            Error = lost is { } l ? $"MapOutputLostException: Map {l.Map}'s output (attempt {l.Attempt}) is lost" : null,
            LostMap = lost?.Map,
            LostMapAttempt = lost?.Attempt,
        }, QueueJsonContext.Default.TaskEvent), CancellationToken.None);
}
