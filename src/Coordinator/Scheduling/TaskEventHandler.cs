using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Queue.Contracts;
using Queue.Contracts.Jobs;
using Queue.Contracts.Ports;

namespace Queue.Coordinator.Scheduling;

/// <summary>
/// Applies workers' task events (started, progress, succeeded, failed) and the task queue's dead
/// letters to job state. Duplicate and late reports are ignored: the first committed attempt wins.
/// </summary>
public sealed class TaskEventHandler(
    [FromKeyedServices(QueueNames.Tasks)] IWorkQueue tasks,
    [FromKeyedServices(QueueNames.Events)] IWorkQueue events,
    JobPlanner planner,
    JobFinisher finisher,
    TaskDispatcher dispatcher,
    FairAdmission admission,
    IOptions<CoordinatorOptions> options,
    TimeProvider time,
    ILogger<TaskEventHandler> logger)
{
    private readonly CoordinatorOptions options = options.Value;

    /// <summary>Applies one batch of task events, waiting up to <paramref name="wait"/> for the first; returns how many there were.</summary>
    public Task<int> HandleBatchAsync(LeaderSession session, TimeSpan wait, CancellationToken cancellationToken) =>
        HandleBatchAsync(session, wait, cancellationToken, cancellationToken);

    /// <summary>
    /// As above, but <paramref name="wakeUp"/> ends the wait early (the leader's watch saw a new job);
    /// events already received are always applied in full, never cut off half-way.
    /// </summary>
    public async Task<int> HandleBatchAsync(LeaderSession session, TimeSpan wait, CancellationToken wakeUp, CancellationToken cancellationToken)
    {
        if (!session.Lead.IsConfirmed)
        {
            // Take nothing this leadership may not be able to apply.
            throw new LeadershipLostException($"Epoch {session.Lead.Epoch} is no longer confirmed by the store.");
        }
        IReadOnlyList<ILeasedMessage> batch;
        try
        {
            batch = await events.ReceiveAsync(options.EventBatchSize, wait, wakeUp);
        }
        catch (OperationCanceledException) when (wakeUp.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            return 0;
        }
        if (batch.Count == 0)
        {
            return 0;
        }
        // The batch's events are applied to staged copies, then each job's changes go in one fenced
        // write (its tasks and status together), then that job's messages are settled: one round trip per
        // job and batch instead of one per event, so a burst of completions does not queue behind etcd.
        // No message is settled before a fenced write (or check) of this leadership succeeded after it
        // was received: a deposed leader abandons what it took, and the one who leads now applies it.
        var staged = new Dictionary<string, StagedJob>(StringComparer.Ordinal);
        var ignored = new List<ILeasedMessage>();
        var settled = new HashSet<ILeasedMessage>(ReferenceEqualityComparer.Instance);
        try
        {
            if (!session.Lead.IsConfirmed)
            {
                throw new LeadershipLostException($"Epoch {session.Lead.Epoch} is no longer confirmed by the store; its events go back to the queue.");
            }
            foreach (var message in batch)
            {
                if (Stage(session, message, staged) is { } job)
                {
                    job.Messages.Add(message);
                }
                else
                {
                    ignored.Add(message);
                }
            }
            // The room the batch's ends (and starts) made is filled in the same write: the tasks are sent
            // now and recorded as queued with the events that made room for them.
            foreach (var admit in await admission.DecideAsync(session, run => staged.TryGetValue(run.Spec.Id, out var s) ? s.Next : run, cancellationToken))
            {
                if (!staged.TryGetValue(admit.Run.Spec.Id, out var job))
                {
                    staged[admit.Run.Spec.Id] = job = new StagedJob(admit.Run);
                }
                await dispatcher.StageAsync(session, job.Next, admit.Phase, resendUnfinished: false, admit.Count, job.Changed, cancellationToken);
            }
            // Every job's changes in as few fenced transactions as fit (one, unless the batch is large): each is
            // a round of the store's consensus, and jobs that share the pool share the leader's batches.
            var group = new List<StagedJob>();
            var writes = new List<KvWrite>();
            foreach (var job in staged.Values)
            {
                if (writes.Count > 0 && writes.Count + job.Changed.Count + 1 > LeaderSession.MaxWritesPerTransaction)
                {
                    await CommitAsync(session, group, writes, settled, cancellationToken);
                }
                foreach (var task in job.Changed.Values)
                {
                    writes.Add(LeaderSession.TaskWrite(job.Run.Spec.Id, task));
                }
                // A job's status lands with (or after) its tasks: a transaction too large for one goes in several.
                writes.Add(session.StatusWrite(job.Next.Status));
                group.Add(job);
            }
            if (group.Count > 0)
            {
                await CommitAsync(session, group, writes, settled, cancellationToken);
            }
            if (ignored.Count > 0)
            {
                if (staged.Count == 0)
                {
                    await session.ConfirmAsync(cancellationToken);
                }
                await CompleteAsync(ignored, settled);
            }
            foreach (var job in staged.Values)
            {
                if (job.FailWith is { } error)
                {
                    if (session.Active.ContainsKey(job.Run.Spec.Id))
                    {
                        await finisher.EndAsync(session, job.Run, JobState.Failed, error, cancellationToken);
                    }
                    continue;
                }
                foreach (var phase in job.Succeeded)
                {
                    await planner.AdvanceAsync(session, job.Run, phase, cancellationToken);
                }
            }
        }
        catch
        {
            foreach (var job in staged.Values)
            {
                job.EndSpans("not recorded: this leadership's write failed");
            }
            // Another leader (or a later session) handles them; what was committed reads as duplicates then.
            foreach (var message in batch)
            {
                if (!settled.Contains(message))
                {
                    await SettleAsync(message, abandon: true);
                }
            }
            throw;
        }
        return batch.Count;
    }

    private async Task CommitAsync(LeaderSession session, List<StagedJob> group, List<KvWrite> writes, HashSet<ILeasedMessage> settled, CancellationToken cancellationToken)
    {
        await session.CommitAsync(writes, cancellationToken);
        foreach (var job in group)
        {
            job.Run.Adopt(job.Next);
            job.EndSpans(null);
        }
        foreach (var job in group)
        {
            await CompleteAsync(job.Messages, settled);
        }
        group.Clear();
        writes.Clear();
    }

    /// <summary>Completes applied (or rightly ignored) events; one whose lease is gone comes back as a duplicate, which is ignored then.</summary>
    private async Task CompleteAsync(List<ILeasedMessage> messages, HashSet<ILeasedMessage> settled)
    {
        foreach (var message in messages)
        {
            await SettleAsync(message, abandon: false);
            settled.Add(message);
        }
    }

    private async Task SettleAsync(ILeasedMessage message, bool abandon)
    {
        try
        {
            // Settled with None: what was applied must not come back because the session is ending.
            await (abandon ? message.AbandonAsync(CancellationToken.None) : message.CompleteAsync(CancellationToken.None));
        }
        catch (LeaseLostException e)
        {
            // Completing: it comes back as a duplicate, which is ignored. Abandoning: it comes back anyway.
            Log.SettleLeaseLost(logger, message.MessageId, e.Message);
        }
    }

    /// <summary>A job with the batch's events applied to a copy (<see cref="Next"/>), not yet written.</summary>
    private sealed class StagedJob(JobRun run)
    {
        public JobRun Run { get; } = run;
        public JobRun Next { get; } = run.Copy();
        public Dictionary<(TaskPhase, int), TaskRecord> Changed { get; } = [];
        /// <summary>The batch's messages about this job, settled once its write landed.</summary>
        public List<ILeasedMessage> Messages { get; } = [];
        /// <summary>Phases with a task that succeeded in this batch: the phase may be complete.</summary>
        public HashSet<TaskPhase> Succeeded { get; } = [];
        /// <summary>The spans of the results this batch records for the job.</summary>
        public List<System.Diagnostics.Activity> Spans { get; } = [];
        /// <summary>Why the job fails once this batch's write landed (a map whose output was lost too often).</summary>
        public string? FailWith { get; set; }

        public void EndSpans(string? error)
        {
            foreach (var span in Spans)
            {
                if (error is not null)
                {
                    span.SetStatus(System.Diagnostics.ActivityStatusCode.Error, error);
                }
                span.Dispose();
            }
            Spans.Clear();
        }
    }

    /// <summary>
    /// Hands back every event and dead letter this coordinator holds or was pushed ahead, for whoever
    /// leads next: called whenever a leader session ends.
    /// </summary>
    public async Task StopReceivingAsync()
    {
        foreach (var (queue, deadLetters) in new[] { (events, false), (tasks, true) })
        {
            try
            {
                await queue.StopReceivingAsync(deadLetters, CancellationToken.None);
            }
            catch (BrokerUnavailableException e)
            {
                Log.StopReceivingFailed(logger, e.Message);
            }
        }
    }

    /// <summary>Poison tasks: the job fails with the task's last error; the dead letter is recorded on the task.</summary>
    public async Task DrainDeadLettersAsync(LeaderSession session, CancellationToken cancellationToken)
    {
        while (true)
        {
            var batch = await tasks.ReceiveDeadLetteredAsync(32, TimeSpan.Zero, cancellationToken);
            if (batch.Count == 0)
            {
                return;
            }
            // Workers report a failure before they dead-letter: apply those reports first so the task's attempts and error are current.
            while (await HandleBatchAsync(session, TimeSpan.Zero, cancellationToken) > 0)
            {
            }
            var settled = new HashSet<ILeasedMessage>(ReferenceEqualityComparer.Instance);
            try
            {
                foreach (var message in batch)
                {
                    await ApplyDeadLetterAsync(session, message, cancellationToken);
                    await SettleAsync(message, abandon: false);
                    settled.Add(message);
                }
            }
            catch
            {
                foreach (var message in batch)
                {
                    if (!settled.Contains(message))
                    {
                        await SettleAsync(message, abandon: true);
                    }
                }
                throw;
            }
        }
    }

    /// <summary>Fails the dead letter's job (a fenced write), or, for no active job, confirms this leadership before the letter is dropped.</summary>
    private async Task ApplyDeadLetterAsync(LeaderSession session, ILeasedMessage message, CancellationToken cancellationToken)
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
        if (task is null || !session.Active.TryGetValue(task.JobId, out var run) || task.Index < 0 || task.Index >= run.Tasks(task.Phase).Length
            || run.Tasks(task.Phase)[task.Index] is not { State: not TaskState.Done } record)
        {
            await session.ConfirmAsync(cancellationToken);
            return;
        }
        var reason = $"{message.DeadLetterReason}: {message.DeadLetterDescription}";
        var failed = record with { State = TaskState.Failed, DeadLetterReason = reason, LastError = record.LastError ?? message.DeadLetterDescription };
        var updated = (TaskRecord[])run.Tasks(task.Phase).Clone();
        updated[task.Index] = failed;
        run.SetTasks(task.Phase, updated);
        var error = $"Task {TaskNames.TaskId(task.Phase, task.Index)} failed after {record.Attempts} attempts and was dead-lettered ({reason})";
        await finisher.EndAsync(session, run, JobState.Failed, error, cancellationToken, LeaderSession.TaskWrite(run.Spec.Id, failed));
    }

    /// <summary>The task running the reporting attempt, started at <paramref name="at"/>, and the job's attempts counted.</summary>
    private static (TaskRecord Task, JobStatus Status) Start(TaskRecord task, JobStatus status, TaskEvent report, DateTimeOffset at) =>
        (task with
        {
            State = TaskState.Running, Attempts = task.Attempts + 1, LastAttempt = report.AttemptId, Worker = report.WorkerId, StartedAt = at,
            History = AttemptRecord.Put(task.History, Began(task, report, at)),
        }, status with { Attempts = status.Attempts + 1 });

    /// <summary>The history entry of an attempt that just started.</summary>
    private static AttemptRecord Began(TaskRecord task, TaskEvent report, DateTimeOffset startedAt) => new()
    {
        Id = report.AttemptId,
        Worker = report.WorkerId,
        QueuedAt = report.Backup ? task.BackupAt ?? task.QueuedAt : task.QueuedAt,
        StartedAt = startedAt,
        Backup = report.Backup,
    };

    /// <summary>
    /// The history with the reporting attempt ended; a success also ends the task's other running attempts
    /// (they see the task done at their next check and stop).
    /// </summary>
    private static List<AttemptRecord> Ended(TaskRecord task, TaskEvent report, AttemptOutcome outcome, TaskCounters? counters)
    {
        var attempt = AttemptRecord.Find(task.History, report.AttemptId) ?? Began(task, report, report.StartedAt ?? report.At);
        var history = AttemptRecord.Put(task.History, attempt with
        {
            EndedAt = report.At,
            Outcome = outcome,
            InputBytes = counters?.InputBytes,
            InputRecords = counters?.InputRecords,
            OutputRecords = counters?.OutputRecords,
            Error = AttemptError(report),
        });
        return outcome == AttemptOutcome.Succeeded ? AttemptRecord.EndRunning(history, AttemptOutcome.Killed, report.At)! : history;
    }

    /// <summary>The end of the report's error, as an attempt's history keeps it.</summary>
    private static string? AttemptError(TaskEvent report) => report.Error is { Length: > 400 } error ? error[^400..] : report.Error;

    /// <summary>
    /// Puts map <paramref name="index"/> back to Planned when the output a reduce lost is still its winner
    /// (reports from other reduces about the same output, or about one since replaced, change nothing),
    /// and the job back to its map phase; its counters come off the job's, for the re-run to count again.
    /// A map whose output was lost more often than the job's <c>maxAttempts</c> fails the job instead.
    /// </summary>
    private JobStatus RerunMap(StagedJob run, int index, TaskEvent report, JobStatus status)
    {
        var maps = run.Next.Maps;
        if (index < 0 || index >= maps.Length || maps[index] is not { State: TaskState.Done } map || map.WinningAttempt != report.LostMapAttempt)
        {
            return status;
        }
        if (map.Reruns >= run.Run.Spec.MaxAttempts)
        {
            run.FailWith = $"The output of map task {TaskNames.TaskId(TaskPhase.Map, index)} was lost {map.Reruns + 1} times (last: {report.Error}).";
            return status;
        }
        var history = map.History;
        if (AttemptRecord.Find(history, map.WinningAttempt!) is { } winner)
        {
            history = AttemptRecord.Put(history, winner with { Outcome = AttemptOutcome.OutputLost, Error = AttemptError(report) });
        }
        var rerun = map with
        {
            State = TaskState.Planned, WinningAttempt = null, OutputLength = null, Counters = null, FinishedAt = null, RecordedAt = null,
            Reruns = map.Reruns + 1, LastError = report.Error, History = history,
        };
        var updated = ReferenceEquals(maps, run.Run.Maps) ? (TaskRecord[])maps.Clone() : maps;
        updated[index] = rerun;
        run.Changed[(TaskPhase.Map, index)] = rerun;
        run.Next.SetTasks(TaskPhase.Map, updated);
        run.Next.Reopen(TaskPhase.Map, index);
        Log.MapRerun(logger, report.JobId, report.Index, index, report.LostMapAttempt!, rerun.Reruns);
        return JobRun.WithMove(status, TaskPhase.Map, TaskState.Done, TaskState.Planned) with
        {
            State = status.State == JobState.Reducing ? JobState.Mapping : status.State,
            // The map phase ends again when the map has run again: the reduce phase is timed from then.
            MapFinishedAt = null,
            MapCounters = status.MapCounters.Subtract(map.Counters ?? TaskCounters.Zero),
            MapReruns = status.MapReruns + 1,
        };
    }

    /// <summary>Applies one event to its job's staged copy; returns that job, or null when the event is for no active job or unreadable.</summary>
    private StagedJob? Stage(LeaderSession session, ILeasedMessage message, Dictionary<string, StagedJob> staged)
    {
        TaskEvent? report;
        try
        {
            report = JsonSerializer.Deserialize(message.Body.Span, QueueJsonContext.Default.TaskEvent);
        }
        catch (JsonException e)
        {
            Log.UnreadableMessage(logger, events.Name, e.Message);
            return null;
        }
        if (report is null)
        {
            return null;
        }
        var taskId = TaskNames.TaskId(report.Phase, report.Index);
        if (!staged.TryGetValue(report.JobId, out var run))
        {
            if (!session.Active.TryGetValue(report.JobId, out var active))
            {
                Log.EventIgnored(logger, report.Kind.ToString(), report.JobId, taskId, report.AttemptId, "job not active");
                return null;
            }
            run = staged[report.JobId] = new StagedJob(active);
        }
        var records = run.Next.Tasks(report.Phase);
        if (report.Index < 0 || report.Index >= records.Length)
        {
            Log.EventIgnored(logger, report.Kind.ToString(), report.JobId, taskId, report.AttemptId, "no such task");
            return run;
        }
        var task = records[report.Index];
        var before = task.State;
        if (task.State is TaskState.Done or TaskState.Failed)
        {
            // A duplicate or late report from a redelivered attempt: the first committed attempt won.
            Log.EventIgnored(logger, report.Kind.ToString(), report.JobId, taskId, report.AttemptId, $"task already {task.State}");
            return run;
        }
        if ((report.Kind == TaskEventKind.Started && task.LastAttempt == report.AttemptId)
            || (report.Kind == TaskEventKind.Failed && task.LastFailedAttempt == report.AttemptId))
        {
            // Redelivered after its write landed (its lease ended before it was settled): counted once.
            Log.EventIgnored(logger, report.Kind.ToString(), report.JobId, taskId, report.AttemptId, "already recorded");
            return run;
        }
        var status = run.Next.Status;
        if (report.StartedAt is { } started && report.Kind is TaskEventKind.Succeeded or TaskEventKind.Failed && task.LastAttempt != report.AttemptId)
        {
            // An attempt that ended before its start was reported: its start is counted here, as a Started event would have.
            (task, status) = Start(task, status, report, started);
        }
        switch (report.Kind)
        {
            case TaskEventKind.Started:
                (task, status) = Start(task, status, report, report.At);
                break;
            case TaskEventKind.Succeeded:
                if (task.StartedAt is { } began)
                {
                    admission.ObserveEnd(report.At - began, time.GetUtcNow() - report.At);
                }
                var counters = report.Counters ?? TaskCounters.Zero;
                task = task with
                {
                    State = TaskState.Done, WinningAttempt = report.AttemptId, Worker = report.WorkerId, Counters = counters, FinishedAt = report.At,
                    RecordedAt = time.GetUtcNow(), OutputLength = report.OutputLength,
                    History = Ended(task, report, AttemptOutcome.Succeeded, counters),
                };
                status = report.Phase switch
                {
                    TaskPhase.Map => status with { MapCounters = status.MapCounters.Add(counters) },
                    TaskPhase.Reduce => status with { ReduceCounters = status.ReduceCounters.Add(counters) },
                    _ => status,
                };
                if (report.Backup)
                {
                    status = status with { BackupWins = status.BackupWins + 1 };
                }
                break;
            case TaskEventKind.Failed:
                // A reduce that found a map's committed output missing or damaged: that map runs again, and the
                // reduce is sent anew once the maps are all done (its worker completed the message: no attempt
                // of its own is used). Any other failure: only the latest attempt's puts the task back to
                // waiting, and the queue redelivers it.
                var lost = report.LostMap is not null && report.Phase == TaskPhase.Reduce && run.Run.Spec.MapJob is null;
                task = task with
                {
                    State = task.LastAttempt == report.AttemptId ? (lost ? TaskState.Planned : TaskState.Queued) : task.State,
                    FailedAttempts = task.FailedAttempts + 1,
                    LastFailedAttempt = report.AttemptId,
                    LastError = report.Error,
                    History = Ended(task, report, AttemptOutcome.Failed, null),
                };
                status = status with { FailedAttempts = status.FailedAttempts + 1 };
                if (lost)
                {
                    if (task.State == TaskState.Planned)
                    {
                        run.Next.Reopen(TaskPhase.Reduce, report.Index);
                    }
                    status = RerunMap(run, report.LostMap!.Value, report, status);
                }
                break;
            case TaskEventKind.Progress when report.AttemptId != task.LastAttempt:
                Log.EventIgnored(logger, report.Kind.ToString(), report.JobId, taskId, report.AttemptId, "not the current attempt");
                return run;
        }
        if (report.Status is not null)
        {
            task = task with { Status = report.Status };
        }
        // Copied once per batch: the leader's own arrays change only after the write.
        var updated = ReferenceEquals(records, run.Run.Tasks(report.Phase)) ? (TaskRecord[])records.Clone() : records;
        updated[report.Index] = task;
        run.Changed[(report.Phase, report.Index)] = task;
        run.Next.SetTasks(report.Phase, updated);
        run.Next.Status = JobRun.WithMove(status, report.Phase, before, task.State);
        if (report.Kind == TaskEventKind.Succeeded)
        {
            run.Succeeded.Add(report.Phase);
        }
        if (report.Kind is TaskEventKind.Succeeded or TaskEventKind.Failed)
        {
            // The leader recording the result, under the attempt's span; it ends once the job's write did.
            var current = System.Diagnostics.Activity.Current;
            if (QueueTracing.Start(QueueTracing.Coordinator, $"{taskId} record {report.Kind}", report.TraceParent) is { } span)
            {
                span.SetTag("queue.job", report.JobId);
                span.SetTag("queue.attempt", report.AttemptId);
                run.Spans.Add(span);
            }
            // Siblings, not a chain: the next event's span must not hang under this one.
            System.Diagnostics.Activity.Current = current;
        }
        return run;
    }
}
