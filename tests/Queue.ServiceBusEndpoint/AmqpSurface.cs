using System.Collections.Concurrent;
using Amqp;
using Amqp.Framing;
using Amqp.Handler;
using Amqp.Listener;
using Amqp.Sasl;
using Amqp.Types;

namespace Queue.ServiceBusEndpoint;

/// <summary>
/// The part of Service Bus's AMQP 1.0 surface that Azure.Messaging.ServiceBus uses for a peek-lock
/// queue, on AMQPNetLite's <see cref="ContainerHost"/>. From Microsoft's "AMQP 1.0 in Azure Service Bus
/// and Event Hubs protocol guide" and "AMQP 1.0 in Microsoft Azure Service Bus: request-response-based
/// operations":
/// <list type="bullet">
/// <item>SASL with the <c>MSSBCBS</c> mechanism (the SDK's anonymous handshake before claims-based security);</item>
/// <item>CBS: <c>put-token</c> requests on <c>$cbs</c> with <c>servicebus.windows.net:sastoken</c> tokens,
/// checked (policy, signature, expiry, audience); a link to an entity needs a token covering it with
/// the right (Send for senders, Listen for receivers and <c>$management</c>);</item>
/// <item>send (single messages and batches, message format 0x80013700), peek-lock receive
/// (rcv-settle-mode second) with the lock token as the 16-byte delivery tag, the
/// <c>x-opt-locked-until</c>, <c>x-opt-sequence-number</c> and <c>x-opt-enqueued-time</c> annotations
/// and the header's delivery count;</item>
/// <item>dispositions: accepted = complete, modified = abandon, rejected with
/// <c>com.microsoft:dead-letter</c> (DeadLetterReason, DeadLetterErrorDescription) = dead-letter,
/// released = a prefetched message given back; a lock that is gone answers
/// <c>com.microsoft:message-lock-lost</c>;</item>
/// <item><c>com.microsoft:renew-lock</c> and <c>com.microsoft:update-disposition</c> on
/// <c>{entity}/$management</c>.</item>
/// </list>
/// It is a stand-in for a broker, so it is strict: anything else (sessions, receive-and-delete,
/// deferral, scheduling, other operations, other message formats) is refused loudly with
/// <c>amqp:not-implemented</c>.
/// </summary>
internal sealed class AmqpSurface : IDisposable
{
    private const uint BatchFormat = 0x80013700;
    private const int MaxMessageSize = 256 * 1024;
    private static readonly Symbol DeadLetterCondition = new("com.microsoft:dead-letter");
    private static readonly Symbol LockLost = new("com.microsoft:message-lock-lost");
    private static readonly Symbol NotImplemented = new("amqp:not-implemented");
    private static readonly Symbol Unauthorized = new("amqp:unauthorized-access");
    private const string ClaimsKey = "queue-test-endpoint:claims";
    private readonly ContainerHost host;
    private readonly Broker broker;
    private readonly IReadOnlyList<AccessPolicy> policies;
    private readonly ConcurrentDictionary<Message, Guid> tags = new(ReferenceEqualityComparer.Instance);
    private readonly Action<string> log;

    public AmqpSurface(int port, Broker broker, IReadOnlyList<AccessPolicy> policies, Action<string> log)
    {
        this.broker = broker;
        this.policies = policies;
        this.log = log;
        host = new ContainerHost(new Address($"amqp://127.0.0.1:{port}"));
        var listener = host.Listeners[0];
        // The SDK offers only this mechanism: an anonymous handshake, then tokens over $cbs.
        listener.SASL.EnableMechanism(new Symbol("MSSBCBS"), SaslProfile.Anonymous);
        listener.AMQP.ContainerId = "queue-servicebus-test-endpoint";
        listener.HandlerFactory = _ => new TagHandler(tags);
        host.RegisterRequestProcessor("$cbs", new CbsProcessor(this));
        host.RegisterLinkProcessor(new LinkProcessor(this));
        broker.Deliver = (consumer, message, token) =>
        {
            tags[message] = token;
            try
            {
                consumer.Link.SendMessage(message);
            }
            catch (Exception e) when (e is AmqpException or ObjectDisposedException or InvalidOperationException)
            {
                // The link closed between lock and send: the lock expires and the message is redelivered.
                tags.TryRemove(message, out _);
            }
        };
    }

    public void Open() => host.Open();

    /// <summary>Makes <c>{queue}/$management</c> (and its dead-letter sub-queue's) answer requests.</summary>
    public void AddManagement(string queue)
    {
        foreach (var path in new[] { queue, queue + "/$deadletterqueue" })
        {
            host.RegisterRequestProcessor(path + "/$management", new ManagementProcessor(this, path));
        }
    }

    public void Dispose() => host.Close();

    /// <summary>The rights this connection's tokens grant on an entity (a token for a path covers what is under it).</summary>
    private static AccessRights Granted(ListenerConnection connection, string entity)
    {
        var rights = AccessRights.None;
        lock (connection)
        {
            if (connection.Properties.TryGetValue(ClaimsKey, out var value) && value is Dictionary<string, (AccessRights Rights, DateTimeOffset Expires)> claims)
            {
                foreach (var (path, claim) in claims)
                {
                    var covers = path.Length == 0 || entity.Equals(path, StringComparison.OrdinalIgnoreCase)
                        || entity.StartsWith(path + "/", StringComparison.OrdinalIgnoreCase);
                    if (covers && claim.Expires > DateTimeOffset.UtcNow)
                    {
                        rights |= claim.Rights;
                    }
                }
            }
        }
        return rights;
    }

    private static void Claim(ListenerConnection connection, string path, AccessRights rights, DateTimeOffset expires)
    {
        lock (connection)
        {
            if (!connection.Properties.TryGetValue(ClaimsKey, out var value) || value is not Dictionary<string, (AccessRights, DateTimeOffset)> claims)
            {
                connection.Properties[ClaimsKey] = claims = [];
            }
            claims[path] = (rights, expires);
        }
    }

    private static ListenerConnection ConnectionOf(ListenerLink link) => (ListenerConnection)link.Session.Connection;

    private static Error Refusal(Symbol condition, string description) => new(condition) { Description = description };

    /// <summary>Sets the 16-byte lock token as the delivery tag (AMQPNetLite would number deliveries).</summary>
    private sealed class TagHandler(ConcurrentDictionary<Message, Guid> tags) : IHandler
    {
        public bool CanHandle(EventId id) => id == EventId.SendDelivery;

        public void Handle(Event protocolEvent)
        {
            if (protocolEvent.Context is IDelivery delivery && delivery.Message is { } message && tags.TryRemove(message, out var token))
            {
                delivery.Tag = token.ToByteArray();
            }
        }
    }

    /// <summary>Claims-based security: <c>put-token</c> with a SAS token for an audience.</summary>
    private sealed class CbsProcessor(AmqpSurface surface) : IRequestProcessor
    {
        public int Credit => 100;

        public void Process(RequestContext request)
        {
            var properties = request.Message.ApplicationProperties;
            var response = new Message { ApplicationProperties = new ApplicationProperties() };
            var operation = properties?["operation"] as string;
            var type = properties?["type"] as string;
            var name = properties?["name"] as string;
            if (operation != "put-token" || type != "servicebus.windows.net:sastoken" || name is null)
            {
                surface.log($"$cbs: refused {operation ?? "(no operation)"} of type {type ?? "(none)"}: not implemented");
                response.ApplicationProperties["status-code"] = 501;
                response.ApplicationProperties["status-description"] = $"The test endpoint implements put-token with SAS tokens only, not {operation} / {type}.";
                request.Complete(response);
                return;
            }
            var (policy, refusal) = SasTokens.Check(request.Message.Body as string, name, surface.policies);
            if (policy is null)
            {
                surface.log($"$cbs: refused a token for {name}: {refusal}");
                response.ApplicationProperties["status-code"] = 401;
                response.ApplicationProperties["status-description"] = "Unauthorized: the token was not accepted.";
                request.Complete(response);
                return;
            }
            var expires = properties?["expiration"] is DateTime at ? new DateTimeOffset(DateTime.SpecifyKind(at, DateTimeKind.Utc)) : DateTimeOffset.UtcNow.AddMinutes(20);
            var path = Uri.TryCreate(name, UriKind.Absolute, out var audience) ? Uri.UnescapeDataString(audience.AbsolutePath).Trim('/') : name.Trim('/');
            Claim(ConnectionOf(request.Link), path, policy.Rights, expires);
            response.ApplicationProperties["status-code"] = 202;
            response.ApplicationProperties["status-description"] = "Accepted";
            request.Complete(response);
        }
    }

    /// <summary>Links to queues: senders into a queue, peek-lock receivers from a queue or its dead-letter sub-queue.</summary>
    private sealed class LinkProcessor(AmqpSurface surface) : ILinkProcessor
    {
        public void Process(AttachContext attach)
        {
            var frame = attach.Attach;
            var peerReceives = frame.Role;
            var address = peerReceives ? (frame.Source as Source)?.Address : (frame.Target as Target)?.Address;
            var entity = surface.broker.Find(address);
            if (entity is null)
            {
                surface.log($"attach {frame.LinkName}: no entity at '{address}'");
                attach.Complete(Refusal(new Symbol("amqp:not-found"), $"The messaging entity '{address}' could not be found."));
                return;
            }
            var needed = peerReceives ? AccessRights.Listen : AccessRights.Send;
            if ((Granted(ConnectionOf(attach.Link), entity.Name) & needed) == 0)
            {
                attach.Complete(Refusal(Unauthorized, $"No token on this connection grants {needed} on '{entity.Name}'."));
                return;
            }
            frame.MaxMessageSize = MaxMessageSize;
            if (!peerReceives)
            {
                if (entity.DeadLetter is null)
                {
                    attach.Complete(Refusal(new Symbol("amqp:not-allowed"), "Messages cannot be sent to a dead-letter sub-queue."));
                    return;
                }
                attach.Complete(new SendingPeer(surface, entity), 100);
                return;
            }
            if (frame.RcvSettleMode != ReceiverSettleMode.Second || frame.SndSettleMode == SenderSettleMode.Settled)
            {
                attach.Complete(Refusal(NotImplemented, "The test endpoint implements peek-lock receivers only (rcv-settle-mode second), not receive-and-delete."));
                return;
            }
            if ((frame.Source as Source)?.FilterSet is { Count: > 0 } filters)
            {
                attach.Complete(Refusal(NotImplemented, $"The test endpoint implements no filters (sessions): {string.Join(", ", filters.Keys)}."));
                return;
            }
            var consumer = new Consumer(entity, attach.Link);
            surface.broker.Attach(consumer);
            attach.Complete(new ReceivingPeer(surface, consumer), 0);
        }
    }

    /// <summary>A client sending to a queue: single messages or batches, each stored with a sequence number.</summary>
    private sealed class SendingPeer(AmqpSurface surface, Entity entity) : LinkEndpoint
    {
        public override void OnMessage(MessageContext context)
        {
            var message = context.Message;
            var parts = new List<Message>();
            if (message.Format == BatchFormat && message.BodySection is DataList list)
            {
                for (var i = 0; i < list.Count; i++)
                {
                    var bytes = list[i].Binary;
                    parts.Add(Message.Decode(new ByteBuffer(bytes, 0, bytes.Length, bytes.Length)));
                }
            }
            else if (message.Format == 0)
            {
                parts.Add(message);
            }
            else
            {
                context.Complete(Refusal(NotImplemented, $"Message format 0x{message.Format:X8} is not implemented."));
                return;
            }
            var bodies = new List<byte[]>(parts.Count);
            foreach (var part in parts)
            {
                if (Unsupported(part) is { } problem)
                {
                    context.Complete(Refusal(NotImplemented, problem));
                    return;
                }
                bodies.Add(((Data)part.BodySection).Binary.ToArray());
            }
            if (bodies.Sum(b => b.Length) > MaxMessageSize)
            {
                context.Complete(Refusal(new Symbol("amqp:link:message-size-exceeded"), $"The message is larger than {MaxMessageSize} bytes."));
                return;
            }
            for (var i = 0; i < parts.Count; i++)
            {
                surface.broker.Enqueue(entity, parts[i].Properties, parts[i].ApplicationProperties, bodies[i]);
            }
            context.Complete();
        }

        /// <summary>What of a message this endpoint does not implement, or null.</summary>
        private static string? Unsupported(Message part)
        {
            if (part.BodySection is not Data)
            {
                return $"Bodies other than one data section are not implemented (got {part.BodySection?.GetType().Name ?? "none"}).";
            }
            if (part.MessageAnnotations?.Map is { } annotations)
            {
                foreach (var key in annotations.Keys)
                {
                    if (key is Symbol symbol && ((string)symbol).StartsWith("x-opt-", StringComparison.Ordinal))
                    {
                        return $"The annotation '{symbol}' (scheduling, partitions, sessions) is not implemented.";
                    }
                }
            }
            if (part.Properties?.GroupId is not null)
            {
                return "Sessions (group-id) are not implemented.";
            }
            return null;
        }

        public override void OnFlow(FlowContext flowContext)
        {
        }

        public override void OnDisposition(DispositionContext dispositionContext)
        {
        }
    }

    /// <summary>A peek-lock receiver: credit in, locked deliveries out, settlements answered with a settled disposition.</summary>
    private sealed class ReceivingPeer(AmqpSurface surface, Consumer consumer) : LinkEndpoint
    {
        public override void OnFlow(FlowContext flowContext) =>
            surface.broker.AddCredit(consumer, flowContext.Messages, flowContext.Link.IsDraining);

        public override void OnDisposition(DispositionContext disposition)
        {
            var tag = disposition.Message.DeliveryTag;
            var token = tag is { Length: 16 } ? new Guid(tag) : Guid.Empty;
            if (disposition.DeliveryState is Released && (consumer.Closed || disposition.Link.IsClosed))
            {
                // The link is gone (the library releases what was unsettled on it): the lock stays until it expires.
                return;
            }
            DeliveryState reply;
            switch (disposition.DeliveryState)
            {
                case Accepted:
                    reply = Answer(surface.broker.Complete(token), new Accepted());
                    break;
                case Modified { UndeliverableHere: true }:
                    reply = Answer(Settlement.NotImplemented, null);
                    break;
                case Modified modified:
                    reply = Answer(surface.broker.Abandon(token), modified);
                    break;
                case Rejected { Error: { } error } when DeadLetterCondition.Equals(error.Condition):
                    var info = error.Info;
                    // The SDK takes Accepted as the answer to a dead-letter (a Rejected echo is an error to it).
                    reply = Answer(surface.broker.DeadLetter(token, info?[new Symbol("DeadLetterReason")] as string, info?[new Symbol("DeadLetterErrorDescription")] as string), new Accepted());
                    break;
                case Released:
                    reply = Answer(surface.broker.Release(token), new Released());
                    break;
                default:
                    reply = Answer(Settlement.NotImplemented, null);
                    break;
            }
            if (!disposition.Settled)
            {
                disposition.Link.DisposeMessage(disposition.Message, reply, true);
            }
        }

        public override void OnLinkClosed(ListenerLink link, Error error) => surface.broker.Detach(consumer);

        private static DeliveryState Answer(Settlement settlement, DeliveryState? done) => settlement switch
        {
            Settlement.Done => done!,
            Settlement.LockLost => new Rejected { Error = Refusal(LockLost, "The lock supplied is invalid: it expired, or the message was settled or is held by another receiver.") },
            _ => new Rejected { Error = Refusal(NotImplemented, "The test endpoint implements complete, abandon, dead-letter and release only (not defer).") },
        };
    }

    /// <summary>Request-response operations on <c>{entity}/$management</c>: renew-lock and update-disposition.</summary>
    private sealed class ManagementProcessor(AmqpSurface surface, string entity) : IRequestProcessor
    {
        public int Credit => 100;

        public void Process(RequestContext request)
        {
            var operation = request.Message.ApplicationProperties?["operation"] as string;
            var response = new Message { ApplicationProperties = new ApplicationProperties() };
            var body = request.Message.Body as Map;
            var tokens = body?["lock-tokens"] as Guid[];
            if ((Granted(ConnectionOf(request.Link), entity) & AccessRights.Listen) == 0)
            {
                Status(response, 401, (string)Unauthorized, $"No token on this connection grants Listen on '{entity}'.");
            }
            else if (operation is "com.microsoft:renew-lock" or "com.microsoft:update-disposition" && tokens is null)
            {
                Status(response, 400, "com.microsoft:argument-error", "The request has no lock-tokens array.");
            }
            else if (operation == "com.microsoft:renew-lock")
            {
                if (surface.broker.Renew(tokens!) is { } expirations)
                {
                    Status(response, 200, null, "OK");
                    response.BodySection = new AmqpValue { Value = new Map { ["expirations"] = expirations } };
                }
                else
                {
                    Status(response, 410, (string)LockLost, "The lock supplied is invalid: it expired, or the message was settled.");
                }
            }
            else if (operation == "com.microsoft:update-disposition")
            {
                UpdateDisposition(response, body!, tokens!);
            }
            else
            {
                surface.log($"$management: refused '{operation}': not implemented");
                Status(response, 501, (string)NotImplemented, $"The test endpoint does not implement '{operation}'.");
            }
            request.Complete(response);
        }

        private void UpdateDisposition(Message response, Map body, Guid[] tokens)
        {
            var status = body["disposition-status"] as string;
            foreach (var token in tokens)
            {
                var settlement = status switch
                {
                    "completed" => surface.broker.Complete(token),
                    "abandoned" => surface.broker.Abandon(token),
                    "suspended" => surface.broker.DeadLetter(token, body["deadletter-reason"] as string, body["deadletter-description"] as string),
                    _ => Settlement.NotImplemented,
                };
                if (settlement == Settlement.LockLost)
                {
                    Status(response, 410, (string)LockLost, "The lock supplied is invalid.");
                    return;
                }
                if (settlement == Settlement.NotImplemented)
                {
                    Status(response, 501, (string)NotImplemented, $"The test endpoint does not implement disposition-status '{status}' or properties-to-modify.");
                    return;
                }
            }
            Status(response, 200, null, "OK");
            response.BodySection = new AmqpValue { Value = new Map() };
        }

        private static void Status(Message response, int code, string? condition, string description)
        {
            response.ApplicationProperties["statusCode"] = code;
            response.ApplicationProperties["statusDescription"] = description;
            if (condition is not null)
            {
                response.ApplicationProperties["errorCondition"] = new Symbol(condition);
            }
        }
    }
}
