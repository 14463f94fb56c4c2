using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Queue.Contracts.Jobs;
using Queue.Tests.Infrastructure;
using Queue.Worker.Apps;

namespace Queue.Tests;

/// <summary>Jobs through the HTTP API of a real ingress process on the embedded default, judged against the sequential reference.</summary>
public sealed class EngineEndToEndTests(EmbeddedEngineFixture engine) : IClassFixture<EmbeddedEngineFixture>
{
    private static readonly TimeSpan JobTimeout = TimeSpan.FromMinutes(2);
    private static readonly Lazy<List<(string Name, string Text)>> Books = new(() => SequentialReference.ReadFolder(RepoPaths.Gutenberg).ToList());

    private JobClient Client => engine.Client;

    [Fact]
    public async Task WordCountEqualsTheSequentialReference()
    {
        var id = await Client.SubmitAsync(new { app = "wordcount", input = "books", mapTasks = 8, reduceTasks = 4 });
        var view = await Client.WaitAsync(id, JobTimeout);
        Assert.Equal(JobState.Succeeded, view.Status.State);
        Assert.Equal(SequentialReference.Run(new WordCountApp(), Books.Value), await Client.OutputAsync(id));

        // Every book is read once: more splits than books, and the bytes add up to the input.
        Assert.True(view.Status.Map.Total >= 8);
        Assert.Equal(Books.Value.Sum(b => new FileInfo(Path.Combine(RepoPaths.Gutenberg, b.Name)).Length), view.Status.MapCounters.InputBytes);
        Assert.Equal(4, view.Status.Outputs.Count);
        Assert.All(view.Status.Outputs, part => Assert.True(File.Exists(Path.Combine(engine.DataPath, "dfs-dest", part))));
        Assert.Equal(view.Status.MapCounters.CombineOutputRecords, view.Status.ReduceCounters.InputRecords);
        // Intermediates are deleted once the job has ended, off the leader's loop (within seconds here).
        var intermediates = Path.Combine(engine.DataPath, "dfs-intermediate", id);
        for (var wait = 0; wait < 100 && Directory.Exists(intermediates); wait++)
        {
            await Task.Delay(100);
        }
        Assert.False(Directory.Exists(intermediates), "The job's intermediates were still there 10 s after it ended.");
    }

    [Fact]
    public async Task IndexerEqualsTheSequentialReference()
    {
        var id = await Client.SubmitAsync(new { app = "indexer", input = "books", mapTasks = 12, reduceTasks = 3 });
        Assert.Equal(JobState.Succeeded, (await Client.WaitAsync(id, JobTimeout)).Status.State);
        var output = await Client.OutputAsync(id);
        Assert.Equal(SequentialReference.Run(new IndexerApp(), Books.Value), output);
        Assert.Contains(output, line => line.StartsWith("Gretel\t", StringComparison.Ordinal) && line.Contains("pg-grimm.txt", StringComparison.Ordinal));
    }

    [Fact]
    public async Task GrepKeysCarryLineNumbersOfTheWholeDocumentAcrossSplits()
    {
        var args = new Dictionary<string, string> { ["pattern"] = "Holmes|Gregor" };
        var id = await Client.SubmitAsync(new { app = "grep", input = "books", splitSizeBytes = 50_000, reduceTasks = 2, args });
        Assert.Equal(JobState.Succeeded, (await Client.WaitAsync(id, JobTimeout)).Status.State);
        Assert.Equal(SequentialReference.Run(new GrepApp(args), Books.Value), await Client.OutputAsync(id));
    }

    [Fact]
    public async Task ManySmallFilesArePackedIntoTheMapTasksAskedForAndKeepTheirNamesAndLineNumbers()
    {
        // The books as 240 small documents (30 pieces each, cut at line ends), as a user with many small files has them.
        var folder = Path.Combine(engine.DataPath, "pieces");
        if (!Directory.Exists(folder))
        {
            Directory.CreateDirectory(folder + ".tmp");
            foreach (var (name, text) in Books.Value)
            {
                var lines = text.Split('\n');
                var per = (lines.Length + 29) / 30;
                for (var i = 0; i < 30; i++)
                {
                    var piece = string.Join('\n', lines.Skip(i * per).Take(per));
                    File.WriteAllText(Path.Combine(folder + ".tmp", $"{Path.GetFileNameWithoutExtension(name)}-{i:D2}.txt"), piece + (i < 29 ? "\n" : ""));
                }
            }
            Directory.Move(folder + ".tmp", folder);
        }
        var documents = SequentialReference.ReadFolder(folder).ToList();
        Assert.Equal(240, documents.Count);

        var indexer = await Client.SubmitAsync(new { app = "indexer", input = "pieces", mapTasks = 8, reduceTasks = 3 });
        var view = await Client.WaitAsync(indexer, JobTimeout);
        Assert.Equal(JobState.Succeeded, view.Status.State);
        Assert.InRange(view.Status.Map.Total, 8, 10);
        Assert.Equal(SequentialReference.Run(new IndexerApp(), documents), await Client.OutputAsync(indexer));

        var args = new Dictionary<string, string> { ["pattern"] = "Holmes|Gregor|raft" };
        var grep = await Client.SubmitAsync(new { app = "grep", input = "pieces", mapTasks = 4, reduceTasks = 2, args });
        view = await Client.WaitAsync(grep, JobTimeout);
        Assert.Equal(JobState.Succeeded, view.Status.State);
        Assert.InRange(view.Status.Map.Total, 4, 6);
        Assert.Equal(SequentialReference.Run(new GrepApp(args), documents), await Client.OutputAsync(grep));
    }

    [Fact]
    public async Task TasksThatThrowOrStallPastTheirTimeLimitStillYieldTheReference()
    {
        var args = new Dictionary<string, string> { ["failRate"] = "0.25", ["stallRate"] = "0.1", ["stallSeconds"] = "4" };
        var id = await Client.SubmitAsync(new { app = "crash", input = "books", mapTasks = 10, reduceTasks = 3, args, maxAttempts = 30, taskTimeoutSeconds = 2 });
        var view = await Client.WaitAsync(id, TimeSpan.FromMinutes(4));
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        Assert.Equal(SequentialReference.Run(new WordCountApp(), Books.Value), await Client.OutputAsync(id));
        Assert.True(view.Status.FailedAttempts > 0, "The crash app should have failed some attempts.");
    }

    [Fact]
    public async Task PoisonTaskFailsTheJobWithItsError()
    {
        var args = new Dictionary<string, string> { ["poisonFile"] = "pg-grimm.txt" };
        var id = await Client.SubmitAsync(new { app = "crash", input = "books", mapTasks = 8, reduceTasks = 2, args, maxAttempts = 2 });
        var view = await Client.WaitAsync(id, JobTimeout);
        Assert.Equal(JobState.Failed, view.Status.State);
        Assert.Contains("pg-grimm.txt' is poison", view.Status.Error, StringComparison.Ordinal);
        var details = await Client.GetDetailsAsync(id);
        var poisoned = Assert.Single(details.Tasks, t => t.State == TaskState.Failed);
        // A task is a list of pieces; the one holding the poison file failed (it may hold a neighbour's tail too).
        Assert.Contains(poisoned.Splits ?? [poisoned.Split!], piece => piece.Blob == "pg-grimm.txt");
        Assert.Equal(2, poisoned.Attempts);
        Assert.NotNull(poisoned.DeadLetterReason);
        var output = await Client.Http.GetAsync($"/jobs/{id}/output");
        Assert.Equal(HttpStatusCode.Conflict, output.StatusCode);
    }

    [Fact]
    public async Task CancelStopsARunningJobWithinSeconds()
    {
        var args = new Dictionary<string, string> { ["stallRate"] = "1", ["stallSeconds"] = "30" };
        var id = await Client.SubmitAsync(new { app = "crash", input = "books", mapTasks = 8, reduceTasks = 1, args });
        await WaitUntilAsync(async () => (await Client.GetAsync(id)).Status.Map.Running > 0, TimeSpan.FromSeconds(20));
        var cancel = await Client.Http.DeleteAsync($"/jobs/{id}");
        Assert.Equal(HttpStatusCode.Accepted, cancel.StatusCode);
        var view = await Client.WaitAsync(id, TimeSpan.FromSeconds(10));
        Assert.Equal(JobState.Cancelled, view.Status.State);
        // Its tasks are dropped, so the worker is free for the next job.
        var next = await Client.SubmitAsync(new { app = "wordcount", input = "books/pg-metamorphosis.txt", mapTasks = 2, reduceTasks = 1 });
        Assert.Equal(JobState.Succeeded, (await Client.WaitAsync(next, TimeSpan.FromSeconds(30))).Status.State);
        Assert.Equal(HttpStatusCode.Conflict, (await Client.Http.DeleteAsync($"/jobs/{id}")).StatusCode);
    }

    [Fact]
    public async Task SeveralJobsRunAtOnce()
    {
        var ids = await Task.WhenAll(
            Client.SubmitAsync(new { app = "wordcount", input = "books", mapTasks = 4, reduceTasks = 2 }),
            Client.SubmitAsync(new { app = "indexer", input = "books", mapTasks = 4, reduceTasks = 2 }),
            Client.SubmitAsync(new { app = "wordcount", input = "books/pg-grimm.txt", mapTasks = 3, reduceTasks = 5 }));
        foreach (var id in ids)
        {
            Assert.Equal(JobState.Succeeded, (await Client.WaitAsync(id, JobTimeout)).Status.State);
        }
        Assert.Equal(SequentialReference.Run(new WordCountApp(), Books.Value), await Client.OutputAsync(ids[0]));
        Assert.Equal(SequentialReference.Run(new IndexerApp(), Books.Value), await Client.OutputAsync(ids[1]));
        Assert.Equal(SequentialReference.Run(new WordCountApp(), Books.Value.Where(b => b.Name == "pg-grimm.txt")), await Client.OutputAsync(ids[2]));
    }

    [Theory]
    [InlineData("{\"app\":\"wordcount\",", 400)]
    [InlineData("[1,2]", 400)]
    [InlineData("{\"app\":\"nosuchapp\",\"input\":\"books\"}", 422)]
    [InlineData("{\"app\":\"wordcount\",\"input\":\"nosuchcontainer\"}", 404)]
    [InlineData("{\"app\":\"wordcount\",\"input\":\"books/nosuchprefix\"}", 404)]
    [InlineData("{\"app\":\"wordcount\",\"input\":\"books\",\"mapTasks\":0}", 400)]
    [InlineData("{\"app\":\"wordcount\",\"input\":\"books\",\"reduceTasks\":10001}", 400)]
    [InlineData("{\"app\":\"wordcount\",\"input\":\"books\",\"mapTasks\":1e30}", 400)]
    [InlineData("{\"app\":\"wordcount\",\"input\":\"books\",\"mapTasks\":99999999999999999999}", 400)]
    [InlineData("{\"app\":\"wordcount\",\"input\":\"../etc\"}", 400)]
    [InlineData("{\"app\":\"wordcount\",\"input\":\"books/../../etc\"}", 400)]
    [InlineData("{\"app\":\"wordcount\",\"input\":\"books/a\\u0000b\"}", 400)]
    [InlineData("{\"app\":\"../../bin/sh\",\"input\":\"books\"}", 400)]
    [InlineData("{\"app\":\"grep\",\"input\":\"books\",\"args\":{\"pattern\":\"(\"}}", 400)]
    [InlineData("", 400)]
    public async Task BadRequestsGetProblemDetailsAndStoreNothing(string body, int status)
    {
        var before = (await Client.Http.GetFromJsonAsync<JsonElement>("/jobs")).GetArrayLength();
        var response = await Client.Http.PostAsync("/jobs", new StringContent(body, Encoding.UTF8, "application/json"));
        Assert.Equal(status, (int)response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var problem = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal(status, problem.GetProperty("status").GetInt32());
        Assert.False(string.IsNullOrWhiteSpace(problem.GetProperty("detail").GetString()));
        Assert.Equal(before, (await Client.Http.GetFromJsonAsync<JsonElement>("/jobs")).GetArrayLength());
    }

    [Fact]
    public async Task OversizedBodiesGet413()
    {
        var huge = "{\"app\":\"wordcount\",\"input\":\"books\",\"args\":{\"x\":\"" + new string('a', 200_000) + "\"}}";
        var response = await Client.Http.PostAsync("/jobs", new StringContent(huge, Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
    }

    [Theory]
    [InlineData("/jobs/nosuchjob")]
    [InlineData("/jobs/nosuchjob/output")]
    [InlineData("/jobs/..%2F..%2Fetc")]
    public async Task UnknownJobsGet404(string path)
    {
        var response = await Client.Http.GetAsync(path);
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
    }

    private static async Task WaitUntilAsync(Func<Task<bool>> condition, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "Timed out waiting for a condition.");
            await Task.Delay(100);
        }
    }
}

/// <summary>An ingress configured with an API key.</summary>
public sealed class ApiKeyTests : IAsyncLifetime
{
    private readonly string folder = Path.Combine(Path.GetTempPath(), "queue-apikey", Guid.NewGuid().ToString("N"));
    private ServiceProcess ingress = null!;
    private HttpClient http = null!;

    public async Task InitializeAsync()
    {
        Directory.CreateDirectory(Path.Combine(folder, "data", "books"));
        File.Copy(Path.Combine(RepoPaths.Gutenberg, "pg-metamorphosis.txt"), Path.Combine(folder, "data", "books", "pg-metamorphosis.txt"));
        ingress = await ServiceProcess.StartAsync("Queue.Ingress", folder, new Dictionary<string, string>
        {
            ["Queue__Adapters__DataPath"] = Path.Combine(folder, "data"),
            ["Queue__Ingress__ApiKey"] = "s3cret-key-for-tests",
        });
        http = new HttpClient { BaseAddress = ingress.BaseAddress };
    }

    public async Task DisposeAsync()
    {
        http.Dispose();
        await ingress.DisposeAsync();
        Directory.Delete(folder, recursive: true);
    }

    private Task<HttpResponseMessage> SubmitAsync(string? key)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "/jobs") { Content = JsonContent.Create(new { app = "wordcount", input = "books" }) };
        if (key is not null)
        {
            request.Headers.Add("X-Api-Key", key);
        }
        return http.SendAsync(request);
    }

    [Fact]
    public async Task TheSingleKeyOfEarlierVersionsGuardsReadsAndWritesAlike()
    {
        Assert.Equal(HttpStatusCode.Unauthorized, (await SubmitAsync(null)).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await SubmitAsync("wrong")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.PostAsync("/request", JsonContent.Create(new { mapper = "m.py", data = "books" }))).StatusCode);
        var accepted = await SubmitAsync("s3cret-key-for-tests");
        Assert.Equal(HttpStatusCode.Accepted, accepted.StatusCode);
        var id = (await accepted.Content.ReadFromJsonAsync<JobCreated>())!.Id;
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync($"/jobs/{id}")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync("/blobs/books/pg-metamorphosis.txt")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.DeleteAsync($"/jobs/{id}")).StatusCode);
        var bearer = new HttpRequestMessage(HttpMethod.Delete, $"/jobs/{id}");
        bearer.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", "s3cret-key-for-tests");
        Assert.True((await http.SendAsync(bearer)).StatusCode is HttpStatusCode.Accepted or HttpStatusCode.Conflict);
        // The key never shows in the service's output or in a job's status.
        Assert.DoesNotContain("s3cret-key-for-tests", ingress.Output, StringComparison.Ordinal);
        using var read = new HttpRequestMessage(HttpMethod.Get, $"/jobs/{id}");
        read.Headers.Add("X-Api-Key", "s3cret-key-for-tests");
        using var status = await http.SendAsync(read);
        Assert.Equal(HttpStatusCode.OK, status.StatusCode);
        Assert.DoesNotContain("s3cret-key-for-tests", await status.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }
}
