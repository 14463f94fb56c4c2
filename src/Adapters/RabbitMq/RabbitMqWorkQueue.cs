using System.Text;
using System.Threading.Channels;
using Microsoft.Extensions.Options;
using Queue.Contracts.Ports;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;

namespace Queue.Adapters.RabbitMq;

/// <summary>
/// The work queue on RabbitMQ: a durable quorum queue with persistent messages and publisher
/// confirms, manual acknowledgement, <c>x-delivery-limit</c> and a dead-letter queue
/// (<c>{name}.dead-letter</c>). Messages are pushed to a local buffer up to the prefetch.
/// </summary>
/// <remarks>
/// Lease semantics differ from timer-based queues: RabbitMQ holds an unacknowledged message until
/// the channel or connection closes (a crashed worker), so a lease cannot expire on its own; a hung
/// but live worker is covered by the worker's own task time limit. <see cref="ILeasedMessage.RenewLockAsync"/>
/// only moves the local deadline. <c>DeliveryCount</c> is the quorum queue's <c>x-delivery-count</c>
/// plus one. <c>Leased</c> in the depth counts the messages this process holds.
/// </remarks>
public sealed class RabbitMqWorkQueue : IWorkQueue, IAsyncDisposable
{
    private readonly RabbitMqOptions options;
    private readonly WorkQueueOptions queueOptions;
    private readonly string queueName;
    private readonly string deadLetterName;
    private readonly SemaphoreSlim setup = new(1, 1);
    private readonly Lane active;
    private readonly Lane dead;
    private IConnection? connection;
    private IChannel? publisher;

    public RabbitMqWorkQueue(string name, IOptions<RabbitMqOptions> options, IOptions<WorkQueueOptions> queueOptions)
    {
        Name = name;
        this.options = options.Value;
        this.queueOptions = queueOptions.Value;
        queueName = this.options.QueuePrefix + name;
        deadLetterName = queueName + ".dead-letter";
        active = new Lane(this, queueName);
        dead = new Lane(this, deadLetterName);
    }

    public string Name { get; }

    public async Task SendAsync(ReadOnlyMemory<byte> body, CancellationToken cancellationToken)
    {
        try
        {
            var channel = await PublisherAsync(cancellationToken);
            var properties = new BasicProperties { Persistent = true, MessageId = Guid.NewGuid().ToString("N") };
            // With confirm tracking on, this returns once the broker has the message durably.
            await channel.BasicPublishAsync("", queueName, mandatory: true, properties, body, cancellationToken);
        }
        catch (Exception e) when (IsConnectionFault(e))
        {
            throw Unavailable(e);
        }
    }

    public async Task SendManyAsync(IReadOnlyList<ReadOnlyMemory<byte>> bodies, CancellationToken cancellationToken)
    {
        // Publisher confirms are tracked per message, so many can be outstanding on the channel at once
        // (RabbitMQ.Client 7's batch publishing): a window of them is awaited together.
        const int Window = 128;
        try
        {
            var channel = await PublisherAsync(cancellationToken);
            var pending = new List<Task>(Window);
            foreach (var body in bodies)
            {
                var properties = new BasicProperties { Persistent = true, MessageId = Guid.NewGuid().ToString("N") };
                pending.Add(channel.BasicPublishAsync("", queueName, mandatory: true, properties, body, cancellationToken).AsTask());
                if (pending.Count == Window)
                {
                    await Task.WhenAll(pending);
                    pending.Clear();
                }
            }
            await Task.WhenAll(pending);
        }
        catch (Exception e) when (IsConnectionFault(e))
        {
            throw Unavailable(e);
        }
    }

    public async Task<IReadOnlyList<ILeasedMessage>> ReceiveAsync(int maxMessages, TimeSpan maxWait, CancellationToken cancellationToken)
    {
        try
        {
            return await active.ReceiveAsync(maxMessages, maxWait, cancellationToken);
        }
        catch (Exception e) when (IsConnectionFault(e))
        {
            throw Unavailable(e);
        }
    }

    public async Task<IReadOnlyList<ILeasedMessage>> ReceiveDeadLetteredAsync(int maxMessages, TimeSpan maxWait, CancellationToken cancellationToken)
    {
        try
        {
            return await dead.ReceiveAsync(maxMessages, maxWait, cancellationToken);
        }
        catch (Exception e) when (IsConnectionFault(e))
        {
            throw Unavailable(e);
        }
    }

    public async Task<QueueDepth> GetDepthAsync(CancellationToken cancellationToken)
    {
        try
        {
            var channel = await PublisherAsync(cancellationToken);
            var main = await channel.QueueDeclarePassiveAsync(queueName, cancellationToken);
            var poison = await channel.QueueDeclarePassiveAsync(deadLetterName, cancellationToken);
            return new QueueDepth(Name, main.MessageCount + active.Buffered, active.Held, poison.MessageCount + dead.Buffered + dead.Held);
        }
        catch (Exception e) when (IsConnectionFault(e))
        {
            throw Unavailable(e);
        }
    }

    public async Task StopReceivingAsync(bool deadLetters, CancellationToken cancellationToken)
    {
        try
        {
            await (deadLetters ? dead : active).StopAsync(cancellationToken);
        }
        catch (Exception e) when (IsConnectionFault(e))
        {
            // A channel that cannot be closed cleanly is closed by the broker with its connection.
            throw Unavailable(e);
        }
    }

    /// <summary>Faults of the connection or the broker, as opposed to bugs: the port's <see cref="BrokerUnavailableException"/>.</summary>
    private static bool IsConnectionFault(Exception e) =>
        e is RabbitMQ.Client.Exceptions.BrokerUnreachableException or RabbitMQ.Client.Exceptions.OperationInterruptedException
            or RabbitMQ.Client.Exceptions.ConnectFailureException or RabbitMQ.Client.Exceptions.PublishException
            or IOException or System.Net.Sockets.SocketException or TimeoutException;

    private BrokerUnavailableException Unavailable(Exception e) => new("RabbitMQ", $"queue '{queueName}': {e.Message}", e);

    /// <summary>Closes the connection as a crashed worker's would; the broker requeues what it held. For tests.</summary>
    public async Task DropConnectionAsync()
    {
        await setup.WaitAsync();
        try
        {
            if (connection is not null)
            {
                await connection.CloseAsync();
                await connection.DisposeAsync();
            }
            connection = null;
            publisher = null;
            active.Reset();
            dead.Reset();
        }
        finally
        {
            setup.Release();
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (connection is not null)
        {
            await connection.CloseAsync();
            await connection.DisposeAsync();
        }
        setup.Dispose();
    }

    private async Task<IConnection> ConnectionAsync(CancellationToken cancellationToken)
    {
        if (connection is { IsOpen: true } open)
        {
            return open;
        }
        if (connection is not null)
        {
            await connection.DisposeAsync();
        }
        // Reconnection is ours, not the client's automatic recovery: a recovered channel would
        // accept acks for delivery tags of the old one. Every lease taken before is lost.
        var factory = new ConnectionFactory
        {
            Uri = new Uri(options.ConnectionString),
            AutomaticRecoveryEnabled = false,
            TopologyRecoveryEnabled = false,
            RequestedHeartbeat = options.Heartbeat,
            ClientProvidedName = $"queue-{Name}-{Environment.ProcessId}",
        };
        // amqps:// turned TLS on with the URI's host as the name to check; the CA and client certificate are ours.
        if (factory.Ssl.Enabled)
        {
            ConfigureTls(factory.Ssl, options);
        }
        connection = await factory.CreateConnectionAsync(cancellationToken);
        await using var declare = await connection.CreateChannelAsync(cancellationToken: cancellationToken);
        await declare.QueueDeclareAsync(deadLetterName, durable: true, exclusive: false, autoDelete: false,
            arguments: new Dictionary<string, object?> { ["x-queue-type"] = "quorum" }, cancellationToken: cancellationToken);
        await declare.QueueDeclareAsync(queueName, durable: true, exclusive: false, autoDelete: false, arguments: new Dictionary<string, object?>
        {
            ["x-queue-type"] = "quorum",
            // The limit counts returns, not deliveries: N deliveries allow N - 1 returns.
            ["x-delivery-limit"] = queueOptions.MaxDeliveryCount - 1,
            // Without a dead-letter target RabbitMQ drops a message at the limit.
            ["x-dead-letter-exchange"] = "",
            ["x-dead-letter-routing-key"] = deadLetterName,
        }, cancellationToken: cancellationToken);
        return connection;
    }

    private static void ConfigureTls(SslOption ssl, RabbitMqOptions options)
    {
        if (options.ClientCertificateFile is { } certificate)
        {
            ssl.Certs = [System.Security.Cryptography.X509Certificates.X509Certificate2.CreateFromPemFile(certificate, options.ClientKeyFile)];
        }
        if (options.CaFile is not { } caFile)
        {
            return;
        }
        var ca = System.Security.Cryptography.X509Certificates.X509Certificate2.CreateFromPem(File.ReadAllText(caFile));
        ssl.CertificateValidationCallback = (_, certificate, _, errors) =>
        {
            // Only the chain is judged against our CA; a wrong host name or a missing certificate still fails.
            if (certificate is null || (errors & ~System.Net.Security.SslPolicyErrors.RemoteCertificateChainErrors) != 0)
            {
                return false;
            }
            using var chain = new System.Security.Cryptography.X509Certificates.X509Chain();
            chain.ChainPolicy.TrustMode = System.Security.Cryptography.X509Certificates.X509ChainTrustMode.CustomRootTrust;
            chain.ChainPolicy.RevocationMode = System.Security.Cryptography.X509Certificates.X509RevocationMode.NoCheck;
            chain.ChainPolicy.CustomTrustStore.Add(ca);
            return chain.Build(System.Security.Cryptography.X509Certificates.X509CertificateLoader.LoadCertificate(certificate.GetRawCertData()));
        };
    }

    private async Task<IChannel> PublisherAsync(CancellationToken cancellationToken)
    {
        if (publisher is { IsOpen: true } open)
        {
            return open;
        }
        await setup.WaitAsync(cancellationToken);
        try
        {
            if (publisher is not { IsOpen: true })
            {
                var conn = await ConnectionAsync(cancellationToken);
                publisher = await conn.CreateChannelAsync(new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true), cancellationToken);
            }
            return publisher;
        }
        finally
        {
            setup.Release();
        }
    }

    /// <summary>A consumer of one queue feeding a local buffer; settles on the channel that delivered.</summary>
    private sealed class Lane(RabbitMqWorkQueue owner, string queue)
    {
        private Channel<Delivery> buffer = System.Threading.Channels.Channel.CreateUnbounded<Delivery>();
        private IChannel? channel;
        private int generation;
        private int held;
        private int buffered;

        /// <summary>Messages handed to callers and not settled yet.</summary>
        public int Held => Volatile.Read(ref held);

        /// <summary>Messages the broker pushed (prefetch) that no caller has taken yet.</summary>
        public int Buffered => Volatile.Read(ref buffered);

        public void Reset()
        {
            channel = null;
            Interlocked.Increment(ref generation);
            buffer = System.Threading.Channels.Channel.CreateUnbounded<Delivery>();
            Volatile.Write(ref held, 0);
            Volatile.Write(ref buffered, 0);
        }

        /// <summary>
        /// Closes the consuming channel: the broker requeues everything it delivered on it, buffered or
        /// held, and leases taken on it are lost. Consuming starts again on the next receive.
        /// </summary>
        public async Task StopAsync(CancellationToken cancellationToken)
        {
            await owner.setup.WaitAsync(cancellationToken);
            IChannel? closing;
            try
            {
                closing = channel;
                if (closing is null)
                {
                    return;
                }
                Reset();
            }
            finally
            {
                owner.setup.Release();
            }
            if (closing.IsOpen)
            {
                await closing.CloseAsync(cancellationToken);
            }
            await closing.DisposeAsync();
        }

        public async Task<IReadOnlyList<ILeasedMessage>> ReceiveAsync(int maxMessages, TimeSpan maxWait, CancellationToken cancellationToken)
        {
            await EnsureConsumingAsync(cancellationToken);
            var reader = buffer.Reader;
            var leases = new List<ILeasedMessage>();
            using var wait = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            wait.CancelAfter(QueueWait.ForTimer(maxWait));
            try
            {
                if (!reader.TryPeek(out _) && !await reader.WaitToReadAsync(wait.Token))
                {
                    return leases;
                }
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                return leases;
            }
            while (leases.Count < maxMessages && reader.TryRead(out var delivery))
            {
                Interlocked.Decrement(ref buffered);
                if (delivery.Generation != Volatile.Read(ref generation))
                {
                    continue; // delivered on a channel that has since closed: the broker requeued it
                }
                Interlocked.Increment(ref held);
                leases.Add(new LeasedMessage(this, delivery, DateTimeOffset.UtcNow + owner.queueOptions.LeaseDuration));
            }
            return leases;
        }

        private async Task EnsureConsumingAsync(CancellationToken cancellationToken)
        {
            if (channel is { IsOpen: true })
            {
                return;
            }
            await owner.setup.WaitAsync(cancellationToken);
            try
            {
                if (channel is { IsOpen: true })
                {
                    return;
                }
                var connection = await owner.ConnectionAsync(cancellationToken);
                var consuming = await connection.CreateChannelAsync(cancellationToken: cancellationToken);
                // The events queue's one consumer is the leader, which applies events in batches: give it a batch's worth.
                var prefetch = owner.Name == QueueNames.Events ? owner.options.EventsPrefetch : owner.options.Prefetch;
                await consuming.BasicQosAsync(0, prefetch, global: false, cancellationToken);
                var current = Interlocked.Increment(ref generation);
                // A closed channel (crash, broker restart) ends every lease taken on it.
                consuming.ChannelShutdownAsync += (_, _) =>
                {
                    Interlocked.CompareExchange(ref generation, current + 1, current);
                    return Task.CompletedTask;
                };
                var consumer = new AsyncEventingBasicConsumer(consuming);
                var target = buffer.Writer;
                consumer.ReceivedAsync += (_, e) =>
                {
                    Interlocked.Increment(ref buffered);
                    target.TryWrite(new Delivery(consuming, current, e.DeliveryTag, e.Body.ToArray(), e.BasicProperties.MessageId ?? e.DeliveryTag.ToString(System.Globalization.CultureInfo.InvariantCulture), e.BasicProperties.Headers));
                    return Task.CompletedTask;
                };
                await consuming.BasicConsumeAsync(queue, autoAck: false, consumer, cancellationToken);
                channel = consuming;
            }
            finally
            {
                owner.setup.Release();
            }
        }

        public async Task SettleAsync(Delivery delivery, Func<IChannel, ValueTask> settle)
        {
            if (delivery.Generation != Volatile.Read(ref generation) || !delivery.Channel.IsOpen)
            {
                throw new LeaseLostException($"The channel that delivered message {delivery.MessageId} from '{queue}' has closed; the broker redelivers it.");
            }
            try
            {
                await settle(delivery.Channel);
            }
            catch (RabbitMQ.Client.Exceptions.AlreadyClosedException e)
            {
                throw new LeaseLostException($"Message {delivery.MessageId} from '{queue}': {e.Message}");
            }
            Interlocked.Decrement(ref held);
        }

        public RabbitMqWorkQueue Owner => owner;

        public string Queue => queue;
    }

    private sealed record Delivery(IChannel Channel, int Generation, ulong Tag, byte[] Body, string MessageId, IDictionary<string, object?>? Headers);

    private sealed class LeasedMessage(Lane lane, Delivery delivery, DateTimeOffset lockedUntil) : ILeasedMessage
    {
        public string MessageId => delivery.MessageId;
        public ReadOnlyMemory<byte> Body => delivery.Body;
        public int DeliveryCount { get; } = (int)Header(delivery.Headers, "x-delivery-count", 0) + 1;
        public DateTimeOffset LockedUntil { get; private set; } = lockedUntil;
        public string? DeadLetterReason => Text(delivery.Headers, "x-queue-dead-letter-reason") ?? DeathReason(delivery.Headers);
        public string? DeadLetterDescription => Text(delivery.Headers, "x-queue-dead-letter-description");

        public Task CompleteAsync(CancellationToken cancellationToken) =>
            lane.SettleAsync(delivery, channel => channel.BasicAckAsync(delivery.Tag, multiple: false, cancellationToken));

        public Task AbandonAsync(CancellationToken cancellationToken) =>
            lane.SettleAsync(delivery, channel => channel.BasicNackAsync(delivery.Tag, multiple: false, requeue: true, cancellationToken));

        public async Task DeadLetterAsync(string reason, string? description, CancellationToken cancellationToken)
        {
            // Publish a copy with the reason (confirmed), then acknowledge the original. A crash in between
            // leaves a duplicate in the dead-letter queue, never a lost message.
            var publisher = await lane.Owner.PublisherAsync(cancellationToken);
            var properties = new BasicProperties
            {
                Persistent = true,
                MessageId = delivery.MessageId,
                Headers = new Dictionary<string, object?> { ["x-queue-dead-letter-reason"] = reason, ["x-queue-dead-letter-description"] = description ?? "" },
            };
            await publisher.BasicPublishAsync("", lane.Owner.deadLetterName, mandatory: true, properties, delivery.Body, cancellationToken);
            await CompleteAsync(cancellationToken);
        }

        public Task RenewLockAsync(CancellationToken cancellationToken)
        {
            if (!delivery.Channel.IsOpen)
            {
                throw new LeaseLostException($"The channel that delivered message {delivery.MessageId} has closed.");
            }
            LockedUntil = DateTimeOffset.UtcNow + lane.Owner.queueOptions.LeaseDuration;
            return Task.CompletedTask;
        }

        private static long Header(IDictionary<string, object?>? headers, string name, long fallback) =>
            headers is not null && headers.TryGetValue(name, out var value) ? value switch
            {
                long l => l,
                int i => i,
                byte[] b when long.TryParse(Encoding.UTF8.GetString(b), out var parsed) => parsed,
                _ => fallback,
            } : fallback;

        private static string? Text(IDictionary<string, object?>? headers, string name) =>
            headers is not null && headers.TryGetValue(name, out var value) ? value switch
            {
                byte[] bytes => Encoding.UTF8.GetString(bytes),
                string s => s,
                _ => value?.ToString(),
            } : null;

        /// <summary>A message the broker dead-lettered carries <c>x-first-death-reason</c> (e.g. <c>delivery_limit</c>).</summary>
        private static string? DeathReason(IDictionary<string, object?>? headers) =>
            Text(headers, "x-first-death-reason") is { } reason ? $"MaxDeliveryCountExceeded ({reason})" : null;
    }
}
