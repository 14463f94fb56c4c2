using Amqp;
using Amqp.Framing;
using Amqp.Types;

namespace Queue.ServiceBusEndpoint;

/// <summary>A queue's settings as Service Bus keeps them on the entity.</summary>
public sealed record QueueSettings(TimeSpan LockDuration, int MaxDeliveryCount);

/// <summary>One stored message: what the sender sent, and what the queue keeps about it.</summary>
internal sealed class StoredMessage(long sequence, DateTime enqueuedAt, Properties? properties, ApplicationProperties? applicationProperties, byte[] body)
{
    public long Sequence { get; } = sequence;
    public DateTime EnqueuedAt { get; } = enqueuedAt;
    public Properties? Properties { get; } = properties;
    public ApplicationProperties? ApplicationProperties { get; } = applicationProperties;
    public byte[] Body { get; } = body;

    /// <summary>Deliveries so far (lock acquisitions); the header's <c>delivery-count</c> is the ones before the current.</summary>
    public int Deliveries { get; set; }

    public string? DeadLetterReason { get; set; }
    public string? DeadLetterDescription { get; set; }
}

/// <summary>A message under a peek-lock.</summary>
internal sealed class MessageLock(StoredMessage message, Guid token, DateTime lockedUntil, Consumer consumer)
{
    public StoredMessage Message { get; } = message;
    public Guid Token { get; } = token;
    public DateTime LockedUntil { get; set; } = lockedUntil;
    public Consumer Consumer { get; } = consumer;
}

/// <summary>A receive link: its credit, and the entity it reads.</summary>
internal sealed class Consumer(Entity entity, Amqp.Listener.ListenerLink link)
{
    public Entity Entity { get; } = entity;
    public Amqp.Listener.ListenerLink Link { get; } = link;
    public int Credit { get; set; }
    public bool Closed { get; set; }
}

/// <summary>A queue or its dead-letter sub-queue: messages in sequence order, locks, receivers.</summary>
internal sealed class Entity(string name, QueueSettings settings, Entity? deadLetter)
{
    public string Name { get; } = name;
    public QueueSettings Settings { get; } = settings;

    /// <summary>The <c>$deadletterqueue</c> sub-queue; null for the sub-queue itself (it never dead-letters).</summary>
    public Entity? DeadLetter { get; } = deadLetter;

    public SortedDictionary<long, StoredMessage> Available { get; } = [];
    public Dictionary<Guid, MessageLock> Locks { get; } = [];
    public List<Consumer> Consumers { get; } = [];
    public int NextConsumer { get; set; }
}

/// <summary>An outcome of a settlement or renewal, in the terms the AMQP surface answers with.</summary>
internal enum Settlement
{
    Done,
    LockLost,
    NotImplemented,
}

/// <summary>
/// The broker's state: queues, their messages and locks, one lock guarding all of it (a test endpoint
/// serves a few thousand messages a second at most). Deliveries are collected under the lock and sent
/// after it, so a slow peer never blocks the others' settlements.
/// </summary>
internal sealed class Broker : IDisposable
{
    private const string DeadLetterSuffix = "/$deadletterqueue";
    private readonly Lock gate = new();
    private readonly Dictionary<string, Entity> entities = new(StringComparer.OrdinalIgnoreCase);
    private readonly Timer expiry;
    private long sequence;

    public Broker()
    {
        expiry = new Timer(_ => ExpireLocks(), null, TimeSpan.FromMilliseconds(50), TimeSpan.FromMilliseconds(50));
    }

    /// <summary>Called outside the lock with each delivery to send: the consumer, the message, its lock token.</summary>
    public Action<Consumer, Message, Guid>? Deliver { get; set; }

    public void CreateQueue(string name, QueueSettings settings)
    {
        lock (gate)
        {
            var dead = new Entity(name + DeadLetterSuffix, settings with { MaxDeliveryCount = int.MaxValue }, null);
            entities[name] = new Entity(name, settings, dead);
            entities[dead.Name] = dead;
        }
    }

    /// <summary>Deletes a queue and its sub-queue with their messages; false if there is none.</summary>
    public bool DeleteQueue(string name)
    {
        lock (gate)
        {
            if (!entities.TryGetValue(name, out var entity) || entity.DeadLetter is null)
            {
                return false;
            }
            entities.Remove(name);
            entities.Remove(entity.DeadLetter.Name);
            return true;
        }
    }

    /// <summary>The queue (or sub-queue) at an AMQP address such as <c>/q1</c> or <c>/q1/$DeadLetterQueue</c>; null if none.</summary>
    public Entity? Find(string? address)
    {
        if (address is null)
        {
            return null;
        }
        lock (gate)
        {
            return entities.GetValueOrDefault(address.Trim('/'));
        }
    }

    /// <summary>A queue's settings and counts, as the administration API reports them; null if there is no such queue.</summary>
    public (QueueSettings Settings, long Active, long DeadLettered)? Describe(string name)
    {
        lock (gate)
        {
            if (!entities.TryGetValue(name, out var entity) || entity.DeadLetter is null)
            {
                return null;
            }
            var dead = entity.DeadLetter;
            return (entity.Settings, entity.Available.Count + entity.Locks.Count, dead.Available.Count + dead.Locks.Count);
        }
    }

    public void Enqueue(Entity entity, Properties? properties, ApplicationProperties? applicationProperties, byte[] body)
    {
        List<(Consumer, Message, Guid)> deliveries;
        lock (gate)
        {
            var message = new StoredMessage(++sequence, DateTime.UtcNow, properties, applicationProperties, body);
            entity.Available.Add(message.Sequence, message);
            deliveries = Pump(entity);
        }
        Send(deliveries);
    }

    public void Attach(Consumer consumer)
    {
        lock (gate)
        {
            consumer.Entity.Consumers.Add(consumer);
        }
    }

    /// <summary>
    /// A receive link closed. Its unsettled deliveries keep their locks until they expire, as Service Bus
    /// keeps them (they can still be settled by lock token on <c>$management</c>).
    /// </summary>
    public void Detach(Consumer consumer)
    {
        lock (gate)
        {
            consumer.Closed = true;
            consumer.Entity.Consumers.Remove(consumer);
        }
    }

    public void AddCredit(Consumer consumer, int credit, bool drain)
    {
        List<(Consumer, Message, Guid)> deliveries;
        lock (gate)
        {
            consumer.Credit += credit;
            deliveries = Pump(consumer.Entity);
        }
        Send(deliveries);
        if (drain)
        {
            lock (gate)
            {
                consumer.Credit = 0;
            }
            consumer.Link.CompleteDrain();
        }
    }

    public Settlement Complete(Guid token) => Settle(token, static (_, _) => { });

    public Settlement Abandon(Guid token) => Settle(token, static (broker, held) => broker.Return(held.Message, held.Consumer.Entity));

    public Settlement DeadLetter(Guid token, string? reason, string? description) => Settle(token, (_, held) =>
    {
        var entity = held.Consumer.Entity;
        if (entity.DeadLetter is null)
        {
            // Dead-lettering a dead letter leaves it where it is, as Service Bus does.
            Return(held.Message, entity);
            return;
        }
        MoveToDeadLetter(held.Message, entity.DeadLetter, reason ?? "", description);
    });

    /// <summary>A delivery the receiver gave back unseen (its prefetch buffer, on close): available again, not counted.</summary>
    public Settlement Release(Guid token) => Settle(token, static (broker, held) =>
    {
        held.Message.Deliveries--;
        broker.ReturnWithoutLimit(held.Message, held.Consumer.Entity);
    });

    /// <summary>New expiries for the locks, or null when any of them is gone (expired, settled, unknown).</summary>
    public DateTime[]? Renew(IReadOnlyList<Guid> tokens)
    {
        lock (gate)
        {
            var now = DateTime.UtcNow;
            var held = new MessageLock[tokens.Count];
            for (var i = 0; i < tokens.Count; i++)
            {
                if (FindLock(tokens[i]) is not { } found || found.LockedUntil <= now)
                {
                    return null;
                }
                held[i] = found;
            }
            var expirations = new DateTime[tokens.Count];
            for (var i = 0; i < held.Length; i++)
            {
                held[i].LockedUntil = now + held[i].Consumer.Entity.Settings.LockDuration;
                expirations[i] = held[i].LockedUntil;
            }
            return expirations;
        }
    }

    public void Dispose() => expiry.Dispose();

    private Settlement Settle(Guid token, Action<Broker, MessageLock> apply)
    {
        List<(Consumer, Message, Guid)> deliveries;
        lock (gate)
        {
            if (FindLock(token) is not { } held || held.LockedUntil <= DateTime.UtcNow)
            {
                return Settlement.LockLost;
            }
            held.Consumer.Entity.Locks.Remove(token);
            apply(this, held);
            deliveries = Pump(held.Consumer.Entity);
            if (held.Consumer.Entity.DeadLetter is { } dead)
            {
                deliveries.AddRange(Pump(dead));
            }
        }
        Send(deliveries);
        return Settlement.Done;
    }

    private MessageLock? FindLock(Guid token)
    {
        foreach (var entity in entities.Values)
        {
            if (entity.Locks.TryGetValue(token, out var held))
            {
                return held;
            }
        }
        return null;
    }

    /// <summary>Back to the queue after an abandon or an expired lock; past the delivery limit, to the dead-letter sub-queue.</summary>
    private void Return(StoredMessage message, Entity entity)
    {
        if (entity.DeadLetter is { } dead && message.Deliveries >= entity.Settings.MaxDeliveryCount)
        {
            MoveToDeadLetter(message, dead, "MaxDeliveryCountExceeded", $"Message could not be consumed after {entity.Settings.MaxDeliveryCount} delivery attempts.");
            return;
        }
        ReturnWithoutLimit(message, entity);
    }

    private void ReturnWithoutLimit(StoredMessage message, Entity entity) => entity.Available.Add(message.Sequence, message);

    private static void MoveToDeadLetter(StoredMessage message, Entity dead, string reason, string? description)
    {
        message.DeadLetterReason = reason;
        message.DeadLetterDescription = description;
        message.Deliveries = 0;
        dead.Available.Add(message.Sequence, message);
    }

    private void ExpireLocks()
    {
        var deliveries = new List<(Consumer, Message, Guid)>();
        lock (gate)
        {
            var now = DateTime.UtcNow;
            foreach (var entity in entities.Values)
            {
                List<MessageLock>? expired = null;
                foreach (var held in entity.Locks.Values)
                {
                    if (held.LockedUntil <= now)
                    {
                        (expired ??= []).Add(held);
                    }
                }
                if (expired is null)
                {
                    continue;
                }
                foreach (var held in expired)
                {
                    entity.Locks.Remove(held.Token);
                    Return(held.Message, entity);
                }
            }
            foreach (var entity in entities.Values)
            {
                deliveries.AddRange(Pump(entity));
            }
        }
        Send(deliveries);
    }

    /// <summary>Locks the next messages for receivers with credit, round robin; the caller sends them after the lock.</summary>
    private List<(Consumer, Message, Guid)> Pump(Entity entity)
    {
        var deliveries = new List<(Consumer, Message, Guid)>();
        while (entity.Available.Count > 0 && entity.Consumers.Count > 0)
        {
            Consumer? next = null;
            for (var i = 0; i < entity.Consumers.Count && next is null; i++)
            {
                var candidate = entity.Consumers[(entity.NextConsumer + i) % entity.Consumers.Count];
                if (candidate.Credit > 0 && !candidate.Closed)
                {
                    next = candidate;
                    entity.NextConsumer = (entity.NextConsumer + i + 1) % entity.Consumers.Count;
                }
            }
            if (next is null)
            {
                break;
            }
            using var first = entity.Available.GetEnumerator();
            first.MoveNext();
            var message = first.Current.Value;
            entity.Available.Remove(message.Sequence);
            next.Credit--;
            var token = Guid.NewGuid();
            var held = new MessageLock(message, token, DateTime.UtcNow + entity.Settings.LockDuration, next);
            entity.Locks[token] = held;
            deliveries.Add((next, ToAmqp(message, held), token));
            message.Deliveries++;
        }
        return deliveries;
    }

    private static Message ToAmqp(StoredMessage message, MessageLock held)
    {
        var properties = new ApplicationProperties();
        if (message.ApplicationProperties is { } sent)
        {
            foreach (var (key, value) in sent.Map)
            {
                properties.Map[key] = value;
            }
        }
        if (message.DeadLetterReason is { } reason)
        {
            properties["DeadLetterReason"] = reason;
            if (message.DeadLetterDescription is { } description)
            {
                properties["DeadLetterErrorDescription"] = description;
            }
        }
        var amqp = new Message
        {
            Header = new Header { Durable = true, DeliveryCount = (uint)message.Deliveries },
            Properties = message.Properties,
            ApplicationProperties = properties,
            MessageAnnotations = new MessageAnnotations(),
            BodySection = new Data { Binary = message.Body },
        };
        amqp.MessageAnnotations[new Symbol("x-opt-sequence-number")] = message.Sequence;
        amqp.MessageAnnotations[new Symbol("x-opt-enqueued-time")] = message.EnqueuedAt;
        amqp.MessageAnnotations[new Symbol("x-opt-locked-until")] = held.LockedUntil;
        return amqp;
    }

    private void Send(List<(Consumer Consumer, Message Message, Guid Token)> deliveries)
    {
        foreach (var (consumer, message, token) in deliveries)
        {
            Deliver?.Invoke(consumer, message, token);
        }
    }
}
