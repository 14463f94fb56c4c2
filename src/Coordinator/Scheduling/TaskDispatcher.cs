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
    /// Sends every Planned task of a phase (and, with <paramref name="resendUnfinished"/>, every Queued
    /// and Running one too: their messages were lost), then records them as Queued.
    /// </summary>
    public async Task SendAsync(LeaderSession session, JobRun run, TaskPhase phase, bool resendUnfinished, CancellationToken cancellationToken)
    {
        var spec = run.Spec;
        var records = run.Tasks(phase);
        var sent = new List<(int Index, DateTimeOffset At)>();
        for (var i = 0; i < records.Length; i++)
        {
            var state = records[i].State;
            if (state != TaskState.Planned && !(resendUnfinished && state is TaskState.Queued or TaskState.Running))
            {
                continue;
            }
            var message = new TaskMessage
            {
                JobId = spec.Id,
                Phase = phase,
                Index = i,
                Epoch = session.Lead.Epoch,
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
            var at = time.GetUtcNow();
            await tasks.SendAsync(JsonSerializer.SerializeToUtf8Bytes(message, QueueJsonContext.Default.TaskMessage), cancellationToken);
            sent.Add((i, at));
        }
        if (sent.Count == 0)
        {
            return;
        }
        var updated = (TaskRecord[])records.Clone();
        var writes = new List<KvWrite>(sent.Count + 1);
        foreach (var (i, at) in sent)
        {
            updated[i] = updated[i] with { State = TaskState.Queued, QueuedAt = at };
            writes.Add(LeaderSession.TaskWrite(spec.Id, updated[i]));
        }
        var status = JobRun.WithProgress(run.Status, phase, updated);
        writes.Add(session.StatusWrite(status));
        await session.CommitAsync(writes, cancellationToken);
        run.SetTasks(phase, updated);
        run.Status = status;
    }
}
