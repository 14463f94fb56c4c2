using Queue.Contracts.Ports;

namespace Queue.Adapters.Embedded;

/// <summary>
/// An in-process peek-lock queue with real lease timers: a lease that is neither settled nor renewed
/// before <see cref="ILeasedMessage.LockedUntil"/> expires and the message goes back to the head of
/// the queue with its delivery count kept, so the next receive sees <c>DeliveryCount + 1</c>.
/// </summary>
public sealed class EmbeddedWorkQueue : IWorkQueue, IDisposable
{
    private readonly Lock gate = new();
    private readonly Lane active = new();
    private readonly Lane dead = new();
    private readonly TimeProvider time;
    private readonly TimeSpan leaseDuration;
    private readonly int maxDeliveryCount;
    private bool disposed;

    public EmbeddedWorkQueue(string name, WorkQueueOptions options, TimeProvider? timeProvider = null)
    {
        Name = name;
        time = timeProvider ?? TimeProvider.System;
        leaseDuration = options.LeaseDuration;
        maxDeliveryCount = options.MaxDeliveryCount;
    }

    public string Name { get; }

    public bool IsDurable => false;

    public Task SendAsync(ReadOnlyMemory<byte> body, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        lock (gate)
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            active.Ready.AddLast(new Entry(Guid.NewGuid().ToString("N"), body.ToArray()));
            active.Signal();
        }
        return Task.CompletedTask;
    }

    public Task<IReadOnlyList<ILeasedMessage>> ReceiveAsync(int maxMessages, TimeSpan maxWait, CancellationToken cancellationToken) =>
        ReceiveAsync(active, maxMessages, maxWait, cancellationToken);

    public Task<IReadOnlyList<ILeasedMessage>> ReceiveDeadLetteredAsync(int maxMessages, TimeSpan maxWait, CancellationToken cancellationToken) =>
        ReceiveAsync(dead, maxMessages, maxWait, cancellationToken);

    public Task<QueueDepth> GetDepthAsync(CancellationToken cancellationToken)
    {
        lock (gate)
        {
            return Task.FromResult(new QueueDepth(Name, active.Ready.Count, active.Leased.Count, dead.Ready.Count + dead.Leased.Count));
        }
    }

    public void Dispose()
    {
        lock (gate)
        {
            disposed = true;
            foreach (var lease in active.Leased.Values)
            {
                lease.Timer.Dispose();
            }
            foreach (var lease in dead.Leased.Values)
            {
                lease.Timer.Dispose();
            }
        }
    }

    private async Task<IReadOnlyList<ILeasedMessage>> ReceiveAsync(Lane lane, int maxMessages, TimeSpan maxWait, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxMessages, 1);
        var deadline = time.GetUtcNow() + maxWait;
        while (true)
        {
            Task changed;
            lock (gate)
            {
                ObjectDisposedException.ThrowIf(disposed, this);
                if (lane.Ready.Count > 0)
                {
                    var leases = new List<ILeasedMessage>(Math.Min(maxMessages, lane.Ready.Count));
                    while (leases.Count < maxMessages && lane.Ready.First is { } node)
                    {
                        lane.Ready.RemoveFirst();
                        leases.Add(Lease(lane, node.Value));
                    }
                    return leases;
                }
                changed = lane.Changed.Task;
            }
            var remaining = deadline - time.GetUtcNow();
            if (remaining <= TimeSpan.Zero)
            {
                return [];
            }
            // A timeout is the normal end of an empty receive, so it is not thrown.
            await changed.WaitAsync(QueueWait.ForTimer(remaining), time, cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            cancellationToken.ThrowIfCancellationRequested();
        }
    }

    private LeasedMessage Lease(Lane lane, Entry entry)
    {
        // Called under the gate.
        if (lane == active)
        {
            entry.DeliveryCount++;
        }
        var lease = new LeasedMessage(this, lane, entry, time.GetUtcNow() + leaseDuration);
        lease.Timer = time.CreateTimer(static state => ((LeasedMessage)state!).Expire(), lease, leaseDuration, Timeout.InfiniteTimeSpan);
        lane.Leased[entry.Id] = lease;
        return lease;
    }

    /// <summary>Puts a message back after abandon or expiry, or dead-letters it past the delivery limit. Under the gate.</summary>
    private void Release(Lane lane, LeasedMessage lease, string why)
    {
        lane.Leased.Remove(lease.Entry.Id);
        lease.Timer.Dispose();
        if (lane == active && lease.Entry.DeliveryCount >= maxDeliveryCount)
        {
            lease.Entry.DeadLetterReason = "MaxDeliveryCountExceeded";
            lease.Entry.DeadLetterDescription = $"{why} after {lease.Entry.DeliveryCount} deliveries.";
            dead.Ready.AddLast(lease.Entry);
            dead.Signal();
            return;
        }
        lane.Ready.AddFirst(lease.Entry);
        lane.Signal();
    }

    private sealed class Entry(string id, byte[] body)
    {
        public string Id { get; } = id;
        public byte[] Body { get; } = body;
        public int DeliveryCount { get; set; }
        public string? DeadLetterReason { get; set; }
        public string? DeadLetterDescription { get; set; }
    }

    private sealed class Lane
    {
        public LinkedList<Entry> Ready { get; } = new();
        public Dictionary<string, LeasedMessage> Leased { get; } = new(StringComparer.Ordinal);
        public TaskCompletionSource Changed { get; private set; } = NewSignal();

        public void Signal()
        {
            var previous = Changed;
            Changed = NewSignal();
            previous.TrySetResult();
        }

        private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private sealed class LeasedMessage(EmbeddedWorkQueue queue, Lane lane, Entry entry, DateTimeOffset lockedUntil) : ILeasedMessage
    {
        public Entry Entry { get; } = entry;
        public ITimer Timer { get; set; } = null!;
        public string MessageId => Entry.Id;
        public ReadOnlyMemory<byte> Body => Entry.Body;
        public int DeliveryCount { get; } = entry.DeliveryCount;
        public DateTimeOffset LockedUntil { get; private set; } = lockedUntil;
        public string? DeadLetterReason => Entry.DeadLetterReason;
        public string? DeadLetterDescription => Entry.DeadLetterDescription;

        public Task CompleteAsync(CancellationToken cancellationToken)
        {
            lock (queue.gate)
            {
                EnsureHeld();
                lane.Leased.Remove(Entry.Id);
                Timer.Dispose();
            }
            return Task.CompletedTask;
        }

        public Task AbandonAsync(CancellationToken cancellationToken)
        {
            lock (queue.gate)
            {
                EnsureHeld();
                queue.Release(lane, this, "Abandoned");
            }
            return Task.CompletedTask;
        }

        public Task DeadLetterAsync(string reason, string? description, CancellationToken cancellationToken)
        {
            lock (queue.gate)
            {
                EnsureHeld();
                lane.Leased.Remove(Entry.Id);
                Timer.Dispose();
                Entry.DeadLetterReason = reason;
                Entry.DeadLetterDescription = description;
                queue.dead.Ready.AddLast(Entry);
                queue.dead.Signal();
            }
            return Task.CompletedTask;
        }

        public Task RenewLockAsync(CancellationToken cancellationToken)
        {
            lock (queue.gate)
            {
                EnsureHeld();
                LockedUntil = queue.time.GetUtcNow() + queue.leaseDuration;
                Timer.Change(queue.leaseDuration, Timeout.InfiniteTimeSpan);
            }
            return Task.CompletedTask;
        }

        public void Expire()
        {
            lock (queue.gate)
            {
                if (!IsHeld())
                {
                    return;
                }
                // Timers may fire a little early, and a renew may have raced this one: re-arm until due.
                var remaining = LockedUntil - queue.time.GetUtcNow();
                if (remaining > TimeSpan.Zero)
                {
                    Timer.Change(remaining, Timeout.InfiniteTimeSpan);
                    return;
                }
                queue.Release(lane, this, "Lease expired");
            }
        }

        private bool IsHeld() => !queue.disposed && lane.Leased.TryGetValue(Entry.Id, out var current) && ReferenceEquals(current, this);

        private void EnsureHeld()
        {
            if (!IsHeld())
            {
                throw new LeaseLostException($"The lease on message {Entry.Id} in '{queue.Name}' has ended.");
            }
        }
    }
}
