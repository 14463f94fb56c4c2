using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Queue.Contracts.Jobs;
using Queue.Contracts.Ports;

namespace Queue.Coordinator.Scheduling;

/// <summary>
/// The leader's safety net for lost reports, as Hadoop's task timeout on the application master: a
/// task is sent again (a new attempt; the first commit still wins) when
/// <list type="bullet">
/// <item>it is <c>Running</c> and no heartbeat of its worker has listed it for longer than the lease
/// plus <see cref="CoordinatorOptions.LostTaskGrace"/> (the worker died, or finished and its report
/// never arrived);</item>
/// <item>it is <c>Running</c> past its task time limit plus the grace (the worker's own limit should
/// have ended it);</item>
/// <item>it is <c>Queued</c> that long while the task queue is empty and no worker is busy: its
/// message is gone.</item>
/// </list>
/// Whatever happens to a message or a report, no job waits forever. A task lost more often than its
/// job's <c>maxAttempts</c> fails the job instead of being sent for ever.
/// </summary>
public sealed class LostTaskRecovery(
    JobStore jobs,
    TaskDispatcher dispatcher,
    JobFinisher finisher,
    [FromKeyedServices(QueueNames.Tasks)] IWorkQueue tasks,
    IOptions<CoordinatorOptions> options,
    IOptions<WorkQueueOptions> queueOptions,
    TimeProvider time,
    ILogger<LostTaskRecovery> logger)
{
    private readonly CoordinatorOptions options = options.Value;
    private readonly TimeSpan patience = queueOptions.Value.LeaseDuration + options.Value.LostTaskGrace;

    // When this leader first saw a task's current attempt (or queued message) unaccounted for; leader memory only,
    // so a new leader starts its own count: recovery then waits one patience longer, never shorter.
    private Dictionary<(string Job, TaskPhase Phase, int Index, string? Attempt), DateTimeOffset> unseenSince = [];

    public async Task RecoverAsync(LeaderSession session, CancellationToken cancellationToken)
    {
        if (!HasUnfinishedTasks(session))
        {
            unseenSince.Clear();
            return;
        }
        var now = time.GetUtcNow();
        var live = new HashSet<(string Worker, string Task)>();
        var busy = 0;
        foreach (var worker in await jobs.ListWorkersAsync(cancellationToken))
        {
            busy += worker.Busy;
            foreach (var running in worker.Running)
            {
                live.Add((worker.Worker, running));
            }
        }
        bool? queueIdle = null;
        var seen = new Dictionary<(string, TaskPhase, int, string?), DateTimeOffset>();
        var lost = new List<(JobRun Run, TaskPhase Phase, int Index, string Why)>();
        foreach (var run in session.Active.Values)
        {
            if (run.CurrentPhase is not { } phase)
            {
                continue;
            }
            var records = run.Tasks(phase);
            for (var i = 0; i < records.Length; i++)
            {
                var task = records[i];
                var name = $"{run.Spec.Id}/{TaskNames.TaskId(phase, i)}";
                if (task.State == TaskState.Running)
                {
                    if (task.StartedAt is { } started && now - started > run.Spec.TaskTimeout + options.LostTaskGrace)
                    {
                        lost.Add((run, phase, i, $"running past its time limit of {run.Spec.TaskTimeout.TotalSeconds:0.###} s"));
                    }
                    else if (task.Worker is null || !live.Contains((task.Worker, name)))
                    {
                        var key = (run.Spec.Id, phase, i, task.LastAttempt);
                        var since = seen[key] = unseenSince.GetValueOrDefault(key, now);
                        if (now - since > patience)
                        {
                            lost.Add((run, phase, i, $"no heartbeat of worker {task.Worker} has listed attempt {task.LastAttempt} for {(now - since).TotalSeconds:0} s"));
                        }
                    }
                }
                else if (task.State == TaskState.Queued && busy == 0 && task.QueuedAt is { } queued && now - queued > patience)
                {
                    queueIdle ??= await QueueIsEmptyAsync(cancellationToken);
                    if (queueIdle == true)
                    {
                        var key = (run.Spec.Id, phase, i, (string?)null);
                        var since = seen[key] = unseenSince.GetValueOrDefault(key, now);
                        if (now - since > patience)
                        {
                            lost.Add((run, phase, i, $"queued {(now - queued).TotalSeconds:0} s ago while the queue is empty and no worker is busy"));
                        }
                    }
                }
            }
        }
        unseenSince = seen;
        foreach (var (run, phase, index, why) in lost)
        {
            if (!session.Active.ContainsKey(run.Spec.Id))
            {
                continue; // ended by an earlier recovery in this pass
            }
            var taskId = TaskNames.TaskId(phase, index);
            var task = run.Tasks(phase)[index];
            if (task.Recoveries >= run.Spec.MaxAttempts)
            {
                await finisher.EndAsync(session, run, JobState.Failed,
                    $"Task {taskId} was lost {task.Recoveries + 1} times without a report (last: {why}).", cancellationToken);
                continue;
            }
            await dispatcher.SendRecoveryAsync(session, run, phase, index, cancellationToken);
            unseenSince.Remove((run.Spec.Id, phase, index, task.State == TaskState.Running ? task.LastAttempt : null));
            Log.TaskRecovered(logger, run.Spec.Id, taskId, why);
        }
    }

    private static bool HasUnfinishedTasks(LeaderSession session)
    {
        foreach (var run in session.Active.Values)
        {
            if (run.CurrentPhase is { } phase)
            {
                foreach (var task in run.Tasks(phase))
                {
                    if (task.State is TaskState.Running or TaskState.Queued)
                    {
                        return true;
                    }
                }
            }
        }
        return false;
    }

    private async Task<bool> QueueIsEmptyAsync(CancellationToken cancellationToken)
    {
        try
        {
            var depth = await tasks.GetDepthAsync(cancellationToken);
            return depth.Active == 0 && depth.Leased == 0;
        }
        catch (Exception e) when (e is BrokerUnavailableException or QueueDepthUnknownException)
        {
            // Unknown (for a while, or for good where the broker will not tell this identity): a queued
            // task's message is never judged lost; its lease and the worker's heartbeats still are.
            return false;
        }
    }
}
