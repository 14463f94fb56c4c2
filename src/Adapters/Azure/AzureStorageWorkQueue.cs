using System.Text.Json;
using Azure;
using Azure.Storage.Queues;
using Azure.Storage.Queues.Models;
using Microsoft.Extensions.Options;
using Queue.Contracts.Ports;

namespace Queue.Adapters.Azure;

/// <summary>
/// The work queue on Azure Storage Queues (Azure.Storage.Queues). A receive's visibility timeout is the
/// lease and <c>DequeueCount</c> the delivery count; renew is Update Message (its new pop receipt
/// replaces the old one, and a stale pop receipt is a lost lease); complete deletes; abandon makes the
/// message visible at once; dead-letter copies it to <c>{queue}-poison</c> with the reason, then deletes
/// it. The service never dead-letters by itself, so a receive moves a message past
/// <see cref="WorkQueueOptions.MaxDeliveryCount"/> to the poison queue. Empty queues are polled with
/// back-off; depth comes from the approximate message count.
/// </summary>
public sealed class AzureStorageWorkQueue : IWorkQueue
{
    private const int MaxBatch = 32;
    private readonly AzureStorageClients clients;
    private readonly WorkQueueOptions options;
    private readonly QueueClient queue;
    private readonly QueueClient poison;
    private readonly SemaphoreSlim created = new(1, 1);
    private bool exists;
    private int held;
    private int heldDead;

    public AzureStorageWorkQueue(string name, AzureStorageClients clients, IOptions<WorkQueueOptions> options)
    {
        Name = name;
        this.clients = clients;
        this.options = options.Value;
        queue = clients.Queues.GetQueueClient(clients.Options.QueuePrefix + name);
        poison = clients.Queues.GetQueueClient(clients.Options.QueuePrefix + name + "-poison");
    }

    public string Name { get; }

    public async Task SendAsync(ReadOnlyMemory<byte> body, CancellationToken cancellationToken)
    {
        await EnsureQueuesAsync(cancellationToken);
        await PutAsync(queue, body, cancellationToken);
    }

    public async Task SendManyAsync(IReadOnlyList<ReadOnlyMemory<byte>> bodies, CancellationToken cancellationToken)
    {
        await EnsureQueuesAsync(cancellationToken);
        // One Put Message call per message: sixteen in flight at once.
        await Parallel.ForEachAsync(bodies, new ParallelOptions { MaxDegreeOfParallelism = 16, CancellationToken = cancellationToken },
            (body, ct) => new ValueTask(PutAsync(queue, body, ct)));
    }

    public async Task<IReadOnlyList<ILeasedMessage>> ReceiveAsync(int maxMessages, TimeSpan maxWait, CancellationToken cancellationToken)
    {
        await EnsureQueuesAsync(cancellationToken);
        return await PollAsync(queue, dead: false, maxMessages, maxWait, cancellationToken);
    }

    public async Task<IReadOnlyList<ILeasedMessage>> ReceiveDeadLetteredAsync(int maxMessages, TimeSpan maxWait, CancellationToken cancellationToken)
    {
        await EnsureQueuesAsync(cancellationToken);
        return await PollAsync(poison, dead: true, maxMessages, maxWait, cancellationToken);
    }

    public async Task<QueueDepth> GetDepthAsync(CancellationToken cancellationToken)
    {
        await EnsureQueuesAsync(cancellationToken);
        var all = await CountAsync(queue, cancellationToken);
        var dead = await CountAsync(poison, cancellationToken);
        var leased = Volatile.Read(ref held);
        // The approximate count includes invisible (leased) messages; leased counts this process's only.
        return new QueueDepth(Name, Math.Max(0, all - leased), leased, dead);
    }

    private async Task<IReadOnlyList<ILeasedMessage>> PollAsync(QueueClient from, bool dead, int maxMessages, TimeSpan maxWait, CancellationToken cancellationToken)
    {
        var deadline = DateTimeOffset.UtcNow + maxWait;
        var pause = TimeSpan.FromMilliseconds(50);
        while (true)
        {
            var leases = await GetMessagesAsync(from, dead, Math.Clamp(maxMessages, 1, MaxBatch), cancellationToken);
            if (leases.Count > 0)
            {
                return leases;
            }
            var remaining = deadline - DateTimeOffset.UtcNow;
            if (remaining <= TimeSpan.Zero)
            {
                return leases;
            }
            await Task.Delay(QueueWait.ForTimer(pause < remaining ? pause : remaining), cancellationToken);
            pause = TimeSpan.FromTicks(Math.Min(pause.Ticks * 2, clients.Options.MaxPollInterval.Ticks));
        }
    }

    private async Task<List<ILeasedMessage>> GetMessagesAsync(QueueClient from, bool dead, int count, CancellationToken cancellationToken)
    {
        var received = await AzureStorageClients.CallAsync($"receiving from queue '{from.Name}'",
            async () => (await from.ReceiveMessagesAsync(count, Visibility(options.LeaseDuration), cancellationToken)).Value, cancellationToken);
        var leases = new List<ILeasedMessage>(received.Length);
        foreach (var message in received)
        {
            var body = message.Body.ToArray();
            string? reason = null, description = null;
            if (dead)
            {
                var envelope = JsonSerializer.Deserialize(body, AzureQueueJsonContext.Default.DeadLetterEnvelope);
                body = envelope?.Body ?? body;
                reason = envelope?.Reason ?? "Unknown";
                description = envelope?.Description;
            }
            var lease = new LeasedMessage(this, from, dead, message.MessageId, message.PopReceipt, (int)message.DequeueCount,
                message.NextVisibleOn ?? DateTimeOffset.UtcNow + options.LeaseDuration, body, reason, description);
            Interlocked.Increment(ref dead ? ref heldDead : ref held);
            if (!dead && message.DequeueCount > options.MaxDeliveryCount)
            {
                // The service does not dead-letter on its own: a message past the limit goes to the poison queue now.
                await lease.DeadLetterAsync("MaxDeliveryCountExceeded", $"Delivered {message.DequeueCount} times; the limit is {options.MaxDeliveryCount}.", cancellationToken);
                continue;
            }
            leases.Add(lease);
        }
        return leases;
    }

    private static Task PutAsync(QueueClient to, ReadOnlyMemory<byte> body, CancellationToken cancellationToken)
    {
        // Base64 grows the body by a third; the service takes 64 KiB of message text.
        if (body.Length > 48 * 1024)
        {
            throw new InvalidOperationException($"A message for '{to.Name}' is {body.Length} bytes; Azure Storage Queues take 48 KiB of data at most (tasks reference blobs, they never carry data).");
        }
        return AzureStorageClients.CallAsync($"sending to queue '{to.Name}'", () => to.SendMessageAsync(new BinaryData(body), cancellationToken: cancellationToken), cancellationToken);
    }

    private static Task<long> CountAsync(QueueClient of, CancellationToken cancellationToken) =>
        AzureStorageClients.CallAsync($"counting queue '{of.Name}'",
            async () => (long)(await of.GetPropertiesAsync(cancellationToken)).Value.ApproximateMessagesCount, cancellationToken);

    private async Task EnsureQueuesAsync(CancellationToken cancellationToken)
    {
        if (exists)
        {
            return;
        }
        await created.WaitAsync(cancellationToken);
        try
        {
            foreach (var client in new[] { queue, poison })
            {
                await AzureStorageClients.CallAsync($"creating queue '{client.Name}'", () => client.CreateIfNotExistsAsync(cancellationToken: cancellationToken), cancellationToken);
            }
            exists = true;
        }
        finally
        {
            created.Release();
        }
    }

    private static TimeSpan Visibility(TimeSpan lease) => TimeSpan.FromSeconds(Math.Max(1, Math.Ceiling(lease.TotalSeconds)));

    private sealed class LeasedMessage(AzureStorageWorkQueue owner, QueueClient queue, bool dead, string id, string popReceipt, int dequeueCount,
        DateTimeOffset lockedUntil, byte[] body, string? reason, string? description) : ILeasedMessage
    {
        private string popReceipt = popReceipt;
        private int settled;

        public string MessageId => id;
        public ReadOnlyMemory<byte> Body => body;
        public int DeliveryCount => dequeueCount;
        public DateTimeOffset LockedUntil { get; private set; } = lockedUntil;
        public string? DeadLetterReason => reason;
        public string? DeadLetterDescription => description;

        public async Task CompleteAsync(CancellationToken cancellationToken)
        {
            await DeleteAsync(cancellationToken);
            Settled();
        }

        public async Task AbandonAsync(CancellationToken cancellationToken)
        {
            await UpdateAsync(TimeSpan.Zero, cancellationToken);
            Settled();
        }

        public async Task DeadLetterAsync(string reason, string? description, CancellationToken cancellationToken)
        {
            // Copy first, then delete: a crash in between leaves a duplicate in the poison queue, never a loss.
            var envelope = JsonSerializer.SerializeToUtf8Bytes(new DeadLetterEnvelope(reason, description, body), AzureQueueJsonContext.Default.DeadLetterEnvelope);
            await PutAsync(owner.poison, envelope, cancellationToken);
            await DeleteAsync(cancellationToken);
            Settled();
        }

        public Task RenewLockAsync(CancellationToken cancellationToken) => UpdateAsync(Visibility(owner.options.LeaseDuration), cancellationToken);

        private Task DeleteAsync(CancellationToken cancellationToken) =>
            AzureStorageClients.CallAsync($"deleting message {id} from '{queue.Name}'", async () =>
            {
                try
                {
                    await queue.DeleteMessageAsync(id, popReceipt, cancellationToken);
                }
                catch (RequestFailedException e) when (IsLost(e))
                {
                    throw Lost();
                }
            }, cancellationToken);

        private Task UpdateAsync(TimeSpan visibility, CancellationToken cancellationToken) =>
            AzureStorageClients.CallAsync($"updating message {id} in '{queue.Name}'", async () =>
            {
                try
                {
                    var receipt = (await queue.UpdateMessageAsync(id, popReceipt, visibilityTimeout: visibility, cancellationToken: cancellationToken)).Value;
                    // Each update issues a new pop receipt; the old one no longer settles the message.
                    popReceipt = receipt.PopReceipt;
                    LockedUntil = receipt.NextVisibleOn;
                }
                catch (RequestFailedException e) when (IsLost(e))
                {
                    throw Lost();
                }
            }, cancellationToken);

        /// <summary>A missing message or a stale pop receipt means another receiver holds it now (or it is gone).</summary>
        private static bool IsLost(RequestFailedException e) =>
            e.Status == 404 || e.ErrorCode is "PopReceiptMismatch" or "MessageNotFound";

        private void Settled()
        {
            if (Interlocked.Exchange(ref settled, 1) == 0)
            {
                Interlocked.Decrement(ref dead ? ref owner.heldDead : ref owner.held);
            }
        }

        private LeaseLostException Lost()
        {
            Settled();
            return new LeaseLostException($"The lease on message {id} in '{queue.Name}' has ended (its pop receipt is stale); the queue redelivers it.");
        }
    }
}

/// <summary>A dead-lettered message in the poison queue: the reason and the original body.</summary>
public sealed record DeadLetterEnvelope(string Reason, string? Description, byte[] Body);

[System.Text.Json.Serialization.JsonSerializable(typeof(DeadLetterEnvelope))]
internal sealed partial class AzureQueueJsonContext : System.Text.Json.Serialization.JsonSerializerContext;
