namespace Queue.Contracts.Ports;

/// <summary>
/// A peek-lock work queue, modelled on the Service Bus receiver. A received message is leased to
/// its receiver until <see cref="ILeasedMessage.LockedUntil"/>; a lease that is neither settled nor
/// renewed in time expires and the message is delivered again with <c>DeliveryCount + 1</c>. Once a
/// message has been delivered <see cref="WorkQueueOptions.MaxDeliveryCount"/> times and its lease
/// ends without completion, it is moved to the dead-letter sub-queue with a reason.
/// </summary>
/// <remarks>
/// Adapter semantics differ only in how quickly a lease can end:
/// the embedded queue and Azure Storage Queues expire leases on a timer (the visibility timeout);
/// RabbitMQ ends a lease when the consumer's channel or connection closes (a crashed worker) and
/// otherwise relies on the worker's own task time limit, so <see cref="ILeasedMessage.RenewLockAsync"/>
/// only moves the local deadline there.
/// </remarks>
public interface IWorkQueue
{
    /// <summary>The queue's name, e.g. <c>tasks</c> or <c>events</c>.</summary>
    string Name { get; }

    /// <summary>
    /// Whether messages outlive this process (every broker). The embedded queue's do not: after a
    /// restart the coordinator sends the unfinished tasks of its (durable) job records again.
    /// </summary>
    bool IsDurable => true;

    /// <summary>Sends one message; returns once the broker has accepted it durably.</summary>
    Task SendAsync(ReadOnlyMemory<byte> body, CancellationToken cancellationToken);

    /// <summary>
    /// Sends many messages; returns once the broker has accepted every one durably. Brokers that
    /// acknowledge each message on its own (RabbitMQ's publisher confirms, one HTTP call per Azure
    /// message) keep many in flight at once: a phase of thousands of tasks is queued in a fraction of
    /// the time one at a time would take. On a failure some may have been sent; sending them again is
    /// harmless (the first committed attempt of a task wins).
    /// </summary>
    async Task SendManyAsync(IReadOnlyList<ReadOnlyMemory<byte>> bodies, CancellationToken cancellationToken)
    {
        foreach (var body in bodies)
        {
            await SendAsync(body, cancellationToken);
        }
    }

    /// <summary>
    /// Receives up to <paramref name="maxMessages"/> messages, waiting at most
    /// <paramref name="maxWait"/> for the first. Returns an empty list when none arrived in all of
    /// <paramref name="maxWait"/>, a wait under a millisecond included (<see cref="QueueWait"/>).
    /// </summary>
    Task<IReadOnlyList<ILeasedMessage>> ReceiveAsync(int maxMessages, TimeSpan maxWait, CancellationToken cancellationToken);

    /// <summary>Receives from the dead-letter sub-queue; <see cref="ILeasedMessage.DeadLetterReason"/> is set.</summary>
    Task<IReadOnlyList<ILeasedMessage>> ReceiveDeadLetteredAsync(int maxMessages, TimeSpan maxWait, CancellationToken cancellationToken);

    /// <summary>Messages waiting, leased and dead-lettered (approximate for remote brokers).</summary>
    Task<QueueDepth> GetDepthAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Stops delivery to this process and hands every message it holds back to the broker at once:
    /// those pushed ahead (prefetched) and not yet received, and those received and not yet settled
    /// (their settling then throws <see cref="LeaseLostException"/>). The next receive starts again.
    /// A coordinator calls it when it stops leading, so the events it can no longer apply reach the
    /// new leader instead of waiting in a buffer nobody reads. Pull-based queues hold nothing ahead:
    /// there it does nothing, and unsettled leases end on their timers. <paramref name="deadLetters"/>
    /// picks the dead-letter sub-queue instead of the queue itself (the two have separate receivers).
    /// </summary>
    Task StopReceivingAsync(bool deadLetters, CancellationToken cancellationToken) => Task.CompletedTask;
}

/// <summary>A message held under a lease. Settle it exactly once.</summary>
public interface ILeasedMessage
{
    string MessageId { get; }

    ReadOnlyMemory<byte> Body { get; }

    /// <summary>1 on the first delivery, incremented on every redelivery.</summary>
    int DeliveryCount { get; }

    DateTimeOffset LockedUntil { get; }

    /// <summary>Set on messages received from the dead-letter sub-queue.</summary>
    string? DeadLetterReason { get; }

    /// <summary>The dead-letter description (e.g. the last error), when there is one.</summary>
    string? DeadLetterDescription { get; }

    /// <summary>Removes the message. Throws <see cref="LeaseLostException"/> when the lease has ended.</summary>
    Task CompleteAsync(CancellationToken cancellationToken);

    /// <summary>Releases the lease so the message is delivered again at once.</summary>
    Task AbandonAsync(CancellationToken cancellationToken);

    /// <summary>Moves the message to the dead-letter sub-queue with a reason.</summary>
    Task DeadLetterAsync(string reason, string? description, CancellationToken cancellationToken);

    /// <summary>Extends the lease by the queue's lease duration and updates <see cref="LockedUntil"/>.</summary>
    Task RenewLockAsync(CancellationToken cancellationToken);
}

/// <summary>Counts of messages in a queue.</summary>
public sealed record QueueDepth(string Queue, long Active, long Leased, long DeadLettered);

/// <summary>The lease on a message ended (expired or taken by another receiver); the broker will redeliver.</summary>
public sealed class LeaseLostException(string message) : Exception(message);

/// <summary>Settings every work-queue adapter honours.</summary>
public sealed class WorkQueueOptions
{
    public const string Section = "Queue:WorkQueue";

    /// <summary>How long a receive holds a message before it is redelivered. Default 30 s.</summary>
    [System.ComponentModel.DataAnnotations.Range(typeof(TimeSpan), "00:00:00.100", "01:00:00")]
    public TimeSpan LeaseDuration { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Deliveries after which an unsettled message is dead-lettered. A backstop only: workers
    /// dead-letter a task after its job's <c>maxAttempts</c> (at most 100). Default 100.
    /// </summary>
    [System.ComponentModel.DataAnnotations.Range(1, 1000)]
    public int MaxDeliveryCount { get; set; } = 100;
}

/// <summary>
/// Timers count whole milliseconds and fire at once for less: a receive that waits with one must
/// round its wait up, or a wait of 0.6 ms ends at once and a caller receiving until its deadline (the
/// leader, before its next scan) spins through the last millisecond.
/// </summary>
public static class QueueWait
{
    public static TimeSpan ForTimer(TimeSpan wait) =>
        wait <= TimeSpan.Zero ? TimeSpan.Zero : TimeSpan.FromMilliseconds(Math.Ceiling(wait.TotalMilliseconds));
}

/// <summary>Names of the engine's queues.</summary>
public static class QueueNames
{
    public const string Tasks = "tasks";
    public const string Events = "events";
}

/// <summary>
/// A broker or store cannot be reached right now (connection refused or dropped, timeouts, the
/// service's own 5xx after the client's retries). Every adapter throws this, and only this, for
/// connection-level faults, so callers can ride them out and treat anything else as a bug.
/// </summary>
public sealed class BrokerUnavailableException(string service, string message, Exception? inner = null)
    : Exception($"{service} is unavailable: {message}", inner)
{
    public string Service { get; } = service;
}

/// <summary>
/// The broker will not say how deep a queue is to this identity (Service Bus without the Manage right).
/// Callers count queued tasks from the job store instead.
/// </summary>
public sealed class QueueDepthUnknownException(string message) : Exception(message);

/// <summary>
/// The broker refused this process: a credential it does not accept, a right or entity that is missing.
/// A configuration error, not an outage: retrying cannot help, so services stop with exit code 78.
/// </summary>
public class BrokerRefusedException(string message, Exception? inner = null) : Exception(message, inner);
