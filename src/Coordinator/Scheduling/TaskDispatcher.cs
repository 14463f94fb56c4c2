using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Queue.Contracts;
using Queue.Contracts.Jobs;
using Queue.Contracts.Ports;

namespace Queue.Coordinator.Scheduling;

/// <summary>Sends a phase's tasks to the task queue and records them as queued.</summary>
public sealed class TaskDispatcher([FromKeyedServices(QueueNames.Tasks)] IWorkQueue tasks, TimeProvider time)
{
    /// <summary>Whether the task queue keeps its messages when this process dies (every broker; not the embedded queue).</summary>
    public bool QueueIsDurable => tasks.IsDurable;

    /// <summary>
    /// Sends the first <paramref name="admit"/> Planned tasks of a phase (those <see cref="FairAdmission"/>
    /// let in) and, with <paramref name="resendUnfinished"/>, every Queued and Running one (their messages
    /// were lost with the last process), then records them as Queued in one fenced write.
    /// </summary>
    public async Task SendAsync(LeaderSession session, JobRun run, TaskPhase phase, bool resendUnfinished, int admit, CancellationToken cancellationToken)
    {
        var next = run.Copy();
        var changed = new Dictionary<(TaskPhase, int), TaskRecord>();
        await StageAsync(session, next, phase, resendUnfinished, admit, changed, cancellationToken);
        if (changed.Count == 0)
        {
            return;
        }
        await session.CommitRunAsync(run, next, changed.Values, cancellationToken);
    }

    /// <summary>
    /// As <see cref="SendAsync"/>, but the tasks are marked Queued on <paramref name="next"/> (a staged copy)
    /// and added to <paramref name="changed"/> for the caller's own write: the event handler records a
    /// batch's events and the tasks they made room for in one transaction. Sent first, recorded after: a
    /// leader that dies in between leaves them Planned and the next one sends them again, a duplicate the
    /// first commit wins over, never a task recorded as queued that no message carries.
    /// </summary>
    public async Task StageAsync(LeaderSession session, JobRun next, TaskPhase phase, bool resendUnfinished, int admit,
        Dictionary<(TaskPhase, int), TaskRecord> changed, CancellationToken cancellationToken)
    {
        var records = next.Tasks(phase);
        var sent = new List<int>();
        var messages = new List<ReadOnlyMemory<byte>>();
        // Planned tasks are let in in index order: without a resend, start where the last admission ended.
        var i = resendUnfinished ? 0 : Math.Min(next.PlannedFrom(phase), records.Length);
        for (; i < records.Length; i++)
        {
            var state = records[i].State;
            if (state == TaskState.Planned)
            {
                if (admit <= 0)
                {
                    if (!resendUnfinished)
                    {
                        break;
                    }
                    continue;
                }
                admit--;
            }
            else if (!(resendUnfinished && state is TaskState.Queued or TaskState.Running))
            {
                continue;
            }
            messages.Add(Message(session, next, phase, i, backup: false));
            sent.Add(i);
        }
        if (sent.Count == 0)
        {
            return;
        }
        var at = time.GetUtcNow();
        await tasks.SendManyAsync(messages, cancellationToken);
        var updated = (TaskRecord[])records.Clone();
        var status = next.Status;
        foreach (var index in sent)
        {
            status = JobRun.WithMove(status, phase, updated[index].State, TaskState.Queued);
            updated[index] = updated[index] with { State = TaskState.Queued, QueuedAt = at };
            changed[(phase, index)] = updated[index];
        }
        next.SetTasks(phase, updated);
        next.Status = status;
        if (!resendUnfinished)
        {
            next.AdmittedTo(phase, sent[^1] + 1);
        }
    }

    /// <summary>Sends a second attempt of a running task (a straggler) and records it on the task and the job.</summary>
    public Task SendBackupAsync(LeaderSession session, JobRun run, TaskPhase phase, int index, CancellationToken cancellationToken) =>
        SendAgainAsync(session, run, phase, index, backup: true, cancellationToken);

    /// <summary>
    /// Sends a task whose attempt's report was lost (its worker is gone, or it ran past its time limit)
    /// once more, as a new attempt, and records the recovery. The first attempt to commit still wins.
    /// </summary>
    public Task SendRecoveryAsync(LeaderSession session, JobRun run, TaskPhase phase, int index, CancellationToken cancellationToken) =>
        SendAgainAsync(session, run, phase, index, backup: false, cancellationToken);

    private async Task SendAgainAsync(LeaderSession session, JobRun run, TaskPhase phase, int index, bool backup, CancellationToken cancellationToken)
    {
        await tasks.SendAsync(Message(session, run, phase, index, backup), cancellationToken);
        var records = (TaskRecord[])run.Tasks(phase).Clone();
        var now = time.GetUtcNow();
        records[index] = backup
            ? records[index] with { BackupAt = now }
            : records[index] with { State = TaskState.Queued, QueuedAt = now, Recoveries = records[index].Recoveries + 1,
                // Its running attempts' reports never came.
                History = AttemptRecord.EndRunning(records[index].History, AttemptOutcome.Lost, now) };
        var status = backup
            ? run.Status with { BackupAttempts = run.Status.BackupAttempts + 1 }
            : JobRun.WithProgress(run.Status with { RecoveredAttempts = run.Status.RecoveredAttempts + 1 }, phase, records);
        await session.CommitAsync([LeaderSession.TaskWrite(run.Spec.Id, records[index]), session.StatusWrite(status)], cancellationToken);
        run.SetTasks(phase, records);
        run.Status = status;
    }

    private static byte[] Message(LeaderSession session, JobRun run, TaskPhase phase, int index, bool backup)
    {
        var spec = run.Spec;
        var record = run.Tasks(phase)[index];
        return JsonSerializer.SerializeToUtf8Bytes(new TaskMessage
        {
            JobId = spec.Id,
            Phase = phase,
            Index = index,
            Epoch = session.Lead.Epoch,
            TraceParent = spec.TraceParent,
            App = spec.App,
            Args = spec.Args,
            MapTasks = run.Maps.Length,
            ReduceTasks = spec.ReduceTasks,
            MaxAttempts = spec.MaxAttempts,
            TaskTimeout = spec.TaskTimeout,
            InputContainer = spec.InputContainer,
            Split = record.Split,
            Splits = record.Splits,
            FileName = record.Split?.Blob,
            Mapper = spec.Mapper,
            Reducer = spec.Reducer,
            Combiner = spec.Combiner,
            SkipBadRecords = spec.SkipBadRecords,
            IntermediatesOf = spec.MapJob ?? spec.Id,
            Backup = backup,
            PartitionCuts = phase == TaskPhase.Map && spec.NeedsSample ? TaskNames.PartitionCuts(spec.Id) : null,
            MapOnly = spec.MapOnly,
        }, QueueJsonContext.Default.TaskMessage);
    }
}
