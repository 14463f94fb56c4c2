using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Xml.Linq;
using Microsoft.Extensions.Options;
using Queue.Contracts.Ports;

namespace Queue.Adapters.Azure;

/// <summary>
/// The work queue on Azure Storage Queues. A receive's visibility timeout is the lease and
/// <c>DequeueCount</c> the delivery count; renew is Update Message (its new pop receipt replaces the
/// old one, and a stale pop receipt is a lost lease); complete deletes; abandon makes the message
/// visible at once; dead-letter copies it to <c>{queue}-poison</c> with the reason, then deletes it.
/// The service never dead-letters by itself, so a receive moves a message past
/// <see cref="WorkQueueOptions.MaxDeliveryCount"/> to the poison queue. Empty queues are polled
/// with back-off; depth comes from the approximate message count.
/// </summary>
public sealed class AzureStorageWorkQueue : IWorkQueue
{
    private const int MaxBatch = 32;
    private readonly AzureStorageClient client;
    private readonly WorkQueueOptions options;
    private readonly string queueName;
    private readonly string poisonName;
    private readonly SemaphoreSlim created = new(1, 1);
    private bool exists;
    private int held;
    private int heldDead;

    public AzureStorageWorkQueue(string name, AzureStorageClient client, IOptions<WorkQueueOptions> options)
    {
        Name = name;
        this.client = client;
        this.options = options.Value;
        queueName = client.Options.QueuePrefix + name;
        poisonName = queueName + "-poison";
    }

    public string Name { get; }

    public async Task SendAsync(ReadOnlyMemory<byte> body, CancellationToken cancellationToken)
    {
        await EnsureQueuesAsync(cancellationToken);
        await PutAsync(queueName, body, cancellationToken);
    }

    public async Task<IReadOnlyList<ILeasedMessage>> ReceiveAsync(int maxMessages, TimeSpan maxWait, CancellationToken cancellationToken)
    {
        await EnsureQueuesAsync(cancellationToken);
        return await PollAsync(queueName, dead: false, maxMessages, maxWait, cancellationToken);
    }

    public async Task<IReadOnlyList<ILeasedMessage>> ReceiveDeadLetteredAsync(int maxMessages, TimeSpan maxWait, CancellationToken cancellationToken)
    {
        await EnsureQueuesAsync(cancellationToken);
        return await PollAsync(poisonName, dead: true, maxMessages, maxWait, cancellationToken);
    }

    public async Task<QueueDepth> GetDepthAsync(CancellationToken cancellationToken)
    {
        await EnsureQueuesAsync(cancellationToken);
        var all = await CountAsync(queueName, cancellationToken);
        var dead = await CountAsync(poisonName, cancellationToken);
        var leased = Volatile.Read(ref held);
        // The approximate count includes invisible (leased) messages; leased counts this process's only.
        return new QueueDepth(Name, Math.Max(0, all - leased), leased, dead);
    }

    private async Task<IReadOnlyList<ILeasedMessage>> PollAsync(string queue, bool dead, int maxMessages, TimeSpan maxWait, CancellationToken cancellationToken)
    {
        var deadline = DateTimeOffset.UtcNow + maxWait;
        var pause = TimeSpan.FromMilliseconds(50);
        while (true)
        {
            var leases = await GetMessagesAsync(queue, dead, Math.Clamp(maxMessages, 1, MaxBatch), cancellationToken);
            if (leases.Count > 0)
            {
                return leases;
            }
            var remaining = deadline - DateTimeOffset.UtcNow;
            if (remaining <= TimeSpan.Zero)
            {
                return leases;
            }
            await Task.Delay(pause < remaining ? pause : remaining, cancellationToken);
            pause = TimeSpan.FromTicks(Math.Min(pause.Ticks * 2, client.Options.MaxPollInterval.Ticks));
        }
    }

    private async Task<List<ILeasedMessage>> GetMessagesAsync(string queue, bool dead, int count, CancellationToken cancellationToken)
    {
        var visibility = VisibilitySeconds(options.LeaseDuration);
        XDocument list;
        using (var response = await client.SendAsync(() => new HttpRequestMessage(HttpMethod.Get, QueueUri(queue, $"messages?numofmessages={count}&visibilitytimeout={visibility}")), cancellationToken))
        {
            list = XDocument.Parse(await response.Content.ReadAsStringAsync(cancellationToken));
        }
        var leases = new List<ILeasedMessage>();
        foreach (var item in list.Root?.Elements("QueueMessage") ?? [])
        {
            var id = item.Element("MessageId")!.Value;
            var popReceipt = item.Element("PopReceipt")!.Value;
            var dequeueCount = int.Parse(item.Element("DequeueCount")!.Value, CultureInfo.InvariantCulture);
            var nextVisible = DateTimeOffset.Parse(item.Element("TimeNextVisible")!.Value, CultureInfo.InvariantCulture);
            var body = Convert.FromBase64String(item.Element("MessageText")?.Value ?? "");
            string? reason = null, description = null;
            if (dead)
            {
                var envelope = JsonSerializer.Deserialize(body, AzureQueueJsonContext.Default.DeadLetterEnvelope);
                body = envelope?.Body ?? body;
                reason = envelope?.Reason ?? "Unknown";
                description = envelope?.Description;
            }
            var lease = new LeasedMessage(this, queue, dead, id, popReceipt, dequeueCount, nextVisible, body, reason, description);
            Interlocked.Increment(ref dead ? ref heldDead : ref held);
            if (!dead && dequeueCount > options.MaxDeliveryCount)
            {
                // The service does not dead-letter on its own: a message past the limit goes to the poison queue now.
                await lease.DeadLetterAsync("MaxDeliveryCountExceeded", $"Delivered {dequeueCount} times; the limit is {options.MaxDeliveryCount}.", cancellationToken);
                continue;
            }
            leases.Add(lease);
        }
        return leases;
    }

    private async Task PutAsync(string queue, ReadOnlyMemory<byte> body, CancellationToken cancellationToken)
    {
        var xml = Encoding.UTF8.GetBytes($"<QueueMessage><MessageText>{Convert.ToBase64String(body.Span)}</MessageText></QueueMessage>");
        if (xml.Length > 64 * 1024 + 100)
        {
            throw new InvalidOperationException($"A message for '{queue}' is {body.Length} bytes; Azure Storage Queues take 48 KiB of data at most (tasks reference blobs, they never carry data).");
        }
        using var _ = await client.SendAsync(() => new HttpRequestMessage(HttpMethod.Post, QueueUri(queue, "messages")) { Content = Xml(xml) }, cancellationToken);
    }

    private async Task<long> CountAsync(string queue, CancellationToken cancellationToken)
    {
        using var response = await client.SendAsync(() => new HttpRequestMessage(HttpMethod.Head, QueueUri(queue, "?comp=metadata")), cancellationToken);
        return response.Headers.TryGetValues("x-ms-approximate-messages-count", out var values) ? long.Parse(values.First(), CultureInfo.InvariantCulture) : 0;
    }

    private async Task EnsureQueuesAsync(CancellationToken cancellationToken)
    {
        if (exists)
        {
            return;
        }
        await created.WaitAsync(cancellationToken);
        try
        {
            foreach (var queue in new[] { queueName, poisonName })
            {
                using var _ = await client.SendAsync(() => new HttpRequestMessage(HttpMethod.Put, QueueUri(queue, "")), cancellationToken, accept: HttpStatusCode.Conflict);
            }
            exists = true;
        }
        finally
        {
            created.Release();
        }
    }

    private Uri QueueUri(string queue, string rest) =>
        new(client.Account.QueueEndpoint, rest.StartsWith('?') ? $"{queue}{rest}" : rest.Length == 0 ? queue : $"{queue}/{rest}");

    private static ByteArrayContent Xml(byte[] body)
    {
        var content = new ByteArrayContent(body);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/xml");
        return content;
    }

    private static int VisibilitySeconds(TimeSpan lease) => Math.Max(1, (int)Math.Ceiling(lease.TotalSeconds));

    private sealed class LeasedMessage(AzureStorageWorkQueue owner, string queue, bool dead, string id, string popReceipt, int dequeueCount,
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
            await UpdateAsync(0, cancellationToken);
            Settled();
        }

        public async Task DeadLetterAsync(string reason, string? description, CancellationToken cancellationToken)
        {
            // Copy first, then delete: a crash in between leaves a duplicate in the poison queue, never a loss.
            var envelope = JsonSerializer.SerializeToUtf8Bytes(new DeadLetterEnvelope(reason, description, body), AzureQueueJsonContext.Default.DeadLetterEnvelope);
            await owner.PutAsync(owner.poisonName, envelope, cancellationToken);
            await DeleteAsync(cancellationToken);
            Settled();
        }

        public Task RenewLockAsync(CancellationToken cancellationToken) => UpdateAsync(VisibilitySeconds(owner.options.LeaseDuration), cancellationToken);

        private async Task DeleteAsync(CancellationToken cancellationToken)
        {
            using var response = await owner.client.SendAsync(() => new HttpRequestMessage(HttpMethod.Delete,
                owner.QueueUri(queue, $"messages/{id}?popreceipt={Uri.EscapeDataString(popReceipt)}")), cancellationToken, accept: [HttpStatusCode.NotFound, HttpStatusCode.BadRequest]);
            await ThrowIfLostAsync(response, cancellationToken);
        }

        private async Task UpdateAsync(int visibilitySeconds, CancellationToken cancellationToken)
        {
            using var response = await owner.client.SendAsync(() => new HttpRequestMessage(HttpMethod.Put,
                owner.QueueUri(queue, $"messages/{id}?popreceipt={Uri.EscapeDataString(popReceipt)}&visibilitytimeout={visibilitySeconds}"))
            {
                Content = new ByteArrayContent([]),
            }, cancellationToken, accept: [HttpStatusCode.NotFound, HttpStatusCode.BadRequest]);
            await ThrowIfLostAsync(response, cancellationToken);
            // Each update issues a new pop receipt; the old one no longer settles the message.
            popReceipt = response.Headers.GetValues("x-ms-popreceipt").First();
            if (response.Headers.TryGetValues("x-ms-time-next-visible", out var next))
            {
                LockedUntil = DateTimeOffset.Parse(next.First(), CultureInfo.InvariantCulture);
            }
        }

        /// <summary>A missing message or a stale pop receipt means another receiver holds it now (or it is gone): the lease is lost.</summary>
        private async Task ThrowIfLostAsync(HttpResponseMessage response, CancellationToken cancellationToken)
        {
            if (response.IsSuccessStatusCode)
            {
                return;
            }
            var code = response.Headers.TryGetValues("x-ms-error-code", out var codes) ? codes.FirstOrDefault() : null;
            if (response.StatusCode == HttpStatusCode.NotFound || code is "PopReceiptMismatch" or "MessageNotFound")
            {
                throw Lost();
            }
            throw await AzureStorageClient.ErrorAsync(response.RequestMessage!, response, cancellationToken);
        }

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
            return new LeaseLostException($"The lease on message {id} in '{queue}' has ended (its pop receipt is stale); the queue redelivers it.");
        }
    }
}

/// <summary>A dead-lettered message in the poison queue: the reason and the original body.</summary>
public sealed record DeadLetterEnvelope(string Reason, string? Description, byte[] Body);

[System.Text.Json.Serialization.JsonSerializable(typeof(DeadLetterEnvelope))]
internal sealed partial class AzureQueueJsonContext : System.Text.Json.Serialization.JsonSerializerContext;
