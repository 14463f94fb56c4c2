using System.Net;
using System.Net.Http.Headers;
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

using Queue.Contracts.Ports;

namespace Queue.Adapters.Etcd;

/// <summary>
/// A small etcd v3 client over the JSON gateway (the gRPC client packages do not restore here).
/// Calls go to one member at a time; on a connection failure, a time-out or an "unavailable"
/// answer they move to the next member and retry with back-off until <see cref="EtcdOptions.RetryTimeout"/>.
/// </summary>
public sealed partial class EtcdClient : IDisposable
{
    private readonly HttpClient http;
    private readonly IReadOnlyList<Uri> endpoints;
    private readonly EtcdOptions options;
    private readonly ILogger logger;
    private int current;

    public EtcdClient(IOptions<EtcdOptions> options, ILogger<EtcdClient> logger)
    {
        this.options = options.Value;
        this.logger = logger;
        endpoints = this.options.EndpointUris();
        if (endpoints.Count == 0)
        {
            throw new OptionsValidationException(EtcdOptions.Section, typeof(EtcdOptions), ["Queue:Etcd:Endpoints names no endpoint."]);
        }
        http = new HttpClient(new SocketsHttpHandler { ConnectTimeout = this.options.RequestTimeout, PooledConnectionIdleTimeout = TimeSpan.FromSeconds(30) })
        {
            Timeout = Timeout.InfiniteTimeSpan,
        };
    }

    public EtcdOptions Options => options;

    /// <summary>The member currently used.</summary>
    public Uri CurrentEndpoint => endpoints[Volatile.Read(ref current) % endpoints.Count];

    public void Dispose() => http.Dispose();

    /// <summary>The smallest key greater than every key starting with <paramref name="prefix"/>.</summary>
    public static byte[] PrefixEnd(byte[] prefix)
    {
        var end = (byte[])prefix.Clone();
        for (var i = end.Length - 1; i >= 0; i--)
        {
            if (end[i] < 0xFF)
            {
                end[i]++;
                return end[..(i + 1)];
            }
        }
        return [0]; // all keys
    }

    internal Task<RangeResponse> RangeAsync(RangeRequest request, CancellationToken cancellationToken) =>
        CallAsync("v3/kv/range", request, EtcdJsonContext.Default.RangeRequest, EtcdJsonContext.Default.RangeResponse, cancellationToken);

    internal Task<TxnResponse> TxnAsync(TxnRequest request, CancellationToken cancellationToken) =>
        CallAsync("v3/kv/txn", request, EtcdJsonContext.Default.TxnRequest, EtcdJsonContext.Default.TxnResponse, cancellationToken);

    public async Task<long> GrantLeaseAsync(TimeSpan ttl, CancellationToken cancellationToken)
    {
        var response = await CallAsync("v3/lease/grant", new LeaseRequest { Ttl = (long)Math.Ceiling(ttl.TotalSeconds) },
            EtcdJsonContext.Default.LeaseRequest, EtcdJsonContext.Default.LeaseResponse, cancellationToken);
        return response.Id;
    }

    /// <summary>Renews a lease once; returns its remaining TTL in seconds, 0 when the lease is gone.</summary>
    public async Task<long> KeepAliveOnceAsync(long leaseId, CancellationToken cancellationToken)
    {
        var response = await CallAsync("v3/lease/keepalive", new LeaseRequest { Id = leaseId },
            EtcdJsonContext.Default.LeaseRequest, EtcdJsonContext.Default.KeepAliveResponse, cancellationToken);
        return response.Result?.Ttl ?? 0;
    }

    public async Task RevokeLeaseAsync(long leaseId, CancellationToken cancellationToken)
    {
        try
        {
            await CallAsync("v3/lease/revoke", new LeaseRequest { Id = leaseId },
                EtcdJsonContext.Default.LeaseRequest, EtcdJsonContext.Default.Empty, cancellationToken);
        }
        catch (EtcdException e) when (e.Code == 5)
        {
            // Not found: already expired or revoked.
        }
    }

    /// <summary>
    /// Watches keys under a prefix from a revision, reconnecting (to any member) after a broken stream
    /// and resuming after the last revision seen, so no event is lost or repeated.
    /// </summary>
    internal async IAsyncEnumerable<(long Revision, WatchEvent Event)> WatchAsync(byte[] prefix, long startRevision,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var next = startRevision;
        while (!cancellationToken.IsCancellationRequested)
        {
            var body = new WatchRequest { CreateRequest = new WatchCreateRequest { Key = prefix, RangeEnd = PrefixEnd(prefix), StartRevision = next } };
            HttpResponseMessage? response = null;
            Stream? stream = null;
            try
            {
                var request = new HttpRequestMessage(HttpMethod.Post, new Uri(CurrentEndpoint, "v3/watch"))
                {
                    Content = JsonContent(body, EtcdJsonContext.Default.WatchRequest),
                };
                response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
                response.EnsureSuccessStatusCode();
                stream = await response.Content.ReadAsStreamAsync(cancellationToken);
            }
            catch (Exception e) when (e is HttpRequestException or IOException || (e is OperationCanceledException && !cancellationToken.IsCancellationRequested))
            {
                response?.Dispose();
                Log.WatchBroken(logger, CurrentEndpoint.ToString(), e.Message);
                Rotate();
                await Task.Delay(TimeSpan.FromMilliseconds(200), cancellationToken);
                continue;
            }
            using (response)
            using (var reader = new StreamReader(stream))
            {
                while (true)
                {
                    string? line;
                    try
                    {
                        line = await reader.ReadLineAsync(cancellationToken);
                    }
                    catch (Exception e) when (e is HttpRequestException or IOException)
                    {
                        Log.WatchBroken(logger, CurrentEndpoint.ToString(), e.Message);
                        break;
                    }
                    if (line is null)
                    {
                        break;
                    }
                    if (line.Length == 0)
                    {
                        continue;
                    }
                    var result = JsonSerializer.Deserialize(line, EtcdJsonContext.Default.WatchResponse)?.Result;
                    if (result is null)
                    {
                        continue;
                    }
                    if (result.CompactRevision > 0)
                    {
                        throw new EtcdException($"Watch start revision {next} was compacted (oldest is {result.CompactRevision}).", 11);
                    }
                    foreach (var e in result.Events ?? [])
                    {
                        var revision = e.Kv?.ModRevision ?? 0;
                        next = Math.Max(next, revision + 1);
                        yield return (revision, e);
                    }
                }
            }
            Rotate();
        }
    }

    /// <summary>Sends one call, failing over between members until the retry time runs out.</summary>
    private async Task<TResponse> CallAsync<TRequest, TResponse>(string path, TRequest body, JsonTypeInfo<TRequest> requestType,
        JsonTypeInfo<TResponse> responseType, CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow + options.RetryTimeout;
        var delay = TimeSpan.FromMilliseconds(50);
        var attempt = 0;
        while (true)
        {
            var endpoint = CurrentEndpoint;
            string failure;
            using (var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
            {
                timeout.CancelAfter(options.RequestTimeout);
                try
                {
                    using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(endpoint, path)) { Content = JsonContent(body, requestType) };
                    using var response = await http.SendAsync(request, timeout.Token);
                    var bytes = await response.Content.ReadAsByteArrayAsync(timeout.Token);
                    if (response.IsSuccessStatusCode)
                    {
                        return JsonSerializer.Deserialize(bytes, responseType) ?? throw new EtcdException($"etcd answered {path} with nothing.", 0);
                    }
                    var error = TryReadError(bytes);
                    if (!IsRetryable(response.StatusCode, error))
                    {
                        throw new EtcdException($"etcd refused {path}: {error?.Message ?? response.StatusCode.ToString()}", error?.Code ?? 0);
                    }
                    failure = error?.Message ?? response.StatusCode.ToString();
                }
                catch (Exception e) when (e is HttpRequestException or IOException || (e is OperationCanceledException && !cancellationToken.IsCancellationRequested))
                {
                    failure = e is OperationCanceledException ? $"no answer within {options.RequestTimeout.TotalSeconds:0.#} s" : e.Message;
                }
            }
            attempt++;
            Log.CallFailed(logger, path, endpoint.ToString(), attempt, failure);
            if (DateTime.UtcNow + delay > deadline)
            {
                throw new BrokerUnavailableException("etcd",
                    $"unreachable at {string.Join(", ", endpoints)} after {attempt} attempts over {options.RetryTimeout.TotalSeconds:0.#} s: {failure}");
            }
            Rotate();
            await Task.Delay(delay, cancellationToken);
            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.FromSeconds(1).Ticks));
        }
    }

    private void Rotate()
    {
        if (endpoints.Count > 1)
        {
            Interlocked.Increment(ref current);
        }
    }

    private static ByteArrayContent JsonContent<T>(T body, JsonTypeInfo<T> type)
    {
        var content = new ByteArrayContent(JsonSerializer.SerializeToUtf8Bytes(body, type));
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        return content;
    }

    private static ErrorResponse? TryReadError(byte[] bytes)
    {
        try
        {
            return JsonSerializer.Deserialize(bytes, EtcdJsonContext.Default.ErrorResponse);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>Unavailable (14), deadline exceeded (4), leader changes and server time-outs are worth another member.</summary>
    private static bool IsRetryable(HttpStatusCode status, ErrorResponse? error) =>
        error is null
            ? (int)status >= 500
            : error.Code is 4 or 14 || (error.Message ?? "").Contains("leader", StringComparison.OrdinalIgnoreCase)
              || (error.Message ?? "").Contains("timed out", StringComparison.OrdinalIgnoreCase);

    private static partial class Log
    {
        [LoggerMessage(3000, LogLevel.Warning, "etcd call {Path} to {Endpoint} failed (attempt {Attempt}), trying again: {Error}")]
        public static partial void CallFailed(ILogger logger, string path, string endpoint, int attempt, string error);

        [LoggerMessage(3001, LogLevel.Warning, "etcd watch on {Endpoint} broke, reconnecting: {Error}")]
        public static partial void WatchBroken(ILogger logger, string endpoint, string error);
    }
}

/// <summary>etcd answered with an error (<see cref="Code"/> is the gRPC status code).</summary>
public class EtcdException(string message, int code) : Exception(message)
{
    public int Code { get; } = code;
}

