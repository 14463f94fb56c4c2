using System.Net;
using System.Net.Sockets;
using System.Text;
using Queue.Tests.Infrastructure;
using Queue.Worker.Apps;

namespace Queue.Tests;

/// <summary>An embedded ingress with an API key and small limits, as an attacker would meet it.</summary>
public sealed class HostileIngressFixture : EmbeddedEngineFixture
{
    public const string Key = "k3y-never-in-logs";
    public const string QuerySecret = "qs-never-in-logs";

    protected override IReadOnlyDictionary<string, string> Settings { get; } = new Dictionary<string, string>
    {
        ["Queue__Ingress__ApiKey"] = Key,
        ["Queue__Ingress__MaxBlobBytes"] = "65536",
    };

    /// <summary>The client's HTTP connection, sending the key.</summary>
    public HttpClient Http => Client.Http;

    public override async Task InitializeAsync()
    {
        await base.InitializeAsync();
        Http.DefaultRequestHeaders.Add("X-Api-Key", Key);
    }

    /// <summary>Every file under the data folder except the coordination log, relative, sorted.</summary>
    public List<string> StoredFiles() =>
        [.. Directory.GetFileSystemEntries(DataPath, "*", SearchOption.AllDirectories)
            .Select(p => Path.GetRelativePath(DataPath, p))
            // Not the engine's own state, the intermediates, or the emptied files the store keeps for reuse.
            .Where(p => !p.StartsWith(".state", StringComparison.Ordinal) && !p.StartsWith("dfs-", StringComparison.Ordinal)
                && !p.StartsWith(Path.Combine(".tmp", "free"), StringComparison.Ordinal))
            .Order(StringComparer.Ordinal)];

    /// <summary>Writes begun and not yet committed or discarded (the store's temp files; not its folder of free files).</summary>
    public string[] TempWrites() => Directory.GetFiles(Path.Combine(DataPath, ".tmp"));
}

/// <summary>
/// Hostile requests against a real ingress: every answer a 4xx problem (never a 5xx), nothing stored and
/// nothing left in temp folders by a rejected request, the process alive, a good job still exact, and
/// neither the key nor a query string in the log.
/// </summary>
public sealed class HostileInputTests(HostileIngressFixture ingress) : IClassFixture<HostileIngressFixture>
{
    private const string GoodJob = """{"app":"wordcount","input":"books","mapTasks":3,"reduceTasks":2}""";

    private async Task<string> ExpectProblemAsync(HttpRequestMessage request, int status)
    {
        using var response = await ingress.Http.SendAsync(request);
        var body = await response.Content.ReadAsStringAsync();
        Assert.True((int)response.StatusCode == status, $"{request.Method} {request.RequestUri} answered {(int)response.StatusCode}, not {status}: {body}");
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        // Problem details speak to users, not of the code: no .NET type or namespace names.
        Assert.DoesNotContain("System.", body, StringComparison.Ordinal);
        Assert.DoesNotContain("Queue.", body, StringComparison.Ordinal);
        Assert.DoesNotContain("Exception", body, StringComparison.Ordinal);
        return body;
    }

    private static HttpRequestMessage Post(string path, string body, string contentType = "application/json") =>
        new(HttpMethod.Post, path) { Content = new StringContent(body, Encoding.UTF8, contentType) };

    private static HttpRequestMessage Put(string path, byte[] body) => new(HttpMethod.Put, path) { Content = new ByteArrayContent(body) };

    private async Task<int> JobCountAsync() => (await ingress.Http.GetStringAsync("/jobs")).Split("\"spec\"").Length - 1;

    [Fact]
    public async Task JobEndpointsTakeOnlyJsonSoNoPageCanSubmitAcrossSites()
    {
        var before = await JobCountAsync();
        foreach (var path in new[] { "/jobs", "/request" })
        {
            var body = path == "/jobs" ? GoodJob : """{"mapper":"m.py","data":"books","m_num":2,"r_num":1}""";
            foreach (var type in new[] { "text/plain", "application/x-www-form-urlencoded", "multipart/form-data", "text/json-ish" })
            {
                await ExpectProblemAsync(Post(path, body, type), 415);
            }
            var none = new HttpRequestMessage(HttpMethod.Post, path) { Content = new ByteArrayContent(Encoding.UTF8.GetBytes(body)) };
            await ExpectProblemAsync(none, 415);
        }
        Assert.Equal(before, await JobCountAsync());
    }

    [Theory]
    [InlineData("""{"app":"streaming","input":"books"}""", "mapper")]
    [InlineData("""{"app":"grep","input":"books","args":{"pattern":null}}""", "args.pattern")]
    [InlineData("""{"app":"grep","input":"books"}""", "args.pattern")]
    [InlineData("""{"app":"grep","input":"books","args":{"pattern":"(unclosed"}}""", "args.pattern")]
    [InlineData("""{"app":"crash","input":"books","args":{"failRate":"lots"}}""", "args.failRate")]
    [InlineData("""{"app":"wordcount","input":"books","args":{"patern":"x"}}""", "args.patern")]
    [InlineData("""{"app":"../../etc","app":"wordcount","input":"books"}""", "twice")]
    [InlineData("""{"app":"wordcount","input":"books","args":{"a":"1","a":"2"}}""", "twice")]
    [InlineData("""{"app":"wordcount","input":"books","mapTasks":1e400}""", "mapTasks")]
    [InlineData("""{"app":"wordcount","input":"books","mapTasks":99999999999999999999}""", "mapTasks")]
    [InlineData("""{"app":"wordcount","input":"books","reduceTasks":-1}""", "reduceTasks")]
    [InlineData("""{"app":"wordcount","input":"books","mapTasks":8.5}""", "mapTasks")]
    [InlineData("""{"app":"wordcount","input":"../../etc"}""", "container")]
    [InlineData("""{"app":"wordcount","input":"books/../../etc"}""", "prefix")]
    [InlineData("""{"app":"wordcount","input":"books/\u202Etxt"}""", "prefix")]
    [InlineData("""{"mapper":"../../bin/sh","input":"books"}""", "mapper")]
    [InlineData("{\"app\":\"wordcount\",\"input\":\"books\"", "JSON")]
    [InlineData("""[{"app":"wordcount"}]""", "JSON")]
    [InlineData("""null""", "JSON object")]
    [InlineData("""{"app":"wordcount","input":"books","skipBadRecords":"yes"}""", "skipBadRecords")]
    public async Task BadJobRequestsGetA400NamingTheProblemAndCreateNothing(string body, string named)
    {
        var before = await JobCountAsync();
        var problem = await ExpectProblemAsync(Post("/jobs", body), 400);
        Assert.Contains(named, problem, StringComparison.Ordinal);
        Assert.Equal(before, await JobCountAsync());
    }

    [Fact]
    public async Task DeepOrHugeJsonIsRefusedNotCrashedOn()
    {
        await ExpectProblemAsync(Post("/jobs", new string('[', 5000) + new string(']', 5000)), 400);
        await ExpectProblemAsync(Post("/jobs", "{\"app\":\"" + new string('a', 70_000) + "\"}"), 413);
        await ExpectProblemAsync(Post("/jobs", ""), 400);
    }

    [Theory]
    [InlineData("a/", "segments")]
    [InlineData("/a", "segments")]
    [InlineData("a//b", "segments")]
    [InlineData("a%2Fb.txt", "percent")]
    [InlineData("a%5Cb.txt", "separator")]
    [InlineData("a%25c0%25afb.txt", "percent")]
    [InlineData("bidi%E2%80%AEtxt.exe", "formatting")]
    [InlineData("zero%E2%80%8Bwidth", "formatting")]
    [InlineData("ctl%01x", "control")]
    [InlineData("back%5Cslash", "separator")]
    [InlineData("trailing.", "end with '.'")]
    public async Task BadBlobNamesAreRefusedBeforeAnythingIsWritten(string name, string named)
    {
        var before = ingress.StoredFiles();
        var problem = await ExpectProblemAsync(Put($"/blobs/names/{name}", [1, 2, 3]), 400);
        Assert.Contains(named, problem, StringComparison.Ordinal);
        Assert.Equal(before, ingress.StoredFiles());
        Assert.Empty(ingress.TempWrites());
    }

    [Fact]
    public async Task NameLimitsAndClashesAre400And409AndCafeIsFine()
    {
        var before = ingress.StoredFiles();
        await ExpectProblemAsync(Put("/blobs/limits/" + new string('a', 300), [1]), 400);
        await ExpectProblemAsync(Put("/blobs/limits/" + string.Join('/', Enumerable.Repeat("d", 300)), [1]), 400);
        await ExpectProblemAsync(Put("/blobs/limits/" + new string('b', 1025), [1]), 400);
        await ExpectProblemAsync(Put("/blobs/ab/x.txt", [1]), 400);
        await ExpectProblemAsync(Put("/blobs/Upper/x.txt", [1]), 400);
        await ExpectProblemAsync(new HttpRequestMessage(HttpMethod.Get, "/blobs/limits?prefix=../../"), 400);
        Assert.Equal(before, ingress.StoredFiles());

        using (var created = await ingress.Http.SendAsync(Put("/blobs/limits/caf%C3%A9/na%C3%AFve.txt", Encoding.UTF8.GetBytes("bonjour"))))
        {
            Assert.Equal(HttpStatusCode.Created, created.StatusCode);
            Assert.Equal("/blobs/limits/caf%C3%A9/na%C3%AFve.txt", created.Headers.Location?.OriginalString);
            Assert.Equal("bonjour", await ingress.Http.GetStringAsync(created.Headers.Location));
        }
        // A blob where a folder of blobs is, and a blob under a blob: 409, and the disk as it was.
        var withCafe = ingress.StoredFiles();
        await ExpectProblemAsync(Put("/blobs/limits/caf%C3%A9", [1]), 409);
        await ExpectProblemAsync(Put("/blobs/limits/caf%C3%A9/na%C3%AFve.txt/more", [1]), 409);
        await ExpectProblemAsync(Put("/blobs/limits/caf%C3%A9/na%C3%AFve.txt/deeper/still", [1]), 409);
        Assert.Equal(withCafe, ingress.StoredFiles());
        Assert.Empty(ingress.TempWrites());
    }

    [Fact]
    public async Task OversizedUploadsAre413AndLeaveNothing()
    {
        var before = ingress.StoredFiles();
        await ExpectProblemAsync(Put("/blobs/sizes/declared.bin", new byte[70_000]), 413);
        // Chunked, so the size is only known while reading.
        var chunked = new HttpRequestMessage(HttpMethod.Put, "/blobs/sizes/chunked.bin") { Content = new StreamContent(new MemoryStream(new byte[200_000])) };
        chunked.Headers.TransferEncodingChunked = true;
        await ExpectProblemAsync(chunked, 413);
        Assert.Equal(before, ingress.StoredFiles());
        Assert.Empty(ingress.TempWrites());
        using var fits = await ingress.Http.SendAsync(Put("/blobs/sizes/fits.bin", new byte[65_536]));
        Assert.Equal(HttpStatusCode.Created, fits.StatusCode);
    }

    [Theory]
    [InlineData("PUT", "/blobs/stall/slow.bin")]
    [InlineData("POST", "/jobs")]
    public async Task AStalledBodyIs408AndTheClientsFault(string method, string path)
    {
        var before = ingress.StoredFiles();
        using var socket = new TcpClient();
        await socket.ConnectAsync(IPAddress.Loopback, ingress.Ingress.Port);
        var stream = socket.GetStream();
        var head = $"{method} {path} HTTP/1.1\r\nHost: x\r\nX-Api-Key: {HostileIngressFixture.Key}\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n{{\"app\":";
        await stream.WriteAsync(Encoding.ASCII.GetBytes(head));
        // Send nothing more: Kestrel's minimum body rate gives up after its grace period.
        using var reader = new StreamReader(stream);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var status = await reader.ReadLineAsync(timeout.Token);
        Assert.Equal("HTTP/1.1 408 Request Timeout", status);
        Assert.Equal(before, ingress.StoredFiles());
        Assert.Empty(ingress.TempWrites());
        // The log line is written as the response goes out: give the console a moment to catch up.
        var logged = DateTime.UtcNow + TimeSpan.FromSeconds(5);
        while (!ingress.Ingress.Output.Contains($"Client fault on {method} {path}: 408", StringComparison.Ordinal) && DateTime.UtcNow < logged)
        {
            await Task.Delay(50);
        }
        Assert.Contains($"Client fault on {method} {path}: 408", ingress.Ingress.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AfterABarrageTheIngressIsAliveExactAndItsLogHoldsNoSecrets()
    {
        using var anonymous = new HttpClient { BaseAddress = ingress.Ingress.BaseAddress };
        for (var i = 0; i < 100; i++)
        {
            using var response = await anonymous.PostAsync($"/jobs?api_key={HostileIngressFixture.QuerySecret}&n={i}", new StringContent(GoodJob, Encoding.UTF8, "application/json"));
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
            using var wrong = new HttpRequestMessage(HttpMethod.Delete, $"/jobs/x?token={HostileIngressFixture.QuerySecret}");
            wrong.Headers.Add("X-Api-Key", "wrong-" + HostileIngressFixture.QuerySecret);
            Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.SendAsync(wrong)).StatusCode);
            Assert.True((int)(await anonymous.GetAsync($"/jobs/..%2F..%2Fetc?secret={HostileIngressFixture.QuerySecret}")).StatusCode is >= 400 and < 500);
        }
        // Headers too large for Kestrel: a 431, not a crash.
        using (var big = new HttpRequestMessage(HttpMethod.Get, "/jobs"))
        {
            big.Headers.Add("X-Big", new string('x', 40_000));
            Assert.Equal(HttpStatusCode.RequestHeaderFieldsTooLarge, (await anonymous.SendAsync(big)).StatusCode);
        }

        Assert.False(ingress.Ingress.HasExited);
        using var submitted = await ingress.Http.SendAsync(Post("/jobs", GoodJob));
        Assert.Equal(HttpStatusCode.Accepted, submitted.StatusCode);
        var id = submitted.Headers.Location!.OriginalString["/jobs/".Length..];
        using var client = new JobClient(ingress.Ingress.BaseAddress);
        client.Http.DefaultRequestHeaders.Add("X-Api-Key", HostileIngressFixture.Key);
        Assert.Equal(Queue.Contracts.Jobs.JobState.Succeeded, (await client.WaitAsync(id, TimeSpan.FromMinutes(1))).Status.State);
        Assert.Equal(SequentialReference.Run(new WordCountApp(), SequentialReference.ReadFolder(RepoPaths.Gutenberg)), await client.OutputAsync(id));

        var log = ingress.Ingress.Output;
        Assert.DoesNotContain(HostileIngressFixture.Key, log, StringComparison.Ordinal);
        Assert.DoesNotContain(HostileIngressFixture.QuerySecret, log, StringComparison.Ordinal);
        Assert.DoesNotContain("api_key", log, StringComparison.Ordinal);
        // A barrage of 300 requests is not 300 log lines.
        Assert.True(log.Split('\n').Length < 200, $"The log grew with the barrage ({log.Split('\n').Length} lines).");
    }
}
