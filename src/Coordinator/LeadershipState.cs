using Queue.Contracts.Ports;

namespace Queue.Coordinator;

/// <summary>The current leadership of this process, shared between the election and the loops that need it.</summary>
public sealed class LeadershipState
{
    private readonly Lock gate = new();
    private TaskCompletionSource<ILeadership> next = NewSource();

    public ILeadership? Current { get; private set; }

    public int Changes { get; private set; }

    /// <summary>Completes when this process leads (at once if it does now).</summary>
    public Task<ILeadership> WaitAsync(CancellationToken cancellationToken)
    {
        lock (gate)
        {
            return next.Task.WaitAsync(cancellationToken);
        }
    }

    public void Set(ILeadership leadership)
    {
        lock (gate)
        {
            Current = leadership;
            Changes++;
            next.TrySetResult(leadership);
        }
    }

    public void Clear()
    {
        lock (gate)
        {
            Current = null;
            next = NewSource();
        }
    }

    private static TaskCompletionSource<ILeadership> NewSource() => new(TaskCreationOptions.RunContinuationsAsynchronously);
}

/// <summary>A fenced write failed: another coordinator leads now.</summary>
public sealed class LeadershipLostException(string message) : Exception(message);
