using Queue.Contracts.Ports;

namespace Queue.Contracts.Jobs;

/// <summary>A queue's depth from its broker, or, where the broker will not say (<see cref="QueueDepthUnknownException"/>), from the job store.</summary>
public static class QueueDepths
{
    /// <summary>
    /// For the tasks queue the job store knows what the broker would: tasks queued and not started are
    /// waiting, started ones are leased. The events queue has no such record and reads as empty.
    /// </summary>
    public static async Task<QueueDepth> GetDepthOrCountAsync(this IWorkQueue queue, JobStore jobs, CancellationToken cancellationToken)
    {
        try
        {
            return await queue.GetDepthAsync(cancellationToken);
        }
        catch (QueueDepthUnknownException)
        {
            if (queue.Name != QueueNames.Tasks)
            {
                return new QueueDepth(queue.Name, 0, 0, 0);
            }
            long queued = 0, running = 0, failed = 0;
            foreach (var job in await jobs.ListActiveEntriesAsync(cancellationToken))
            {
                queued += job.Status.Map.Queued + job.Status.Reduce.Queued;
                running += job.Status.Map.Running + job.Status.Reduce.Running;
                failed += job.Status.Map.Failed + job.Status.Reduce.Failed;
            }
            return new QueueDepth(queue.Name, queued, running, failed);
        }
    }
}
