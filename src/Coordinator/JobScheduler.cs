using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Queue.Contracts;
using Queue.Contracts.Jobs;
using Queue.Contracts.Ports;

namespace Queue.Coordinator;

/// <summary>
/// The leader's loop: plans new jobs, sends their tasks, applies task events and dead letters to job
/// state, moves jobs from map to reduce to done, and honours cancel requests. It is the only writer
/// of job state, and every write is fenced by the leadership, so a deposed leader changes nothing.
/// On gaining leadership it reconciles every active job from the store.
/// </summary>
public sealed class JobScheduler(
    LeadershipState leadership,
    JobStore jobs,
    IBlobStore blobs,
    [FromKeyedServices(QueueNames.Tasks)] IWorkQueue tasks,
    [FromKeyedServices(QueueNames.Events)] IWorkQueue events,
    IOptions<CoordinatorOptions> options,
    IOptions<StorageOptions> storage,
    CoordinatorMetrics metrics,
    TimeProvider time,
    ILogger<JobScheduler> logger) : BackgroundService
{
    private const int MaxWritesPerTransaction = 100;
    private readonly CoordinatorOptions options = options.Value;
    private readonly StorageOptions storage = storage.Value;
    private readonly Dictionary<string, JobRun> active = new(StringComparer.Ordinal);
    private readonly HashSet<string> finished = new(StringComparer.Ordinal);
    private ILeadership? lead;
    private DateTimeOffset nextCount;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                lead = await leadership.WaitAsync(stoppingToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            using var session = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken, lead.Lost);
            try
            {
                await RunSessionAsync(session.Token);
            }
            catch (OperationCanceledException) when (session.IsCancellationRequested)
            {
                Log.SessionEnded(logger, stoppingToken.IsCancellationRequested ? "shutting down" : "leadership lost");
            }
            catch (LeadershipLostException e)
            {
                Log.SessionEnded(logger, e.Message);
                // The election notices the lost lease on its own; wait for it rather than spin.
                await Task.Delay(options.RetryDelay, time, CancellationToken.None);
                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(10), time, lead.Lost);
                }
                catch (OperationCanceledException)
                {
                }
            }
            catch (Exception e) when (!stoppingToken.IsCancellationRequested)
            {
                // A store or broker failure: start over from the stored state after a pause.
                Log.SessionEnded(logger, $"{e.GetType().Name}: {e.Message}");
                await Task.Delay(options.RetryDelay, time, stoppingToken);
            }
        }
    }

    private async Task RunSessionAsync(CancellationToken cancellationToken)
    {
        active.Clear();
        finished.Clear();
        nextCount = DateTimeOffset.MinValue;
        await ScanJobsAsync(cancellationToken);
        Log.Reconciled(logger, active.Count);
        var nextScan = time.GetUtcNow() + options.PollInterval;
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var wait = nextScan - time.GetUtcNow();
            await HandleEventsAsync(wait > TimeSpan.Zero ? wait : TimeSpan.Zero, cancellationToken);
            if (time.GetUtcNow() >= nextScan)
            {
                await ScanJobsAsync(cancellationToken);
                await DrainDeadLettersAsync(cancellationToken);
                nextScan = time.GetUtcNow() + options.PollInterval;
            }
        }
    }

    /// <summary>Applies one batch of task events; returns how many there were.</summary>
    private async Task<int> HandleEventsAsync(TimeSpan wait, CancellationToken cancellationToken)
    {
        var batch = await events.ReceiveAsync(options.EventBatchSize, wait, cancellationToken);
        foreach (var message in batch)
        {
            try
            {
                await HandleEventAsync(message, cancellationToken);
            }
            catch
            {
                // Another leader (or a later session) handles it.
                await message.AbandonAsync(CancellationToken.None);
                throw;
            }
            await message.CompleteAsync(CancellationToken.None);
        }
        return batch.Count;
    }

    /// <summary>Picks up new jobs, cancel requests, and (on the first scan) every active job's stored state.</summary>
    private async Task ScanJobsAsync(CancellationToken cancellationToken)
    {
        if (time.GetUtcNow() >= nextCount)
        {
            // Counting every job reads them all: only for the jobs-by-state gauge, and seldom.
            var counts = new Dictionary<JobState, int>();
            foreach (var job in await jobs.ListEntriesAsync(cancellationToken))
            {
                counts[job.Status.State] = counts.GetValueOrDefault(job.Status.State) + 1;
            }
            metrics.SetJobCounts(counts);
            nextCount = time.GetUtcNow() + TimeSpan.FromSeconds(10);
        }
        foreach (var entry in await jobs.ListActiveEntriesAsync(cancellationToken))
        {
            var id = entry.Spec.Id;
            if (entry.Status.IsTerminal || finished.Contains(id))
            {
                continue;
            }
            if (!active.TryGetValue(id, out var run))
            {
                run = await LoadAsync(entry, cancellationToken);
                active[id] = run;
                if (!entry.CancelRequested)
                {
                    await ResumeAsync(run, cancellationToken);
                }
            }
            if (entry.CancelRequested && active.ContainsKey(id))
            {
                await EndAsync(run, JobState.Cancelled, "Cancelled by request.", cancellationToken);
            }
        }
    }

    private async Task<JobRun> LoadAsync(JobEntry entry, CancellationToken cancellationToken)
    {
        var run = new JobRun(entry.Spec, entry.Status);
        if (entry.Status.State == JobState.Pending)
        {
            return run;
        }
        var maps = new List<TaskRecord>();
        var reduces = new List<TaskRecord>();
        foreach (var task in await jobs.GetTasksAsync(entry.Spec.Id, cancellationToken))
        {
            (task.Phase == TaskPhase.Map ? maps : reduces).Add(task);
        }
        run.Maps = [.. maps];
        run.Reduces = [.. reduces];
        return run;
    }

    /// <summary>Continues a job from its stored state: plan it, send what was planned but never sent, or move to the next phase.</summary>
    private async Task ResumeAsync(JobRun run, CancellationToken cancellationToken)
    {
        switch (run.Status.State)
        {
            case JobState.Pending:
                await PlanAsync(run, cancellationToken);
                break;
            case JobState.Mapping when run.Maps.Length != run.Status.Map.Total:
                await PlanAsync(run, cancellationToken);
                break;
            case JobState.Mapping when JobRun.AllDone(run.Maps):
                await FinishMapPhaseAsync(run, cancellationToken);
                break;
            case JobState.Mapping:
                await SendPlannedAsync(run, TaskPhase.Map, cancellationToken);
                break;
            case JobState.Reducing when run.Reduces.Length != run.Spec.ReduceTasks:
                await StartReducePhaseAsync(run, cancellationToken);
                break;
            case JobState.Reducing when JobRun.AllDone(run.Reduces):
                await EndAsync(run, JobState.Succeeded, null, cancellationToken);
                break;
            case JobState.Reducing:
                await SendPlannedAsync(run, TaskPhase.Reduce, cancellationToken);
                break;
        }
    }

    private async Task PlanAsync(JobRun run, CancellationToken cancellationToken)
    {
        var spec = run.Spec;
        if (spec.MapJob is not null)
        {
            // A reduce-only job: the map-only job's manifest and intermediates are its map phase.
            await StartReducePhaseAsync(run, cancellationToken);
            return;
        }
        var inputs = new List<BlobItem>();
        await foreach (var blob in blobs.ListAsync(spec.InputContainer, spec.InputPrefix, cancellationToken))
        {
            inputs.Add(blob);
        }
        if (inputs.Count == 0)
        {
            await EndAsync(run, JobState.Failed, $"Input '{spec.InputContainer}/{spec.InputPrefix}' holds no blobs.", cancellationToken);
            return;
        }
        // Workers write here; object stores (unlike folders) need containers made first.
        await blobs.CreateContainerIfMissingAsync(storage.IntermediateContainer, cancellationToken);
        await blobs.CreateContainerIfMissingAsync(storage.OutputContainer, cancellationToken);
        var splits = SplitPlanner.Plan(inputs, spec.MapTasks, spec.SplitSizeBytes);
        if (splits.Count > 100_000)
        {
            await EndAsync(run, JobState.Failed, $"The input would need {splits.Count} map tasks; the limit is 100000. Raise splitSizeBytes.", cancellationToken);
            return;
        }
        long inputBytes = 0;
        var maps = new TaskRecord[splits.Count];
        for (var i = 0; i < maps.Length; i++)
        {
            maps[i] = new TaskRecord { Phase = TaskPhase.Map, Index = i, State = TaskState.Planned, Split = splits[i] };
            inputBytes += splits[i].Length;
        }
        var status = run.Status with
        {
            State = JobState.Mapping,
            StartedAt = time.GetUtcNow(),
            Map = JobRun.Progress(maps),
            Reduce = spec.MapOnly ? new PhaseProgress() : new PhaseProgress { Total = spec.ReduceTasks, Queued = spec.ReduceTasks },
        };
        var writes = new List<KvWrite>(maps.Length + 1);
        foreach (var map in maps)
        {
            writes.Add(TaskWrite(spec.Id, map));
        }
        writes.Add(StatusWrite(status));
        await CommitAsync(writes, cancellationToken);
        run.Maps = maps;
        run.Status = status;
        Log.JobPlanned(logger, spec.Id, maps.Length, spec.ReduceTasks, inputBytes);
        await SendPlannedAsync(run, TaskPhase.Map, cancellationToken);
    }

    /// <summary>Every map is done: record the winners in the manifest, then reduce — or end here for a map-only job.</summary>
    private async Task FinishMapPhaseAsync(JobRun run, CancellationToken cancellationToken)
    {
        var spec = run.Spec;
        var winners = new List<string>(run.Maps.Length);
        foreach (var map in run.Maps)
        {
            winners.Add(map.WinningAttempt ?? throw new InvalidOperationException($"Map task {map.Index} of {spec.Id} is done without a winner."));
        }
        // The manifest is derived from fenced state, so rewriting it after a failover gives the same bytes.
        await blobs.CreateContainerIfMissingAsync(storage.IntermediateContainer, cancellationToken);
        await blobs.PutAsync(storage.IntermediateContainer, TaskNames.MapManifest(spec.Id),
            JsonSerializer.SerializeToUtf8Bytes(new MapManifest(spec.Id, winners), QueueJsonContext.Default.MapManifest), cancellationToken);
        if (spec.MapOnly)
        {
            await EndAsync(run, JobState.Succeeded, null, cancellationToken);
            return;
        }
        await StartReducePhaseAsync(run, cancellationToken);
    }

    private async Task StartReducePhaseAsync(JobRun run, CancellationToken cancellationToken)
    {
        var spec = run.Spec;
        await blobs.CreateContainerIfMissingAsync(storage.OutputContainer, cancellationToken);
        var reduces = new TaskRecord[spec.ReduceTasks];
        var writes = new List<KvWrite>(reduces.Length + 1);
        for (var r = 0; r < reduces.Length; r++)
        {
            reduces[r] = new TaskRecord { Phase = TaskPhase.Reduce, Index = r, State = TaskState.Planned };
            writes.Add(TaskWrite(spec.Id, reduces[r]));
        }
        var status = run.Status with
        {
            State = JobState.Reducing,
            StartedAt = run.Status.StartedAt ?? time.GetUtcNow(),
            MapFinishedAt = run.Status.MapFinishedAt ?? time.GetUtcNow(),
            Map = JobRun.Progress(run.Maps),
            Reduce = JobRun.Progress(reduces),
        };
        writes.Add(StatusWrite(status));
        await CommitAsync(writes, cancellationToken);
        run.Reduces = reduces;
        run.Status = status;
        Log.ReducePhaseStarted(logger, spec.Id, reduces.Length);
        await SendPlannedAsync(run, TaskPhase.Reduce, cancellationToken);
    }

    /// <summary>Sends every Planned task of a phase, then records them as Queued.</summary>
    private async Task SendPlannedAsync(JobRun run, TaskPhase phase, CancellationToken cancellationToken)
    {
        var spec = run.Spec;
        var records = run.Tasks(phase);
        var sent = new List<int>();
        for (var i = 0; i < records.Length; i++)
        {
            if (records[i].State != TaskState.Planned)
            {
                continue;
            }
            var message = new TaskMessage
            {
                JobId = spec.Id,
                Phase = phase,
                Index = i,
                Epoch = lead!.Epoch,
                App = spec.App,
                Args = spec.Args,
                MapTasks = run.Maps.Length,
                ReduceTasks = spec.ReduceTasks,
                MaxAttempts = spec.MaxAttempts,
                TaskTimeout = spec.TaskTimeout,
                InputContainer = spec.InputContainer,
                Split = records[i].Split,
                FileName = records[i].Split?.Blob,
                Mapper = spec.Mapper,
                Reducer = spec.Reducer,
                Combiner = spec.Combiner,
                SkipBadRecords = spec.SkipBadRecords,
                IntermediatesOf = spec.MapJob ?? spec.Id,
            };
            await tasks.SendAsync(JsonSerializer.SerializeToUtf8Bytes(message, QueueJsonContext.Default.TaskMessage), cancellationToken);
            sent.Add(i);
        }
        if (sent.Count == 0)
        {
            return;
        }
        var updated = (TaskRecord[])records.Clone();
        var writes = new List<KvWrite>(sent.Count + 1);
        foreach (var i in sent)
        {
            updated[i] = updated[i] with { State = TaskState.Queued };
            writes.Add(TaskWrite(spec.Id, updated[i]));
        }
        var status = WithProgress(run.Status, phase, updated);
        writes.Add(StatusWrite(status));
        await CommitAsync(writes, cancellationToken);
        SetTasks(run, phase, updated);
        run.Status = status;
    }

    private async Task HandleEventAsync(ILeasedMessage message, CancellationToken cancellationToken)
    {
        TaskEvent? report;
        try
        {
            report = JsonSerializer.Deserialize(message.Body.Span, QueueJsonContext.Default.TaskEvent);
        }
        catch (JsonException e)
        {
            Log.UnreadableMessage(logger, events.Name, e.Message);
            return;
        }
        if (report is null)
        {
            return;
        }
        var taskId = TaskNames.TaskId(report.Phase, report.Index);
        if (!active.TryGetValue(report.JobId, out var run))
        {
            Log.EventIgnored(logger, report.Kind.ToString(), report.JobId, taskId, report.AttemptId, "job not active");
            return;
        }
        var records = run.Tasks(report.Phase);
        if (report.Index < 0 || report.Index >= records.Length)
        {
            Log.EventIgnored(logger, report.Kind.ToString(), report.JobId, taskId, report.AttemptId, "no such task");
            return;
        }
        var task = records[report.Index];
        if (task.State is TaskState.Done or TaskState.Failed)
        {
            // A duplicate or late report from a redelivered attempt: the first committed attempt won.
            Log.EventIgnored(logger, report.Kind.ToString(), report.JobId, taskId, report.AttemptId, $"task already {task.State}");
            return;
        }
        var status = run.Status;
        switch (report.Kind)
        {
            case TaskEventKind.Started:
                task = task with { State = TaskState.Running, Attempts = task.Attempts + 1, LastAttempt = report.AttemptId, Worker = report.WorkerId, StartedAt = report.At };
                status = status with { Attempts = status.Attempts + 1 };
                break;
            case TaskEventKind.Succeeded:
                var counters = report.Counters ?? TaskCounters.Zero;
                task = task with { State = TaskState.Done, WinningAttempt = report.AttemptId, Worker = report.WorkerId, Counters = counters, FinishedAt = report.At };
                status = report.Phase == TaskPhase.Map
                    ? status with { MapCounters = status.MapCounters.Add(counters) }
                    : status with { ReduceCounters = status.ReduceCounters.Add(counters) };
                break;
            case TaskEventKind.Failed:
                // Only the latest attempt's failure puts the task back to waiting; the queue redelivers it.
                task = task with
                {
                    State = task.LastAttempt == report.AttemptId ? TaskState.Queued : task.State,
                    FailedAttempts = task.FailedAttempts + 1,
                    LastError = report.Error,
                };
                status = status with { FailedAttempts = status.FailedAttempts + 1 };
                break;
            case TaskEventKind.Progress when report.AttemptId != task.LastAttempt:
                Log.EventIgnored(logger, report.Kind.ToString(), report.JobId, taskId, report.AttemptId, "not the current attempt");
                return;
        }
        if (report.Status is not null)
        {
            task = task with { Status = report.Status };
        }
        var updated = (TaskRecord[])records.Clone();
        updated[report.Index] = task;
        status = WithProgress(status, report.Phase, updated);
        await CommitAsync([TaskWrite(run.Spec.Id, task), StatusWrite(status)], cancellationToken);
        SetTasks(run, report.Phase, updated);
        run.Status = status;

        if (report.Kind == TaskEventKind.Succeeded)
        {
            if (report.Phase == TaskPhase.Map && run.Status.State == JobState.Mapping && JobRun.AllDone(run.Maps))
            {
                await FinishMapPhaseAsync(run, cancellationToken);
            }
            else if (report.Phase == TaskPhase.Reduce && run.Status.State == JobState.Reducing && JobRun.AllDone(run.Reduces))
            {
                await EndAsync(run, JobState.Succeeded, null, cancellationToken);
            }
        }
    }

    /// <summary>Poison tasks: the job fails with the task's last error; the dead letter is recorded on the task.</summary>
    private async Task DrainDeadLettersAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            var batch = await tasks.ReceiveDeadLetteredAsync(32, TimeSpan.Zero, cancellationToken);
            if (batch.Count == 0)
            {
                return;
            }
            // Workers report a failure before they dead-letter: apply those reports first so the task's attempts and error are current.
            while (await HandleEventsAsync(TimeSpan.Zero, cancellationToken) > 0)
            {
            }
            foreach (var message in batch)
            {
                TaskMessage? task = null;
                try
                {
                    task = JsonSerializer.Deserialize(message.Body.Span, QueueJsonContext.Default.TaskMessage);
                }
                catch (JsonException e)
                {
                    Log.UnreadableMessage(logger, tasks.Name + " dead letters", e.Message);
                }
                if (task is not null && active.TryGetValue(task.JobId, out var run) && task.Index < run.Tasks(task.Phase).Length)
                {
                    var records = run.Tasks(task.Phase);
                    var record = records[task.Index];
                    if (record.State != TaskState.Done)
                    {
                        var reason = $"{message.DeadLetterReason}: {message.DeadLetterDescription}";
                        var failed = record with { State = TaskState.Failed, DeadLetterReason = reason, LastError = record.LastError ?? message.DeadLetterDescription };
                        var updated = (TaskRecord[])records.Clone();
                        updated[task.Index] = failed;
                        SetTasks(run, task.Phase, updated);
                        var error = $"Task {TaskNames.TaskId(task.Phase, task.Index)} failed after {record.Attempts} attempts and was dead-lettered ({reason})";
                        await EndAsync(run, JobState.Failed, error, cancellationToken, TaskWrite(run.Spec.Id, failed));
                    }
                }
                await message.CompleteAsync(CancellationToken.None);
            }
        }
    }

    /// <summary>Ends a job: records the final state (fenced), stops its remaining tasks, deletes intermediates.</summary>
    private async Task EndAsync(JobRun run, JobState state, string? error, CancellationToken cancellationToken, KvWrite? alsoWrite = null)
    {
        var id = run.Spec.Id;
        var outputs = new List<string>();
        if (state == JobState.Succeeded && !run.Spec.MapOnly)
        {
            for (var r = 0; r < run.Spec.ReduceTasks; r++)
            {
                outputs.Add(TaskNames.OutputPart(id, r));
            }
        }
        var status = run.Status with
        {
            State = state,
            Error = error,
            FinishedAt = time.GetUtcNow(),
            Outputs = outputs,
            OutputContainer = state == JobState.Succeeded && !run.Spec.MapOnly ? storage.OutputContainer : null,
            Map = JobRun.Progress(run.Maps),
            Reduce = run.Reduces.Length > 0 ? JobRun.Progress(run.Reduces) : run.Status.Reduce,
        };
        var writes = new List<KvWrite> { StatusWrite(status), KvWrite.Delete(JobStore.ActiveKey(id)) };
        if (alsoWrite is not null)
        {
            writes.Add(alsoWrite);
        }
        if (state == JobState.Failed)
        {
            // The cancel marker tells workers to drop the job's remaining tasks.
            writes.Add(new KvWrite(JobStore.CancelKey(id), [1]));
        }
        await CommitAsync(writes, cancellationToken);
        run.Status = status;
        active.Remove(id);
        finished.Add(id);
        if (error is not null && state == JobState.Failed)
        {
            Log.JobFailed(logger, id, error);
        }
        Log.JobEnded(logger, id, state.ToString());
        metrics.JobEnded(state, status.FinishedAt!.Value - status.SubmittedAt);
        // A succeeded map-only job keeps its intermediates for the reduce-only job that follows.
        if (storage.DeleteIntermediates && !(run.Spec.MapOnly && state == JobState.Succeeded))
        {
            try
            {
                await blobs.DeletePrefixAsync(storage.IntermediateContainer, id + "/", cancellationToken);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or HttpRequestException)
            {
                Log.CleanupFailed(logger, id, e.Message);
            }
        }
    }

    private static JobStatus WithProgress(JobStatus status, TaskPhase phase, TaskRecord[] records) =>
        phase == TaskPhase.Map ? status with { Map = JobRun.Progress(records) } : status with { Reduce = JobRun.Progress(records) };

    private static void SetTasks(JobRun run, TaskPhase phase, TaskRecord[] records)
    {
        if (phase == TaskPhase.Map)
        {
            run.Maps = records;
        }
        else
        {
            run.Reduces = records;
        }
    }

    private KvWrite StatusWrite(JobStatus status) =>
        new(JobStore.StatusKey(status.Id), JobStore.Serialize(status with { Epoch = lead!.Epoch }, QueueJsonContext.Default.JobStatus));

    private static KvWrite TaskWrite(string jobId, TaskRecord task) =>
        new(JobStore.TaskKey(jobId, task.Phase, task.Index), JobStore.Serialize(task, QueueJsonContext.Default.TaskRecord));

    /// <summary>Writes in fenced transactions of bounded size; the last write (the job status) lands in the last one.</summary>
    private async Task CommitAsync(List<KvWrite> writes, CancellationToken cancellationToken)
    {
        var fence = lead!.Fence;
        for (var start = 0; start < writes.Count; start += MaxWritesPerTransaction)
        {
            var chunk = writes.GetRange(start, Math.Min(MaxWritesPerTransaction, writes.Count - start));
            if (!await jobs.Store.TransactAsync([fence], chunk, cancellationToken))
            {
                throw new LeadershipLostException($"A fenced write failed: epoch {lead.Epoch} no longer leads.");
            }
        }
    }
}
