using System.Collections.Concurrent;
using Azure.Messaging.ServiceBus;
using Azure.Messaging.ServiceBus.Administration;
using Microsoft.Extensions.Options;
using Queue.Contracts.Ports;

namespace Queue.Adapters.ServiceBus;

/// <summary>
/// The work queue on Azure Service Bus (Azure.Messaging.ServiceBus): a <see cref="ServiceBusReceiver"/> in
/// PeekLock, the message's lock as the lease (<c>LockedUntil</c>, renewed with
/// <c>RenewMessageLockAsync</c>; a lost lock is a lost lease, never an ack of a stale delivery),
/// <c>DeliveryCount</c> the service's, Complete / Abandon / DeadLetter with reason and description, and
/// the entity's own dead-letter sub-queue, to which the service moves a message after the entity's
/// <c>MaxDeliveryCount</c>. Lock duration and delivery limit are the entity's: <see cref="CheckEntityAsync"/>
/// reads them at start and refuses settings the engine cannot run on.
/// </summary>
public sealed class ServiceBusWorkQueue : IWorkQueue, IAsyncDisposable
{
    private readonly ServiceBusClients clients;
    private readonly WorkQueueOptions options;
    private readonly ServiceBusSender sender;
    private readonly Lane active;
    private readonly Lane dead;

    public ServiceBusWorkQueue(string name, ServiceBusClients clients, IOptions<WorkQueueOptions> options)
    {
        Name = name;
        this.clients = clients;
        this.options = options.Value;
        Entity = clients.Options.QueuePrefix + name;
        sender = clients.Client.CreateSender(Entity);
        active = new Lane(this, SubQueue.None);
        dead = new Lane(this, SubQueue.DeadLetter);
    }

    public string Name { get; }

    /// <summary>The Service Bus queue's name (prefix and name).</summary>
    public string Entity { get; }

    /// <summary>Whether depth comes from the administration API (false once it refused us: no Manage right).</summary>
    public bool DepthReadable { get; private set; } = true;

    public Task SendAsync(ReadOnlyMemory<byte> body, CancellationToken cancellationToken) =>
        ServiceBusClients.CallAsync($"sending to '{Entity}'", () => sender.SendMessageAsync(Message(body), cancellationToken), cancellationToken);

    public Task SendManyAsync(IReadOnlyList<ReadOnlyMemory<byte>> bodies, CancellationToken cancellationToken) =>
        ServiceBusClients.CallAsync($"sending {bodies.Count} messages to '{Entity}'", async () =>
        {
            // As many as fit in one batch (the link's largest message) per send: one transfer, one acknowledgement.
            var next = 0;
            while (next < bodies.Count)
            {
                using var batch = await sender.CreateMessageBatchAsync(cancellationToken);
                while (next < bodies.Count && batch.TryAddMessage(Message(bodies[next])))
                {
                    next++;
                }
                if (batch.Count == 0)
                {
                    throw new ServiceBusRefusedException($"A message for '{Entity}' is {bodies[next].Length} bytes, more than the entity takes (tasks reference blobs, they never carry data).");
                }
                await sender.SendMessagesAsync(batch, cancellationToken);
            }
        }, cancellationToken);

    public Task<IReadOnlyList<ILeasedMessage>> ReceiveAsync(int maxMessages, TimeSpan maxWait, CancellationToken cancellationToken) =>
        active.ReceiveAsync(maxMessages, maxWait, cancellationToken);

    public Task<IReadOnlyList<ILeasedMessage>> ReceiveDeadLetteredAsync(int maxMessages, TimeSpan maxWait, CancellationToken cancellationToken) =>
        dead.ReceiveAsync(maxMessages, maxWait, cancellationToken);

    /// <summary>
    /// Counts from the administration API (active includes locked messages there, so this process's own
    /// leases are taken out of it). Without the Manage right there are none:
    /// <see cref="QueueDepthUnknownException"/>, and callers count from the job store instead.
    /// </summary>
    public async Task<QueueDepth> GetDepthAsync(CancellationToken cancellationToken)
    {
        if (!DepthReadable || !clients.Options.ReadEntitySettings)
        {
            throw new QueueDepthUnknownException($"The depth of Service Bus queue '{Entity}' is not readable with this identity (it needs the Manage right).");
        }
        QueueRuntimeProperties properties;
        try
        {
            properties = await ServiceBusClients.CallAsync($"reading the depth of '{Entity}'",
                async () => (await clients.Administration.GetQueueRuntimePropertiesAsync(Entity, cancellationToken)).Value, cancellationToken);
        }
        catch (ServiceBusRefusedException e) when (e.NotAuthorized)
        {
            DepthReadable = false;
            throw new QueueDepthUnknownException(e.Message);
        }
        var held = active.Held;
        return new QueueDepth(Name, Math.Max(0, properties.ActiveMessageCount - held), held, properties.DeadLetterMessageCount);
    }

    /// <summary>
    /// Abandons every message this process received and has not settled (their settling then throws
    /// <see cref="LeaseLostException"/>) and closes the receiver; the next receive opens a new one. The
    /// events receiver pulls nothing ahead, so nothing else is held; a tasks receiver's prefetched
    /// messages stay locked until the entity's lock duration ends, as Service Bus keeps them.
    /// </summary>
    public Task StopReceivingAsync(bool deadLetters, CancellationToken cancellationToken) =>
        (deadLetters ? dead : active).StopAsync(cancellationToken);

    /// <summary>
    /// Reads the entity's settings and says what is wrong with them for this engine, or null when they
    /// serve it (or cannot be read: then the engine trusts that they were made as deploy/ says).
    /// </summary>
    public async Task<EntityCheck> CheckEntityAsync(CancellationToken cancellationToken)
    {
        var check = await CheckSettingsAsync(cancellationToken);
        if (check.Problem is null)
        {
            // Opening the send link proves the credential (a token accepted, with the Send right) without sending anything.
            await ServiceBusClients.CallAsync($"opening a sender to '{Entity}'", async () =>
            {
                using var probe = await sender.CreateMessageBatchAsync(cancellationToken);
            }, cancellationToken);
        }
        return check;
    }

    private async Task<EntityCheck> CheckSettingsAsync(CancellationToken cancellationToken)
    {
        if (!clients.Options.ReadEntitySettings)
        {
            DepthReadable = false;
            return new EntityCheck(null, "not read (Queue:ServiceBus:ReadEntitySettings is false)");
        }
        QueueProperties properties;
        try
        {
            properties = await ServiceBusClients.CallAsync($"reading the settings of '{Entity}'",
                async () => (await clients.Administration.GetQueueAsync(Entity, cancellationToken)).Value, cancellationToken);
        }
        catch (ServiceBusRefusedException e) when (e.NotAuthorized)
        {
            DepthReadable = false;
            return new EntityCheck(null, "not readable with this identity (no Manage right): trusting deploy/'s settings, depth from the job store");
        }
        catch (ServiceBusRefusedException e) when (e.EntityMissing)
        {
            return new EntityCheck($"Service Bus queue '{Entity}' does not exist; create it as deploy/README.md says (lock duration, max delivery count, dead-lettering).", null);
        }
        var problems = new List<string>();
        if (properties.RequiresSession)
        {
            problems.Add("it requires sessions (the engine sends none)");
        }
        if (properties.MaxDeliveryCount < options.MaxDeliveryCount)
        {
            problems.Add($"its MaxDeliveryCount is {properties.MaxDeliveryCount}, below Queue:WorkQueue:MaxDeliveryCount ({options.MaxDeliveryCount}): tasks would be dead-lettered before a job's maxAttempts run out (raise the entity's, or lower the setting and the maxAttempts jobs may ask for)");
        }
        if (properties.LockDuration > options.LeaseDuration)
        {
            problems.Add($"its LockDuration ({properties.LockDuration.TotalSeconds:0.###} s) is longer than Queue:WorkQueue:LeaseDuration ({options.LeaseDuration.TotalSeconds:0.###} s), which the leader waits before it sends again a task whose worker went silent (shorten the entity's, or raise the setting)");
        }
        var settings = $"lock {properties.LockDuration.TotalSeconds:0.###} s, max delivery count {properties.MaxDeliveryCount}";
        return problems.Count == 0
            ? new EntityCheck(null, settings)
            : new EntityCheck($"Service Bus queue '{Entity}' ({settings}) cannot serve the engine: {string.Join("; ", problems)}.", settings);
    }

    public async ValueTask DisposeAsync()
    {
        await active.DisposeAsync();
        await dead.DisposeAsync();
        await sender.DisposeAsync();
    }

    private static ServiceBusMessage Message(ReadOnlyMemory<byte> body) =>
        new(new BinaryData(body)) { MessageId = Guid.NewGuid().ToString("N") };

    /// <summary>One receiver (the queue or its dead-letter sub-queue) and the messages it holds unsettled.</summary>
    private sealed class Lane(ServiceBusWorkQueue owner, SubQueue subQueue) : IAsyncDisposable
    {
        private readonly SemaphoreSlim gate = new(1, 1);
        private readonly ConcurrentDictionary<LeasedMessage, byte> held = new();
        private ServiceBusReceiver? receiver;

        public int Held => held.Count;

        private string Path => subQueue == SubQueue.DeadLetter ? owner.Entity + "/$deadletterqueue" : owner.Entity;

        public async Task<IReadOnlyList<ILeasedMessage>> ReceiveAsync(int maxMessages, TimeSpan maxWait, CancellationToken cancellationToken)
        {
            var from = await ReceiverAsync(maxMessages, cancellationToken);
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            IReadOnlyList<ServiceBusReceivedMessage> received;
            do
            {
                // The SDK wants a positive wait; ours may be under a millisecond (QueueWait). Its link can
                // also come back empty before the wait is out (a short wait, 0.6 ms, once returned after
                // 0.36): an empty receive waits out the rest, as the port promises.
                var wait = QueueWait.ForTimer(maxWait - System.Diagnostics.Stopwatch.GetElapsedTime(started));
                received = await ServiceBusClients.CallAsync($"receiving from '{Path}'",
                    () => from.ReceiveMessagesAsync(Math.Max(1, maxMessages), wait > TimeSpan.Zero ? wait : TimeSpan.FromMilliseconds(1), cancellationToken), cancellationToken);
            }
            while (received.Count == 0 && System.Diagnostics.Stopwatch.GetElapsedTime(started) < maxWait);
            var leases = new List<ILeasedMessage>(received.Count);
            foreach (var message in received)
            {
                var lease = new LeasedMessage(this, from, message);
                held[lease] = 0;
                leases.Add(lease);
            }
            return leases;
        }

        public async Task StopAsync(CancellationToken cancellationToken)
        {
            ServiceBusReceiver? closing;
            await gate.WaitAsync(cancellationToken);
            try
            {
                closing = receiver;
                receiver = null;
            }
            finally
            {
                gate.Release();
            }
            if (closing is null)
            {
                return;
            }
            foreach (var lease in held.Keys)
            {
                await lease.HandBackAsync(cancellationToken);
            }
            await closing.DisposeAsync();
        }

        public void Settled(LeasedMessage lease) => held.TryRemove(lease, out _);

        private async Task<ServiceBusReceiver> ReceiverAsync(int maxMessages, CancellationToken cancellationToken)
        {
            if (receiver is { } open)
            {
                return open;
            }
            await gate.WaitAsync(cancellationToken);
            try
            {
                // Only the workers' tasks receiver pulls ahead (to its slots): the leader must be able to hand
                // back everything it holds the moment it stops leading.
                var prefetch = subQueue == SubQueue.None && owner.Name == QueueNames.Tasks
                    ? (owner.clients.Options.Prefetch > 0 ? owner.clients.Options.Prefetch : Math.Max(1, maxMessages))
                    : 0;
                return receiver ??= owner.clients.Client.CreateReceiver(owner.Entity, new ServiceBusReceiverOptions
                {
                    ReceiveMode = ServiceBusReceiveMode.PeekLock,
                    PrefetchCount = prefetch,
                    SubQueue = subQueue,
                });
            }
            finally
            {
                gate.Release();
            }
        }

        public async ValueTask DisposeAsync()
        {
            if (receiver is { } open)
            {
                await open.DisposeAsync();
            }
        }
    }

    private sealed class LeasedMessage(Lane lane, ServiceBusReceiver receiver, ServiceBusReceivedMessage message) : ILeasedMessage
    {
        private int handedBack;

        public string MessageId => message.MessageId;
        public ReadOnlyMemory<byte> Body { get; } = message.Body.ToMemory();
        public int DeliveryCount => message.DeliveryCount;
        public DateTimeOffset LockedUntil => message.LockedUntil;
        public string? DeadLetterReason => message.DeadLetterReason;
        public string? DeadLetterDescription => message.DeadLetterErrorDescription;

        public Task CompleteAsync(CancellationToken cancellationToken) =>
            SettleAsync("completing", () => receiver.CompleteMessageAsync(message, cancellationToken), cancellationToken);

        public Task AbandonAsync(CancellationToken cancellationToken) =>
            SettleAsync("abandoning", () => receiver.AbandonMessageAsync(message, cancellationToken: cancellationToken), cancellationToken);

        public Task DeadLetterAsync(string reason, string? description, CancellationToken cancellationToken) =>
            SettleAsync("dead-lettering", () => receiver.DeadLetterMessageAsync(message, reason, description, cancellationToken), cancellationToken);

        public async Task RenewLockAsync(CancellationToken cancellationToken)
        {
            ThrowIfHandedBack();
            // The SDK moves message.LockedUntil to the service's new expiry.
            await ServiceBusClients.CallAsync($"on message {message.MessageId} (renewing)", () => receiver.RenewMessageLockAsync(message, cancellationToken), cancellationToken);
        }

        /// <summary>The receiver stops: the message goes back to the queue at once, and this lease is over.</summary>
        public async Task HandBackAsync(CancellationToken cancellationToken)
        {
            if (Interlocked.Exchange(ref handedBack, 1) != 0)
            {
                return;
            }
            lane.Settled(this);
            try
            {
                await ServiceBusClients.CallAsync($"on message {message.MessageId} (handing back)", () => receiver.AbandonMessageAsync(message, cancellationToken: cancellationToken), cancellationToken);
            }
            catch (Exception e) when (e is LeaseLostException or BrokerUnavailableException)
            {
                // Lost already, or the service is away: its lock ends on its own and it is redelivered.
            }
        }

        private async Task SettleAsync(string what, Func<Task> settle, CancellationToken cancellationToken)
        {
            ThrowIfHandedBack();
            try
            {
                await ServiceBusClients.CallAsync($"on message {message.MessageId} ({what})", settle, cancellationToken);
            }
            catch (LeaseLostException)
            {
                lane.Settled(this);
                throw;
            }
            lane.Settled(this);
        }

        private void ThrowIfHandedBack()
        {
            if (Volatile.Read(ref handedBack) != 0)
            {
                throw new LeaseLostException($"Message {message.MessageId} was handed back when its receiver stopped; the queue redelivers it.");
            }
        }
    }
}

/// <summary>The outcome of reading a queue's settings: a problem that must stop the service, and what was found.</summary>
public sealed record EntityCheck(string? Problem, string? Settings);
