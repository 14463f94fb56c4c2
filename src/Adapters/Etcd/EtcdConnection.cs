using System.Runtime.CompilerServices;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Queue.Contracts.Ports;

namespace Queue.Adapters.Etcd;

/// <summary>
/// The etcd cluster through dotnet-etcd (gRPC): one channel over every endpoint, load-balanced by gRPC,
/// so a call that fails on one member is tried again on the next. Each try has a deadline (a paused
/// member must not hang us); a call keeps trying for <see cref="EtcdOptions.RetryTimeout"/>, then reports
/// the port's <see cref="BrokerUnavailableException"/>. Watches resume after their last revision on any
/// member; HTTP/2 pings find a stalled connection within seconds.
/// </summary>
public sealed partial class EtcdConnection : IDisposable
{
    private readonly dotnet_etcd.EtcdClient client;
    private readonly ILogger<EtcdConnection> logger;

    public EtcdConnection(IOptions<EtcdOptions> options, ILogger<EtcdConnection> logger)
    {
        Options = options.Value;
        this.logger = logger;
        var endpoints = Options.EndpointUris();
        if (endpoints.Count == 0)
        {
            throw new OptionsValidationException(EtcdOptions.Section, typeof(EtcdOptions), ["Queue:Etcd:Endpoints names no endpoint."]);
        }
        if (Options.Problems().ToList() is { Count: > 0 } problems)
        {
            throw new OptionsValidationException(EtcdOptions.Section, typeof(EtcdOptions), problems);
        }
        var tls = Options.UseTls ? TlsOptions(Options) : null;
        client = new dotnet_etcd.EtcdClient(string.Join(',', endpoints.Select(static u => u.GetLeftPart(UriPartial.Authority))), configureChannelOptions: channel =>
        {
            channel.HttpHandler = new SocketsHttpHandler
            {
                EnableMultipleHttp2Connections = true,
                // Not the per-call deadline: a connection that takes longer than one call (a loaded node, a
                // member just started) still completes in the background and serves the next call, where a
                // connect cut at the deadline would fail again every time.
                ConnectTimeout = Options.RequestTimeout > TimeSpan.FromSeconds(5) ? Options.RequestTimeout : TimeSpan.FromSeconds(5),
                // A member that stops answering (SIGSTOP, a partition) breaks its streams within seconds.
                KeepAlivePingDelay = TimeSpan.FromSeconds(2),
                KeepAlivePingTimeout = TimeSpan.FromSeconds(2),
                KeepAlivePingPolicy = HttpKeepAlivePingPolicy.Always,
                SslOptions = tls ?? new System.Net.Security.SslClientAuthenticationOptions(),
            };
            // A member that was down (a restart, etcd started after us) is tried again within 2 s, not after
            // gRPC's default backoff of up to 120 s, which kept a coordinator waiting long after etcd was back.
            channel.InitialReconnectBackoff = TimeSpan.FromMilliseconds(500);
            channel.MaxReconnectBackoff = TimeSpan.FromSeconds(2);
            // The library's balancer keeps only host and port of each endpoint: TLS is chosen here, not by the scheme.
            if (tls is not null)
            {
                channel.Credentials = ChannelCredentials.SecureSsl;
            }
        });
        if (!string.IsNullOrEmpty(Options.Username))
        {
            // The library authenticates on first use and sends the token with every call (unary and streams).
            client.SetCredentials(Options.Username, Options.Password!);
        }
        Connection = client.GetConnection();
    }

    public EtcdOptions Options { get; }

    /// <summary>The members' CA (instead of the system's) and this client's certificate, from PEM files.</summary>
    private static System.Net.Security.SslClientAuthenticationOptions TlsOptions(EtcdOptions options)
    {
        var ssl = new System.Net.Security.SslClientAuthenticationOptions();
        if (options.CaFile is { } ca)
        {
            var policy = new System.Security.Cryptography.X509Certificates.X509ChainPolicy
            {
                TrustMode = System.Security.Cryptography.X509Certificates.X509ChainTrustMode.CustomRootTrust,
                RevocationMode = System.Security.Cryptography.X509Certificates.X509RevocationMode.NoCheck,
            };
            policy.CustomTrustStore.ImportFromPemFile(ca);
            ssl.CertificateChainPolicy = policy;
        }
        if (options.ClientCertificateFile is { } certificate)
        {
            ssl.ClientCertificates = [System.Security.Cryptography.X509Certificates.X509Certificate2.CreateFromPemFile(certificate, options.ClientKeyFile)];
        }
        return ssl;
    }

    /// <summary>
    /// Proves at start that this process may use etcd: the user name and password are accepted, and the
    /// user may read under <c>/queue/</c>, over TLS if configured. Returns null when it may, else what is
    /// wrong in words an operator can act on; throws <see cref="BrokerUnavailableException"/> when etcd
    /// cannot be reached at all (then the caller waits and asks again).
    /// </summary>
    public async Task<string?> CheckAccessAsync(CancellationToken cancellationToken)
    {
        try
        {
            if (!string.IsNullOrEmpty(Options.Username))
            {
                await Connection.AuthClient.AuthenticateAsync(new AuthenticateRequest { Name = Options.Username, Password = Options.Password },
                    deadline: DateTime.UtcNow + Options.RequestTimeout, cancellationToken: cancellationToken);
            }
            await RangeAsync(new RangeRequest { Key = ByteString.CopyFromUtf8("/queue/"), RangeEnd = PrefixEnd(ByteString.CopyFromUtf8("/queue/")), Limit = 1, KeysOnly = true }, cancellationToken);
            return null;
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.InvalidArgument && e.Status.Detail.Contains("authentication failed", StringComparison.Ordinal))
        {
            return $"etcd at {EndpointList} refused the user name or password ({EtcdOptions.Section}:Username, Password).";
        }
        catch (Exception e) when (e is RpcException or EtcdException && Describe(e) is { } refused)
        {
            return $"etcd at {EndpointList} refused access: {refused}.";
        }
        catch (RpcException e) when (TlsFailure(e) is { } tls)
        {
            return $"The TLS connection to etcd at {EndpointList} failed ({EtcdOptions.Section}:CaFile, ClientCertificateFile): {tls}";
        }
        catch (BrokerUnavailableException e) when (TlsFailure(e) is { } tls)
        {
            return $"The TLS connection to etcd at {EndpointList} failed ({EtcdOptions.Section}:CaFile, ClientCertificateFile): {tls}";
        }
        catch (RpcException e) when (IsTransient(e.StatusCode))
        {
            throw new BrokerUnavailableException("etcd", $"unreachable at {EndpointList}: {e.Status.Detail}", e);
        }
    }

    /// <summary>An answer from etcd that no retry will change: no credentials where auth is on, a missing permission.</summary>
    private static string? Describe(Exception e)
    {
        var (code, detail) = e switch
        {
            RpcException rpc => (rpc.StatusCode, rpc.Status.Detail),
            EtcdException etcd => (etcd.Code, etcd.Message),
            _ => (StatusCode.OK, ""),
        };
        return code switch
        {
            StatusCode.PermissionDenied => $"the user may not read keys under /queue/ ({detail})",
            StatusCode.InvalidArgument when detail.Contains("user name is empty", StringComparison.Ordinal) =>
                $"etcd has authentication on; set {EtcdOptions.Section}:Username and Password",
            StatusCode.Unauthenticated => $"the credentials were not accepted ({detail})",
            _ => null,
        };
    }

    /// <summary>The certificate problem under a failed connect, if that is what it was.</summary>
    private static string? TlsFailure(Exception e)
    {
        for (Exception? inner = e; inner is not null; inner = inner.InnerException ?? (inner as RpcException)?.Status.DebugException)
        {
            if (inner is System.Security.Authentication.AuthenticationException)
            {
                return inner.Message;
            }
        }
        return null;
    }

    /// <summary>The generated gRPC clients (KV, Lease, Watch, Election) on the shared channel.</summary>
    public dotnet_etcd.interfaces.IConnection Connection { get; }

    public string EndpointList => string.Join(", ", Options.EndpointUris());

    public void Dispose() => client.Dispose();

    public Task<RangeResponse> RangeAsync(RangeRequest request, CancellationToken cancellationToken) =>
        CallAsync("range", (deadline, ct) => Connection.KVClient.RangeAsync(request, deadline: deadline, cancellationToken: ct).ResponseAsync, cancellationToken);

    public Task<TxnResponse> TxnAsync(TxnRequest request, CancellationToken cancellationToken) =>
        CallAsync("txn", (deadline, ct) => Connection.KVClient.TxnAsync(request, deadline: deadline, cancellationToken: ct).ResponseAsync, cancellationToken);

    /// <summary>etcd's compaction of the key space's history before <paramref name="revision"/> (logical: the space is reused, not given back).</summary>
    public Task<CompactionResponse> CompactAsync(long revision, CancellationToken cancellationToken) =>
        CallAsync("compact", (deadline, ct) => Connection.KVClient.CompactAsync(new CompactionRequest { Revision = revision }, deadline: deadline, cancellationToken: ct).ResponseAsync, cancellationToken);

    public async Task<long> GrantLeaseAsync(TimeSpan ttl, CancellationToken cancellationToken)
    {
        var response = await CallAsync("lease grant", (deadline, ct) =>
            Connection.LeaseClient.LeaseGrantAsync(new LeaseGrantRequest { TTL = (long)Math.Ceiling(ttl.TotalSeconds) }, deadline: deadline, cancellationToken: ct).ResponseAsync, cancellationToken);
        return response.ID;
    }

    /// <summary>Renews a lease once; returns its remaining TTL in seconds, 0 when the lease is gone.</summary>
    public async Task<long> KeepAliveOnceAsync(long leaseId, CancellationToken cancellationToken)
    {
        var response = await CallAsync("lease keep-alive", async (deadline, ct) =>
        {
            using var stream = Connection.LeaseClient.LeaseKeepAlive(deadline: deadline, cancellationToken: ct);
            await stream.RequestStream.WriteAsync(new LeaseKeepAliveRequest { ID = leaseId }, ct);
            await stream.RequestStream.CompleteAsync();
            return await stream.ResponseStream.MoveNext(ct) ? stream.ResponseStream.Current : new LeaseKeepAliveResponse();
        }, cancellationToken);
        return response.TTL;
    }

    public async Task RevokeLeaseAsync(long leaseId, CancellationToken cancellationToken)
    {
        try
        {
            await CallAsync("lease revoke", (deadline, ct) =>
                Connection.LeaseClient.LeaseRevokeAsync(new LeaseRevokeRequest { ID = leaseId }, deadline: deadline, cancellationToken: ct).ResponseAsync, cancellationToken);
        }
        catch (EtcdException e) when (e.Code == StatusCode.NotFound)
        {
            // Already expired or revoked.
        }
    }

    /// <summary>
    /// Every change under <paramref name="prefix"/> from <paramref name="startRevision"/> on, in revision
    /// order. A broken stream (a member died or stalled) is opened again, on whichever member answers,
    /// from the revision after the last one seen, so no change is lost or repeated.
    /// </summary>
    public async IAsyncEnumerable<(long Revision, Mvccpb.Event Event)> WatchAsync(ByteString prefix, long startRevision,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var next = startRevision;
        var rangeEnd = PrefixEnd(prefix);
        while (!cancellationToken.IsCancellationRequested)
        {
            var events = new List<(long, Mvccpb.Event)>();
            using var stream = Connection.WatchClient.Watch(cancellationToken: cancellationToken);
            var broken = false;
            try
            {
                await stream.RequestStream.WriteAsync(new WatchRequest
                {
                    CreateRequest = new WatchCreateRequest { Key = prefix, RangeEnd = rangeEnd, StartRevision = next, ProgressNotify = true },
                }, cancellationToken);
            }
            catch (RpcException e) when (IsTransient(e.StatusCode))
            {
                broken = true;
                LogWatchBroken(logger, e.Status.Detail);
            }
            while (!broken)
            {
                try
                {
                    if (!await stream.ResponseStream.MoveNext(cancellationToken))
                    {
                        break;
                    }
                }
                catch (RpcException e) when (IsTransient(e.StatusCode) || e.StatusCode == StatusCode.Cancelled && !cancellationToken.IsCancellationRequested)
                {
                    LogWatchBroken(logger, e.Status.Detail);
                    break;
                }
                var response = stream.ResponseStream.Current;
                if (response.CompactRevision > 0)
                {
                    throw new EtcdException($"Watch start revision {next} was compacted (oldest is {response.CompactRevision}).", StatusCode.OutOfRange);
                }
                events.Clear();
                foreach (var change in response.Events)
                {
                    events.Add((change.Kv.ModRevision, change));
                }
                foreach (var item in events)
                {
                    next = item.Item1 + 1;
                    yield return item;
                }
            }
            // Reconnect through the balancer (another member if this one is gone), after a short pause.
            await Task.Delay(TimeSpan.FromMilliseconds(200), cancellationToken);
        }
    }

    public static ByteString PrefixEnd(ByteString prefix)
    {
        var end = prefix.ToByteArray();
        for (var i = end.Length - 1; i >= 0; i--)
        {
            if (end[i] < 0xff)
            {
                end[i]++;
                return ByteString.CopyFrom(end, 0, i + 1);
            }
        }
        return ByteString.CopyFrom(0); // the whole key space
    }

    /// <summary>Runs one unary call with a per-try deadline, trying again (on the next member) until the retry window closes.</summary>
    public async Task<T> CallAsync<T>(string what, Func<DateTime, CancellationToken, Task<T>> call, CancellationToken cancellationToken)
    {
        var giveUp = DateTime.UtcNow + Options.RetryTimeout;
        var delay = TimeSpan.FromMilliseconds(50);
        var renewedToken = false;
        for (var attempt = 1; ; attempt++)
        {
            string failure;
            Exception last;
            try
            {
                return await call(DateTime.UtcNow + Options.RequestTimeout, cancellationToken);
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.Unauthenticated && !renewedToken && !string.IsNullOrEmpty(Options.Username))
            {
                // The token expired or the member that issued it restarted: the library has dropped it, so
                // this try authenticates afresh. Once only, so wrong credentials are not retried for ever.
                renewedToken = true;
                failure = e.Status.Detail;
                last = e;
            }
            catch (RpcException e) when (IsTransient(e.StatusCode) && !cancellationToken.IsCancellationRequested)
            {
                failure = e.StatusCode == StatusCode.DeadlineExceeded ? $"no answer within {Options.RequestTimeout.TotalSeconds:0.#} s" : e.Status.Detail;
                last = e;
            }
            catch (RpcException e) when (!cancellationToken.IsCancellationRequested || e.StatusCode != StatusCode.Cancelled)
            {
                throw new EtcdException($"etcd refused {what}: {e.Status.Detail}", e.StatusCode);
            }
            catch (Exception e) when (e is OperationCanceledException or HttpRequestException or IOException && !cancellationToken.IsCancellationRequested)
            {
                // A connect that timed out or a reset below gRPC: the same as Unavailable.
                failure = e.Message;
                last = e;
            }
            LogCallFailed(logger, what, attempt, failure);
            if (DateTime.UtcNow + delay > giveUp)
            {
                throw new BrokerUnavailableException("etcd",
                    $"unreachable at {EndpointList} after {attempt} attempts over {Options.RetryTimeout.TotalSeconds:0.#} s: {failure}", last);
            }
            await Task.Delay(delay, cancellationToken);
            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.FromSeconds(1).Ticks));
        }
    }

    /// <summary>Unavailable, deadline exceeded and transport faults are worth another member; leader changes show as Unavailable too.</summary>
    private static bool IsTransient(StatusCode code) => code is StatusCode.Unavailable or StatusCode.DeadlineExceeded or StatusCode.Internal or StatusCode.Unknown;

    [LoggerMessage(3000, LogLevel.Warning, "etcd {What} failed (attempt {Attempt}), trying again: {Error}")]
    private static partial void LogCallFailed(ILogger logger, string what, int attempt, string error);

    [LoggerMessage(3001, LogLevel.Warning, "etcd watch broke, resuming on another member: {Error}")]
    private static partial void LogWatchBroken(ILogger logger, string error);
}

/// <summary>etcd answered with an error that retrying will not fix (<see cref="Code"/> is the gRPC status).</summary>
public sealed class EtcdException(string message, StatusCode code) : Exception(message)
{
    public StatusCode Code { get; } = code;
}
