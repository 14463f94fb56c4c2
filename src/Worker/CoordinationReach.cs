namespace Queue.Worker;

/// <summary>
/// Whether this worker reaches the coordination store, as its heartbeats find (unknown until the first).
/// A worker the store cannot hear — a partition that leaves it the broker — takes no task: it could not
/// check a job's cancellation or be seen alive, and each task it took would wait on the store and go
/// back to the queue, again and again, while the healthy workers idled and the jobs waited.
/// </summary>
public sealed class CoordinationReach
{
    private readonly Lock gate = new();
    private TaskCompletionSource reached = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public bool IsReachable
    {
        get
        {
            lock (gate)
            {
                return reached.Task.IsCompleted;
            }
        }
    }

    /// <summary>Records a heartbeat's outcome; true when it changed whether the store is reachable.</summary>
    public bool Report(bool reachable)
    {
        lock (gate)
        {
            if (reachable)
            {
                return reached.TrySetResult();
            }
            if (!reached.Task.IsCompleted)
            {
                return false;
            }
            reached = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return true;
        }
    }

    /// <summary>Completes once the store is reachable (at once when it is).</summary>
    public Task WaitAsync(CancellationToken cancellationToken)
    {
        Task task;
        lock (gate)
        {
            task = reached.Task;
        }
        return task.WaitAsync(cancellationToken);
    }
}
