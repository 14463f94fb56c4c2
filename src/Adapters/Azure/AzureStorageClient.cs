using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Xml.Linq;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Queue.Contracts.Ports;

namespace Queue.Adapters.Azure;

/// <summary>
/// A small Azure Storage REST client (the SDK does not restore here): requests are signed with
/// Shared Key (or carry a SAS), retried with back-off on 500/503 and time-outs, and failures name
/// the service's error code and request id.
/// </summary>
public sealed partial class AzureStorageClient : IDisposable
{
    public const string ApiVersion = "2021-08-06";
    private const int MaxAttempts = 4;
    private readonly HttpClient http;
    private readonly ILogger logger;

    public AzureStorageClient(IOptions<AzureStorageOptions> options, ILogger<AzureStorageClient> logger)
    {
        Options = options.Value;
        Account = Options.Resolve();
        this.logger = logger;
        http = new HttpClient(new SocketsHttpHandler { PooledConnectionIdleTimeout = TimeSpan.FromSeconds(30) }) { Timeout = Options.RequestTimeout };
    }

    public AzureStorageOptions Options { get; }

    public AzureAccount Account { get; }

    public void Dispose() => http.Dispose();

    /// <summary>Sends a request built by <paramref name="create"/> (again for each retry) and returns the response; the caller disposes it.</summary>
    /// <param name="accept">Status codes the caller handles itself besides 2xx (e.g. 404, 409).</param>
    public async Task<HttpResponseMessage> SendAsync(Func<HttpRequestMessage> create, CancellationToken cancellationToken,
        HttpCompletionOption completion = HttpCompletionOption.ResponseContentRead, params HttpStatusCode[] accept)
    {
        var delay = TimeSpan.FromMilliseconds(200);
        for (var attempt = 1; ; attempt++)
        {
            using var request = create();
            Sign(request);
            HttpResponseMessage response;
            try
            {
                response = await http.SendAsync(request, completion, cancellationToken);
            }
            catch (Exception e) when (e is HttpRequestException || (e is TaskCanceledException && !cancellationToken.IsCancellationRequested))
            {
                if (attempt >= MaxAttempts)
                {
                    throw new BrokerUnavailableException("Azure Storage", $"{request.Method} {request.RequestUri!.AbsolutePath} failed {attempt} times: {e.Message}", e);
                }
                LogRetry(logger, request.Method.Method, request.RequestUri!.AbsolutePath, attempt, e.Message);
                await Task.Delay(delay, cancellationToken);
                delay *= 2;
                continue;
            }
            if (response.IsSuccessStatusCode || Array.IndexOf(accept, response.StatusCode) >= 0)
            {
                return response;
            }
            if (attempt < MaxAttempts && response.StatusCode is HttpStatusCode.InternalServerError or HttpStatusCode.ServiceUnavailable or HttpStatusCode.RequestTimeout)
            {
                LogRetry(logger, request.Method.Method, request.RequestUri!.AbsolutePath, attempt, response.StatusCode.ToString());
                response.Dispose();
                await Task.Delay(delay, cancellationToken);
                delay *= 2;
                continue;
            }
            using (response)
            {
                var error = await ErrorAsync(request, response, cancellationToken);
                throw IsServerFault(response.StatusCode)
                    ? new BrokerUnavailableException("Azure Storage", $"{request.Method} {request.RequestUri!.AbsolutePath} failed {attempt} times: {error.Message}", error)
                    : error;
            }
        }
    }

    /// <summary>The synchronous twin of <see cref="SendAsync"/>, for stream writes that must upload a full block in place.</summary>
    public HttpResponseMessage Send(Func<HttpRequestMessage> create)
    {
        var delay = TimeSpan.FromMilliseconds(200);
        for (var attempt = 1; ; attempt++)
        {
            using var request = create();
            Sign(request);
            HttpResponseMessage response;
            try
            {
                response = http.Send(request);
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                if (attempt >= MaxAttempts)
                {
                    throw new BrokerUnavailableException("Azure Storage", $"{request.Method} {request.RequestUri!.AbsolutePath} failed {attempt} times: {e.Message}", e);
                }
                Thread.Sleep(delay);
                delay *= 2;
                continue;
            }
            if (response.IsSuccessStatusCode)
            {
                return response;
            }
            if (attempt < MaxAttempts && response.StatusCode is HttpStatusCode.InternalServerError or HttpStatusCode.ServiceUnavailable)
            {
                response.Dispose();
                Thread.Sleep(delay);
                delay *= 2;
                continue;
            }
            using (response)
            {
                var error = ErrorAsync(request, response, CancellationToken.None).GetAwaiter().GetResult();
                throw IsServerFault(response.StatusCode)
                    ? new BrokerUnavailableException("Azure Storage", $"{request.Method} {request.RequestUri!.AbsolutePath} failed {attempt} times: {error.Message}", error)
                    : error;
            }
        }
    }

    private static bool IsServerFault(HttpStatusCode status) =>
        status is HttpStatusCode.InternalServerError or HttpStatusCode.ServiceUnavailable or HttpStatusCode.RequestTimeout or HttpStatusCode.GatewayTimeout or HttpStatusCode.BadGateway;

    public static async Task<AzureStorageException> ErrorAsync(HttpRequestMessage request, HttpResponseMessage response, CancellationToken cancellationToken)
    {
        var body = request.Method == HttpMethod.Head ? "" : await response.Content.ReadAsStringAsync(cancellationToken);
        string? code = response.Headers.TryGetValues("x-ms-error-code", out var codes) ? codes.FirstOrDefault() : null;
        string? message = null;
        try
        {
            var xml = XDocument.Parse(body);
            code ??= xml.Root?.Element("Code")?.Value;
            message = xml.Root?.Element("Message")?.Value?.Split('\n')[0];
        }
        catch (System.Xml.XmlException)
        {
        }
        var requestId = response.Headers.TryGetValues("x-ms-request-id", out var ids) ? ids.FirstOrDefault() : null;
        var hint = code == "AuthenticationFailed" || response.StatusCode == HttpStatusCode.Forbidden
            ? " Check the account name and key (Queue:Azure)."
            : "";
        return new AzureStorageException(
            $"Azure Storage {request.Method} {request.RequestUri!.AbsolutePath} failed: {(int)response.StatusCode} {code ?? response.ReasonPhrase}{(message is null ? "" : $": {message}")} (request id {requestId ?? "none"}).{hint}",
            response.StatusCode, code);
    }

    /// <summary>Adds the date, version and Shared Key signature (or the SAS) to a request.</summary>
    private void Sign(HttpRequestMessage request)
    {
        request.Headers.Remove("x-ms-date");
        request.Headers.Remove("x-ms-version");
        request.Headers.Add("x-ms-date", DateTimeOffset.UtcNow.ToString("R", System.Globalization.CultureInfo.InvariantCulture));
        request.Headers.Add("x-ms-version", ApiVersion);
        if (Account.Key is null)
        {
            var uri = request.RequestUri!;
            request.RequestUri = new Uri(uri + (string.IsNullOrEmpty(uri.Query) ? "?" : "&") + Account.Sas);
            return;
        }
        var content = request.Content?.Headers;
        var length = content?.ContentLength;
        var text = new StringBuilder()
            .Append(request.Method.Method).Append('\n')
            .Append(Joined(content?.ContentEncoding)).Append('\n')
            .Append(Joined(content?.ContentLanguage)).Append('\n')
            .Append(length is null or 0 ? "" : length.Value.ToString(System.Globalization.CultureInfo.InvariantCulture)).Append('\n')
            .Append(content?.ContentMD5 is { } md5 ? Convert.ToBase64String(md5) : "").Append('\n')
            .Append(content?.ContentType?.ToString() ?? "").Append('\n')
            .Append('\n') // Date: x-ms-date is used instead
            .Append(Header(request, "If-Modified-Since")).Append('\n')
            .Append(Header(request, "If-Match")).Append('\n')
            .Append(Header(request, "If-None-Match")).Append('\n')
            .Append(Header(request, "If-Unmodified-Since")).Append('\n')
            .Append(Header(request, "Range")).Append('\n');
        var msHeaders = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var (name, values) in request.Headers)
        {
            if (name.StartsWith("x-ms-", StringComparison.OrdinalIgnoreCase))
            {
                msHeaders[name.ToLowerInvariant()] = string.Join(",", values).Trim();
            }
        }
        foreach (var (name, value) in msHeaders)
        {
            text.Append(name).Append(':').Append(value).Append('\n');
        }
        var requestUri = request.RequestUri!;
        text.Append('/').Append(Account.Name).Append(requestUri.AbsolutePath);
        var query = new SortedDictionary<string, List<string>>(StringComparer.Ordinal);
        foreach (var pair in requestUri.Query.TrimStart('?').Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var eq = pair.IndexOf('=');
            var name = Uri.UnescapeDataString(eq < 0 ? pair : pair[..eq]).ToLowerInvariant();
            var value = eq < 0 ? "" : Uri.UnescapeDataString(pair[(eq + 1)..]);
            if (!query.TryGetValue(name, out var list))
            {
                query[name] = list = [];
            }
            list.Add(value);
        }
        foreach (var (name, values) in query)
        {
            values.Sort(StringComparer.Ordinal);
            text.Append('\n').Append(name).Append(':').Append(string.Join(",", values));
        }
        var signature = Convert.ToBase64String(HMACSHA256.HashData(Account.Key, Encoding.UTF8.GetBytes(text.ToString())));
        request.Headers.TryAddWithoutValidation("Authorization", $"SharedKey {Account.Name}:{signature}");
    }

    private static string Joined(ICollection<string>? values) => values is null || values.Count == 0 ? "" : string.Join(",", values);

    private static string Header(HttpRequestMessage request, string name) =>
        request.Headers.TryGetValues(name, out var values) ? string.Join(",", values) : "";

    [LoggerMessage(4000, LogLevel.Warning, "Azure Storage {Method} {Path} failed (attempt {Attempt}), retrying: {Error}")]
    private static partial void LogRetry(ILogger logger, string method, string path, int attempt, string error);
}

/// <summary>Azure Storage refused a request; <see cref="ErrorCode"/> is the service's code (e.g. BlobAlreadyExists).</summary>
public sealed class AzureStorageException(string message, HttpStatusCode status, string? errorCode) : Exception(message)
{
    public HttpStatusCode Status { get; } = status;

    public string? ErrorCode { get; } = errorCode;
}
