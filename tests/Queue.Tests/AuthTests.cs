using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using Queue.Contracts.Jobs;
using Queue.Tests.Infrastructure;
using Queue.Worker.Apps;

namespace Queue.Tests;

/// <summary>
/// An embedded ingress protected by named API keys (stored as hashes) and by bearer tokens from an
/// issuer of the test's own (its signing key made here, its public half given to the ingress).
/// </summary>
public sealed class AuthFixture : EmbeddedEngineFixture
{
    public const string Issuer = "https://issuer.queue.test";
    public const string Audience = "queue-api";

    public static readonly Dictionary<string, string> Keys = new()
    {
        ["alice"] = "alice-key-" + Guid.NewGuid().ToString("N"),
        ["bob"] = "bob-key-" + Guid.NewGuid().ToString("N"),
        ["rita"] = "rita-key-" + Guid.NewGuid().ToString("N"),
        ["root"] = "root-key-" + Guid.NewGuid().ToString("N"),
    };

    private readonly Dictionary<string, string> settings;

    public AuthFixture()
    {
        Signer = RSA.Create(2048);
        var keyFile = Path.Combine(Folder, "issuer.pem");
        Directory.CreateDirectory(Folder);
        File.WriteAllText(keyFile, Signer.ExportSubjectPublicKeyInfoPem());
        settings = new Dictionary<string, string>
        {
            ["Queue__Auth__Jwt__Issuer"] = Issuer,
            ["Queue__Auth__Jwt__Audience"] = Audience,
            ["Queue__Auth__Jwt__SigningKeyFile"] = keyFile,
        };
        var principals = new (string Name, string[] Roles, string[] Containers)[]
        {
            ("alice", [QueueRolesNames.Submitter], []),
            ("bob", [QueueRolesNames.Submitter], ["books", "dfs-scripts"]),
            ("rita", [QueueRolesNames.Reader], ["books"]),
            ("root", [QueueRolesNames.Admin], []),
        };
        for (var i = 0; i < principals.Length; i++)
        {
            var (name, roles, containers) = principals[i];
            settings[$"Queue__Auth__ApiKeys__{i}__Name"] = name;
            settings[$"Queue__Auth__ApiKeys__{i}__KeySha256"] = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(Keys[name])));
            for (var r = 0; r < roles.Length; r++)
            {
                settings[$"Queue__Auth__ApiKeys__{i}__Roles__{r}"] = roles[r];
            }
            for (var c = 0; c < containers.Length; c++)
            {
                settings[$"Queue__Auth__ApiKeys__{i}__Containers__{c}"] = containers[c];
            }
        }
    }

    public RSA Signer { get; }

    protected override IReadOnlyDictionary<string, string> Settings => settings;

    public override async Task InitializeAsync()
    {
        await base.InitializeAsync();
        Directory.CreateDirectory(Path.Combine(DataPath, "secret"));
        File.WriteAllText(Path.Combine(DataPath, "secret", "plans.txt"), "the secret plans\n");
        Client.Http.DefaultRequestHeaders.Add("X-Api-Key", Keys["root"]);
    }

    /// <summary>A token from the test's issuer (or as <paramref name="signer"/>, <paramref name="issuer"/>, ... say).</summary>
    public string Token(string subject, string[] roles, TimeSpan? expiresIn = null, string? audience = null, string? issuer = null, RSA? signer = null)
    {
        var now = DateTime.UtcNow;
        var expires = now + (expiresIn ?? TimeSpan.FromMinutes(10));
        return new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Issuer = issuer ?? Issuer,
            Audience = audience ?? Audience,
            IssuedAt = expires < now ? expires - TimeSpan.FromMinutes(10) : now,
            NotBefore = expires < now ? expires - TimeSpan.FromMinutes(10) : now,
            Expires = expires,
            Claims = new Dictionary<string, object> { ["sub"] = subject, ["roles"] = roles },
            SigningCredentials = new SigningCredentials(new RsaSecurityKey(signer ?? Signer), SecurityAlgorithms.RsaSha256),
        });
    }
}

/// <summary>Role names as the ingress spells them (the test does not reach into the service for them).</summary>
public static class QueueRolesNames
{
    public const string Reader = "reader";
    public const string Submitter = "submitter";
    public const string Admin = "admin";
}

public sealed class AuthTests(AuthFixture fixture) : IClassFixture<AuthFixture>
{
    private const string Book = "pg-grimm.txt";

    private HttpClient Anonymous { get; } = new() { BaseAddress = fixture.Ingress.BaseAddress };

    /// <summary>Every endpoint but /healthz, with a request that would succeed for an admin.</summary>
    private static IEnumerable<(HttpMethod Method, string Path, string? Body)> Endpoints(string job) =>
    [
        (HttpMethod.Get, "/jobs", null),
        (HttpMethod.Get, $"/jobs/{job}", null),
        (HttpMethod.Get, $"/jobs/{job}?tasks=true", null),
        (HttpMethod.Get, $"/jobs/{job}/tasks", null),
        (HttpMethod.Get, $"/jobs/{job}/output", null),
        (HttpMethod.Delete, $"/jobs/{job}", null),
        (HttpMethod.Post, "/jobs", """{"app":"wordcount","input":"books"}"""),
        (HttpMethod.Post, "/request", """{"mapper":"m.py","data":"books"}"""),
        (HttpMethod.Put, "/blobs/books/planted.txt", "planted"),
        (HttpMethod.Get, "/blobs/books", null),
        (HttpMethod.Get, $"/blobs/books/{Book}", null),
        (HttpMethod.Get, "/queues", null),
        (HttpMethod.Get, "/workers", null),
        (HttpMethod.Get, "/scale", null),
        (HttpMethod.Get, "/metrics", null),
        (HttpMethod.Get, "/openapi/v1.json", null),
    ];

    private async Task<HttpResponseMessage> SendAsync(HttpMethod method, string path, string? body, Action<HttpRequestMessage>? credential)
    {
        var request = new HttpRequestMessage(method, path);
        if (body is not null)
        {
            request.Content = new StringContent(body, Encoding.UTF8, method == HttpMethod.Put ? "text/plain" : "application/json");
        }
        credential?.Invoke(request);
        return await Anonymous.SendAsync(request);
    }

    private static Action<HttpRequestMessage> Key(string key) => r => r.Headers.Add("X-Api-Key", key);

    private static Action<HttpRequestMessage> Bearer(string token) => r => r.Headers.Authorization = new("Bearer", token);

    private async Task<string> FinishedJobOfAsync(string owner)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/jobs") { Content = JsonContent.Create(new { app = "wordcount", input = "books", mapTasks = 4, reduceTasks = 2 }) };
        request.Headers.Add("X-Api-Key", AuthFixture.Keys[owner]);
        using var response = await Anonymous.SendAsync(request);
        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        var id = (await response.Content.ReadFromJsonAsync(Queue.Contracts.QueueJsonContext.Default.JobCreated))!.Id;
        Assert.Equal(JobState.Succeeded, (await fixture.Client.WaitAsync(id, TimeSpan.FromMinutes(1))).Status.State);
        return id;
    }

    [Fact]
    public async Task EveryEndpointRefusesMissingWrongExpiredAndTamperedCredentialsAndStoresNothing()
    {
        var job = await FinishedJobOfAsync("alice");
        var jobsBefore = (await fixture.Client.Http.GetFromJsonAsync("/jobs", Queue.Contracts.QueueJsonContext.Default.ListJobView))!.Count;
        var valid = fixture.Token("alice", [QueueRolesNames.Admin]);
        var parts = valid.Split('.');
        // The payload re-encoded with another subject, the signature kept: a forged claim.
        var forgedPayload = Base64UrlEncoder.Encode(Base64UrlEncoder.Decode(parts[1]).Replace("alice", "alicf", StringComparison.Ordinal));
        using var otherSigner = RSA.Create(2048);
        var refused = new Dictionary<string, Action<HttpRequestMessage>?>
        {
            ["no credential"] = null,
            ["a wrong key"] = Key("not-a-key"),
            ["a wrong key as bearer"] = Bearer("not-a-key"),
            ["an expired token"] = Bearer(fixture.Token("alice", [QueueRolesNames.Admin], expiresIn: TimeSpan.FromMinutes(-5))),
            ["a token for another audience"] = Bearer(fixture.Token("alice", [QueueRolesNames.Admin], audience: "someone-else")),
            ["a token from another issuer"] = Bearer(fixture.Token("alice", [QueueRolesNames.Admin], issuer: "https://evil.test")),
            ["a token signed by another key"] = Bearer(fixture.Token("alice", [QueueRolesNames.Admin], signer: otherSigner)),
            ["a tampered token"] = Bearer($"{parts[0]}.{forgedPayload}.{parts[2]}"),
            ["an unsigned token"] = Bearer($"{parts[0]}.{parts[1]}."),
        };
        foreach (var (method, path, body) in Endpoints(job))
        {
            foreach (var (what, credential) in refused)
            {
                using var response = await SendAsync(method, path, body, credential);
                var text = await response.Content.ReadAsStringAsync();
                Assert.True(response.StatusCode == HttpStatusCode.Unauthorized, $"{method} {path} with {what}: {(int)response.StatusCode} {text}");
                Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
                // The same words whatever was wrong: nothing says which part of the credential failed.
                Assert.Contains("\"title\":\"Authentication required\"", text, StringComparison.Ordinal);
                Assert.DoesNotContain("signature", text + response.Headers.WwwAuthenticate, StringComparison.OrdinalIgnoreCase);
                Assert.DoesNotContain("expired", text + response.Headers.WwwAuthenticate, StringComparison.OrdinalIgnoreCase);
            }
        }
        Assert.Equal(HttpStatusCode.OK, (await Anonymous.GetAsync("/healthz")).StatusCode);
        Assert.False(File.Exists(Path.Combine(fixture.DataPath, "books", "planted.txt")), "A refused upload stored a blob.");
        Assert.Equal(jobsBefore, (await fixture.Client.Http.GetFromJsonAsync("/jobs", Queue.Contracts.QueueJsonContext.Default.ListJobView))!.Count);
        Assert.Equal(JobState.Succeeded, (await fixture.Client.GetAsync(job)).Status.State); // the refused cancels did nothing
        Assert.DoesNotContain(AuthFixture.Keys["alice"], fixture.Ingress.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AUserSeesReadsAndCancelsOnlyTheirOwnJobsAndAnAdminAll()
    {
        var alices = await FinishedJobOfAsync("alice");
        var bobs = await FinishedJobOfAsync("bob");
        var reference = SequentialReference.Run(new WordCountApp(), SequentialReference.ReadFolder(RepoPaths.Gutenberg));

        // Bob cannot tell Alice's job from a missing one.
        foreach (var path in new[] { $"/jobs/{alices}", $"/jobs/{alices}?tasks=true", $"/jobs/{alices}/tasks", $"/jobs/{alices}/output" })
        {
            using var response = await SendAsync(HttpMethod.Get, path, null, Key(AuthFixture.Keys["bob"]));
            Assert.True(response.StatusCode == HttpStatusCode.NotFound, $"GET {path} as bob: {(int)response.StatusCode}");
        }
        using (var cancel = await SendAsync(HttpMethod.Delete, $"/jobs/{alices}", null, Key(AuthFixture.Keys["bob"])))
        {
            Assert.Equal(HttpStatusCode.NotFound, cancel.StatusCode);
        }
        var bobSees = await JobsSeenByAsync(Key(AuthFixture.Keys["bob"]));
        Assert.Contains(bobs, bobSees);
        Assert.DoesNotContain(alices, bobSees);
        // Nor can he read her output through the blob API: the engine's containers are an admin's.
        using (var parts = await SendAsync(HttpMethod.Get, $"/blobs/dfs-dest/{alices}/part-00000", null, Key(AuthFixture.Keys["bob"])))
        {
            Assert.Equal(HttpStatusCode.Forbidden, parts.StatusCode);
        }

        // Alice reads her own output; the job records her as its owner.
        using (var output = await SendAsync(HttpMethod.Get, $"/jobs/{alices}/output", null, Key(AuthFixture.Keys["alice"])))
        {
            Assert.Equal(HttpStatusCode.OK, output.StatusCode);
            Assert.Equal(reference, SequentialReference.SortByKey((await output.Content.ReadAsStringAsync()).Split('\n')));
        }
        Assert.Equal("alice", (await fixture.Client.GetAsync(alices)).Spec.Owner);

        // An admin sees both and may cancel anyone's (a running job of Bob's here).
        var adminSees = await JobsSeenByAsync(Key(AuthFixture.Keys["root"]));
        Assert.Contains(alices, adminSees);
        Assert.Contains(bobs, adminSees);
        using var slow = new HttpRequestMessage(HttpMethod.Post, "/jobs")
        {
            Content = JsonContent.Create(new { app = "crash", input = "books", mapTasks = 8, reduceTasks = 1, args = new Dictionary<string, string> { ["stallRate"] = "1", ["stallSeconds"] = "5" } }),
        };
        slow.Headers.Add("X-Api-Key", AuthFixture.Keys["bob"]);
        var running = (await (await Anonymous.SendAsync(slow)).Content.ReadFromJsonAsync(Queue.Contracts.QueueJsonContext.Default.JobCreated))!.Id;
        using (var byAlice = await SendAsync(HttpMethod.Delete, $"/jobs/{running}", null, Key(AuthFixture.Keys["alice"])))
        {
            Assert.Equal(HttpStatusCode.NotFound, byAlice.StatusCode);
        }
        using (var byAdmin = await SendAsync(HttpMethod.Delete, $"/jobs/{running}", null, Key(AuthFixture.Keys["root"])))
        {
            Assert.Equal(HttpStatusCode.Accepted, byAdmin.StatusCode);
        }
        Assert.Equal(JobState.Cancelled, (await fixture.Client.WaitAsync(running, TimeSpan.FromMinutes(1))).Status.State);
    }

    [Fact]
    public async Task RolesAndContainersLimitWhatAPrincipalMayDo()
    {
        var rita = Key(AuthFixture.Keys["rita"]);
        // A reader reads the containers it is given and nothing else, and writes nothing.
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(HttpMethod.Get, $"/blobs/books/{Book}", null, rita)).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await SendAsync(HttpMethod.Get, "/blobs/secret/plans.txt", null, rita)).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await SendAsync(HttpMethod.Get, "/blobs/secret", null, rita)).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await SendAsync(HttpMethod.Post, "/jobs", """{"app":"wordcount","input":"books"}""", rita)).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await SendAsync(HttpMethod.Put, "/blobs/books/x.txt", "x", rita)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(HttpMethod.Get, "/workers", null, rita)).StatusCode);

        // Bob may use books and scripts only: a job over another container would copy it into his output.
        var bob = Key(AuthFixture.Keys["bob"]);
        using (var response = await SendAsync(HttpMethod.Post, "/jobs", """{"app":"wordcount","input":"secret"}""", bob))
        {
            Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
        }
        Assert.Equal(HttpStatusCode.Forbidden, (await SendAsync(HttpMethod.Put, "/blobs/secret/y.txt", "y", bob)).StatusCode);
        Assert.Equal(HttpStatusCode.Created, (await SendAsync(HttpMethod.Put, "/blobs/books/bob.txt", "bob was here\n", bob)).StatusCode);
        File.Delete(Path.Combine(fixture.DataPath, "books", "bob.txt"));

        // Alice lists no containers: every one but the engine's own.
        var alice = Key(AuthFixture.Keys["alice"]);
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(HttpMethod.Get, "/blobs/secret/plans.txt", null, alice)).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await SendAsync(HttpMethod.Get, "/blobs/dfs-intermediate", null, alice)).StatusCode);
    }

    [Fact]
    public async Task ATokenFromTheIssuerWorksWithTheRolesItCarries()
    {
        var token = fixture.Token("carol@example.test", [QueueRolesNames.Submitter]);
        using var submitted = await SendAsync(HttpMethod.Post, "/jobs", """{"app":"wordcount","input":"books","mapTasks":2,"reduceTasks":1}""", Bearer(token));
        Assert.Equal(HttpStatusCode.Accepted, submitted.StatusCode);
        var id = (await submitted.Content.ReadFromJsonAsync(Queue.Contracts.QueueJsonContext.Default.JobCreated))!.Id;
        Assert.Equal("carol@example.test", (await fixture.Client.GetAsync(id)).Spec.Owner);
        Assert.Contains(id, await JobsSeenByAsync(Bearer(token)));
        var reader = fixture.Token("dave", [QueueRolesNames.Reader]);
        Assert.Equal(HttpStatusCode.Forbidden, (await SendAsync(HttpMethod.Post, "/jobs", """{"app":"wordcount","input":"books"}""", Bearer(reader))).StatusCode);
        Assert.DoesNotContain(id, await JobsSeenByAsync(Bearer(reader)));
        var noRole = fixture.Token("eve", []);
        Assert.Equal(HttpStatusCode.Forbidden, (await SendAsync(HttpMethod.Get, "/jobs", null, Bearer(noRole))).StatusCode);
    }

    private async Task<List<string>> JobsSeenByAsync(Action<HttpRequestMessage> credential)
    {
        using var response = await SendAsync(HttpMethod.Get, "/jobs", null, credential);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return [.. (await response.Content.ReadFromJsonAsync(Queue.Contracts.QueueJsonContext.Default.ListJobView))!.Select(j => j.Spec.Id)];
    }
}

/// <summary>An ingress whose owner chose open reads explicitly: anyone reads, only keys write.</summary>
public sealed class OpenReadsFixture : EmbeddedEngineFixture
{
    public const string Key = "open-reads-admin-key";

    protected override IReadOnlyDictionary<string, string> Settings { get; } = new Dictionary<string, string>
    {
        ["Queue__Auth__OpenReads"] = "true",
        ["Queue__Auth__ApiKeys__0__Name"] = "ops",
        ["Queue__Auth__ApiKeys__0__Roles__0"] = "admin",
        ["Queue__Auth__ApiKeys__0__KeySha256"] = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(Key))),
    };
}

public sealed class OpenReadsTests(OpenReadsFixture fixture) : IClassFixture<OpenReadsFixture>
{
    [Fact]
    public async Task OpenReadsLetAnyoneReadButNotWrite()
    {
        using var anonymous = new HttpClient { BaseAddress = fixture.Ingress.BaseAddress };
        Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("/jobs")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("/blobs/books/pg-grimm.txt")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.PostAsync("/jobs", JsonContent.Create(new { app = "wordcount", input = "books" }))).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.PutAsync("/blobs/books/x.txt", new StringContent("x"))).StatusCode);
        using var submit = new HttpRequestMessage(HttpMethod.Post, "/jobs") { Content = JsonContent.Create(new { app = "wordcount", input = "books", mapTasks = 2, reduceTasks = 1 }) };
        submit.Headers.Add("X-Api-Key", OpenReadsFixture.Key);
        Assert.Equal(HttpStatusCode.Accepted, (await anonymous.SendAsync(submit)).StatusCode);
    }
}
