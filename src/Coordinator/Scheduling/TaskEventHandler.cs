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
        // write (its tasks and status together), then the messages are settled: one round trip per job
        // and batch instead of one per event, so a burst of completions does not queue behind etcd.
        var staged = new Dictionary<string, StagedJob>(StringComparer.Ordinal);
        try
        {
            foreach (var message in batch)
            {
                Stage(session, message, staged);
            }
            foreach (var job in staged.Values)
            {
                var writes = new List<KvWrite>(job.Changed.Count + 1);
                foreach (var task in job.Changed.Values)
                {
                    writes.Add(LeaderSession.TaskWrite(job.Run.Spec.Id, task));
                }
                writes.Add(session.StatusWrite(job.Next.Status));
                await session.CommitAsync(writes, cancellationToken);
                job.Run.Maps = job.Next.Maps;
                job.Run.Reduces = job.Next.Reduces;
                job.Run.Status = job.Next.Status;
            }
            foreach (var job in staged.Values)
            {
                foreach (var phase in job.Succeeded)
                {
                    await planner.AdvanceAsync(session, job.Run, phase, cancellationToken);
                }
            }
        }
        catch
        {
            // Another leader (or a later session) handles them; what was committed reads as duplicates then.
            foreach (var message in batch)
            {
                await message.AbandonAsync(CancellationToken.None);
            }
            throw;
        }
        foreach (var message in batch)
        {
            await message.CompleteAsync(CancellationToken.None);
        }
        return batch.Count;
    }

    /// <summary>A job with the batch's events applied to a copy (<see cref="Next"/>), not yet written.</summary>
    private sealed class StagedJob(JobRun run)
    {
        public JobRun Run { get; } = run;
        public JobRun Next { get; } = new(run.Spec, run.Status) { Maps = run.Maps, Reduces = run.Reduces };
        public Dictionary<(TaskPhase, int), TaskRecord> Changed { get; } = [];
        /// <summary>Phases with a task that succeeded in this batch: the phase may be complete.</summary>
        public HashSet<TaskPhase> Succeeded { get; } = [];
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
                if (task is not null && session.Active.TryGetValue(task.JobId, out var run) && task.Index >= 0 && task.Index < run.Tasks(task.Phase).Length)
                {
                    var records = run.Tasks(task.Phase);
                    var record = records[task.Index];
                    if (record.State != TaskState.Done)
                    {
                        var reason = $"{message.DeadLetterReason}: {message.DeadLetterDescription}";
                        var failed = record with { State = TaskState.Failed, DeadLetterReason = reason, LastError = record.LastError ?? message.DeadLetterDescription };
                        var updated = (TaskRecord[])records.Clone();
                        updated[task.Index] = failed;
                        run.SetTasks(task.Phase, updated);
                        var error = $"Task {TaskNames.TaskId(task.Phase, task.Index)} failed after {record.Attempts} attempts and was dead-lettered ({reason})";
                        await finisher.EndAsync(session, run, JobState.Failed, error, cancellationToken, LeaderSession.TaskWrite(run.Spec.Id, failed));
                    }
                }
                await message.CompleteAsync(CancellationToken.None);
            }
        }
    }

    private void Stage(LeaderSession session, ILeasedMessage message, Dictionary<string, StagedJob> staged)
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
        if (!staged.TryGetValue(report.JobId, out var run))
        {
            if (!session.Active.TryGetValue(report.JobId, out var active))
            {
                Log.EventIgnored(logger, report.Kind.ToString(), report.JobId, taskId, report.AttemptId, "job not active");
                return;
            }
            run = staged[report.JobId] = new StagedJob(active);
        }
        var records = run.Next.Tasks(report.Phase);
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
        if (report.Kind == TaskEventKind.Started && task.LastAttempt == report.AttemptId)
        {
            // Redelivered after its write landed (the batch it came in failed later): counted once.
            Log.EventIgnored(logger, report.Kind.ToString(), report.JobId, taskId, report.AttemptId, "already started");
            return;
        }
        var status = run.Next.Status;
        switch (report.Kind)
        {
            case TaskEventKind.Started:
                task = task with { State = TaskState.Running, Attempts = task.Attempts + 1, LastAttempt = report.AttemptId, Worker = report.WorkerId, StartedAt = report.At };
                status = status with { Attempts = status.Attempts + 1 };
                break;
            case TaskEventKind.Succeeded:
                var counters = report.Counters ?? TaskCounters.Zero;
                task = task with { State = TaskState.Done, WinningAttempt = report.AttemptId, Worker = report.WorkerId, Counters = counters, FinishedAt = report.At, RecordedAt = time.GetUtcNow() };
                status = report.Phase == TaskPhase.Map
                    ? status with { MapCounters = status.MapCounters.Add(counters) }
                    : status with { ReduceCounters = status.ReduceCounters.Add(counters) };
                if (report.Backup)
                {
                    status = status with { BackupWins = status.BackupWins + 1 };
                }
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
        // Copied once per batch: the leader's own arrays change only after the write.
        var updated = ReferenceEquals(records, run.Run.Tasks(report.Phase)) ? (TaskRecord[])records.Clone() : records;
        updated[report.Index] = task;
        run.Changed[(report.Phase, report.Index)] = task;
        run.Next.SetTasks(report.Phase, updated);
        run.Next.Status = JobRun.WithProgress(status, report.Phase, updated);
        if (report.Kind == TaskEventKind.Succeeded)
        {
            run.Succeeded.Add(report.Phase);
        }
    }
}
