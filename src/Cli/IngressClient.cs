using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Queue.Contracts;
using Queue.Contracts.IO;
using Queue.Contracts.Jobs;

namespace Queue.Cli;

/// <summary>Talks to the ingress over HTTP and turns every failure into a message for the user.</summary>
public sealed class IngressClient : IDisposable
{
    private readonly HttpClient http;

    public IngressClient(string url, string? apiKey)
    {
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
        {
            throw new CliException($"'{url}' is not an http(s) URL of the ingress (set --url or QUEUE_URL).", 2);
        }
        http = new HttpClient { BaseAddress = uri, Timeout = Timeout.InfiniteTimeSpan };
        if (!string.IsNullOrEmpty(apiKey) && Queue.Hosting.Security.ApiKeyAuthenticationHandler.LooksLikeJwt(apiKey))
        {
            // An OAuth 2.0 access token (e.g. from `az account get-access-token`) goes as a bearer token.
            http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", apiKey);
        }
        else if (!string.IsNullOrEmpty(apiKey))
        {
            http.DefaultRequestHeaders.Add("X-Api-Key", apiKey);
        }
    }

    public Uri BaseAddress => http.BaseAddress!;

    public void Dispose() => http.Dispose();

    public async Task<string> SubmitAsync(JobRequest request, CancellationToken ct)
    {
        using var response = await SendAsync(() => new HttpRequestMessage(HttpMethod.Post, "/jobs") { Content = JsonContent.Create(request, QueueJsonContext.Default.JobRequest) }, ct);
        return (await response.Content.ReadFromJsonAsync(QueueJsonContext.Default.JobCreated, ct))!.Id;
    }

    public async Task<JobDetails> GetAsync(string id, CancellationToken ct)
    {
        using var response = await SendAsync(() => new HttpRequestMessage(HttpMethod.Get, $"/jobs/{Uri.EscapeDataString(id)}?tasks=true"), ct);
        return (await response.Content.ReadFromJsonAsync(QueueJsonContext.Default.JobDetails, ct))!;
    }

    /// <summary>A job's spec and status without its tasks: cheap to poll, whatever the job's size.</summary>
    public async Task<JobView> GetViewAsync(string id, CancellationToken ct)
    {
        using var response = await SendAsync(() => new HttpRequestMessage(HttpMethod.Get, $"/jobs/{Uri.EscapeDataString(id)}"), ct);
        return (await response.Content.ReadFromJsonAsync(QueueJsonContext.Default.JobView, ct))!;
    }

    public async Task<List<JobView>> ListAsync(CancellationToken ct)
    {
        using var response = await SendAsync(() => new HttpRequestMessage(HttpMethod.Get, "/jobs"), ct);
        return (await response.Content.ReadFromJsonAsync(QueueJsonContext.Default.ListJobView, ct))!;
    }

    public async Task<List<Queue.Contracts.Ports.BlobItem>> ListBlobsAsync(string container, CancellationToken ct)
    {
        using var response = await SendAsync(() => new HttpRequestMessage(HttpMethod.Get, $"/blobs/{container}"), ct);
        return (await response.Content.ReadFromJsonAsync(QueueJsonContext.Default.ListBlobItem, ct))!;
    }

    public async Task CancelAsync(string id, CancellationToken ct)
    {
        using var _ = await SendAsync(() => new HttpRequestMessage(HttpMethod.Delete, $"/jobs/{Uri.EscapeDataString(id)}"), ct);
    }

    public async Task CopyOutputAsync(string id, Stream target, CancellationToken ct)
    {
        using var response = await SendAsync(() => new HttpRequestMessage(HttpMethod.Get, $"/jobs/{Uri.EscapeDataString(id)}/output"), ct, HttpCompletionOption.ResponseHeadersRead);
        await (await response.Content.ReadAsStreamAsync(ct)).CopyToAsync(target, ct);
    }

    public async Task UploadAsync(string container, string name, string path, Action<long> progress, CancellationToken ct)
    {
        using var response = await SendAsync(() =>
        {
            var content = new StreamContent(new ProgressStream(File.OpenRead(path), progress), 1 << 20);
            content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
            return new HttpRequestMessage(HttpMethod.Put, $"/blobs/{container}/{EscapePath(name)}") { Content = content };
        }, ct);
    }

    /// <summary>A blob's content as a stream (the response is disposed with it).</summary>
    public async Task<Stream> OpenReadAsync(string container, string name, CancellationToken ct)
    {
        var response = await SendAsync(() => new HttpRequestMessage(HttpMethod.Get, $"/blobs/{container}/{EscapePath(name)}"), ct, HttpCompletionOption.ResponseHeadersRead);
        return await response.Content.ReadAsStreamAsync(ct);
    }

    /// <summary>A succeeded job's whole output, all parts in order, as a stream.</summary>
    public async Task<Stream> OpenOutputAsync(string id, CancellationToken ct)
    {
        var response = await SendAsync(() => new HttpRequestMessage(HttpMethod.Get, $"/jobs/{Uri.EscapeDataString(id)}/output"), ct, HttpCompletionOption.ResponseHeadersRead);
        return await response.Content.ReadAsStreamAsync(ct);
    }

    public async Task DownloadAsync(string container, string name, string path, CancellationToken ct)
    {
        using var response = await SendAsync(() => new HttpRequestMessage(HttpMethod.Get, $"/blobs/{container}/{EscapePath(name)}"), ct, HttpCompletionOption.ResponseHeadersRead);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        await using var file = File.Create(path);
        await (await response.Content.ReadAsStreamAsync(ct)).CopyToAsync(file, ct);
    }

    private static string EscapePath(string name) => string.Join('/', name.Split('/').Select(Uri.EscapeDataString));

    private async Task<HttpResponseMessage> SendAsync(Func<HttpRequestMessage> create, CancellationToken ct, HttpCompletionOption completion = HttpCompletionOption.ResponseContentRead)
    {
        HttpResponseMessage response;
        try
        {
            using var request = create();
            response = await http.SendAsync(request, completion, ct);
        }
        catch (HttpRequestException e)
        {
            throw new CliException($"Cannot reach the ingress at {http.BaseAddress}: {e.Message}", 2);
        }
        if (response.IsSuccessStatusCode)
        {
            return response;
        }
        using (response)
        {
            var body = await response.Content.ReadAsStringAsync(ct);
            string? title = null, detail = null;
            try
            {
                using var problem = JsonDocument.Parse(body);
                title = problem.RootElement.TryGetProperty("title", out var t) ? t.GetString() : null;
                detail = problem.RootElement.TryGetProperty("detail", out var d) ? d.GetString() : null;
            }
            catch (JsonException)
            {
            }
            throw new CliException($"{(int)response.StatusCode} {title ?? response.ReasonPhrase}: {detail ?? body}", 1);
        }
    }

    /// <summary>Reports bytes read so uploads can show progress.</summary>
    private sealed class ProgressStream(Stream inner, Action<long> progress) : ReadOnlyWrapperStream(inner)
    {
        private long total;

        public override long Length => Inner.Length;

        public override int Read(Span<byte> buffer) => Count(Inner.Read(buffer));

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            Count(await Inner.ReadAsync(buffer, cancellationToken));

        private int Count(int read)
        {
            total += read;
            progress(total);
            return read;
        }
    }
}

/// <summary>A failure to report on stderr with an exit code (1: the request failed, 2: usage or connection).</summary>
public sealed class CliException(string message, int exitCode) : Exception(message)
{
    public int ExitCode { get; } = exitCode;
}
