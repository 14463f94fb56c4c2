using Queue.Contracts;
using Queue.Contracts.Jobs;
using Queue.Contracts.Ports;

namespace Queue.Coordinator.Scheduling;

/// <summary>
/// One term of leadership: the jobs in flight and the fenced writes. Every write goes through
/// <see cref="CommitAsync"/>, so a deposed leader (even one that does not know it yet) changes nothing.
/// </summary>
public sealed class LeaderSession(ILeadership lead, JobStore jobs, bool resendUnfinished)
{
    /// <summary>Writes per fenced transaction (<see cref="JobStore.MaxWritesPerTransaction"/>).</summary>
    public const int MaxWritesPerTransaction = JobStore.MaxWritesPerTransaction;

    public ILeadership Lead { get; } = lead;

    /// <summary>Jobs this leader drives, by id.</summary>
    public Dictionary<string, JobRun> Active { get; } = new(StringComparer.Ordinal);

    /// <summary>Jobs this leader ended, so a late scan does not pick them up again.</summary>
    public HashSet<string> Finished { get; } = new(StringComparer.Ordinal);

    /// <summary>
    /// True when the task queue lost its messages with the last process (the embedded queue): resuming a
    /// job then sends its queued and running tasks again, not only the planned ones. Duplicates are
    /// harmless: the first committed attempt wins.
    /// </summary>
    public bool ResendUnfinished { get; } = resendUnfinished;

    public KvWrite StatusWrite(JobStatus status) =>
        new(JobStore.StatusKey(status.Id), JobStore.Serialize(status with { Epoch = Lead.Epoch }, QueueJsonContext.Default.JobStatus));

    public static KvWrite TaskWrite(string jobId, TaskRecord task) =>
        new(JobStore.TaskKey(jobId, task.Phase, task.Index), JobStore.Serialize(task, QueueJsonContext.Default.TaskRecord));

    /// <summary>
    /// Proves this leadership is still current with a fenced transaction that writes nothing, before
    /// acting on something no write of its own guards (settling events it ignored).
    /// </summary>
    public async Task ConfirmAsync(CancellationToken cancellationToken)
    {
        if (!Lead.IsConfirmed || !await jobs.Store.TransactAsync([Lead.Fence], [], cancellationToken))
        {
            throw new LeadershipLostException($"Epoch {Lead.Epoch} could not confirm that it still leads.");
        }
    }

    /// <summary>
    /// Writes <paramref name="tasks"/> and <paramref name="next"/>'s status (last) in fenced transactions,
    /// then makes <paramref name="next"/>'s state <paramref name="run"/>'s own.
    /// </summary>
    public async Task CommitRunAsync(JobRun run, JobRun next, IEnumerable<TaskRecord> tasks, CancellationToken cancellationToken)
    {
        var writes = new List<KvWrite>();
        foreach (var task in tasks)
        {
            writes.Add(TaskWrite(run.Spec.Id, task));
        }
        writes.Add(StatusWrite(next.Status));
        await CommitAsync(writes, cancellationToken);
        run.Adopt(next);
    }

    /// <summary>Writes in fenced transactions of bounded size; the last write (the job status) lands in the last one.</summary>
    public async Task CommitAsync(List<KvWrite> writes, CancellationToken cancellationToken)
    {
        var fence = Lead.Fence;
        for (var start = 0; start < writes.Count; start += MaxWritesPerTransaction)
        {
            var chunk = writes.GetRange(start, Math.Min(MaxWritesPerTransaction, writes.Count - start));
            if (!await jobs.Store.TransactAsync([fence], chunk, cancellationToken))
            {
                throw new LeadershipLostException($"A fenced write failed: epoch {Lead.Epoch} no longer leads.");
            }
        }
    }
}
