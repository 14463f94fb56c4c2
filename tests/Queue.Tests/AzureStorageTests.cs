using System.Security.Cryptography;
using Microsoft.Extensions.Options;
using Queue.Adapters.Azure;
using Queue.Contracts.Ports;
using Queue.Tests.Infrastructure;

namespace Queue.Tests;

public sealed class AzuriteFixture : IAsyncLifetime
{
    public AzuriteServer Server { get; private set; } = null!;

    public async Task InitializeAsync() => Server = await AzuriteServer.StartAsync();

    public async Task DisposeAsync() => await Server.DisposeAsync();

    public AzureStorageClients Client(string? key = null, string prefix = "queue-") =>
        new(Options.Create(new AzureStorageOptions { ConnectionString = Server.ConnectionString(key ?? AzuriteServer.DevKey), QueuePrefix = prefix, BlockSizeBytes = 1 << 20, MaxPollInterval = TimeSpan.FromMilliseconds(200) }));
}

[CollectionDefinition("azurite")]
public sealed class AzuriteCollection : ICollectionFixture<AzuriteFixture>;

/// <summary>The work-queue conformance suite against Azure Storage Queues (Azurite): real visibility-timeout expiry and renew.</summary>
[Collection("azurite")]
public sealed class AzureStorageQueueTests(AzuriteFixture azurite) : WorkQueueConformance
{
    /// <summary>
    /// Two seconds: visibility timeouts are whole seconds and NextVisibleOn is cut to the second, so a
    /// 1 s lease renewed every half second had no slack, and under the full suite's load one renewal came
    /// late enough for the message to be delivered again.
    /// </summary>
    protected override TimeSpan Lease => TimeSpan.FromSeconds(2);

    protected override Task<IWorkQueue> CreateQueueAsync(TimeSpan leaseDuration, int maxDeliveryCount) =>
        Task.FromResult<IWorkQueue>(new AzureStorageWorkQueue(Guid.NewGuid().ToString("N")[..12], azurite.Client(prefix: "t-"),
            Options.Create(new WorkQueueOptions { LeaseDuration = leaseDuration, MaxDeliveryCount = maxDeliveryCount })));

    protected override Task<IWorkQueue> OtherReceiverAsync(IWorkQueue queue, TimeSpan leaseDuration) =>
        Task.FromResult<IWorkQueue>(new AzureStorageWorkQueue(queue.Name, azurite.Client(prefix: "t-"),
            Options.Create(new WorkQueueOptions { LeaseDuration = leaseDuration, MaxDeliveryCount = 10 })));
}

[Collection("azurite")]
public sealed class AzureBlobStoreTests(AzuriteFixture azurite)
{
    private readonly AzureBlobStore store = new(azurite.Client());
    private readonly string container = "c" + Guid.NewGuid().ToString("N")[..20];

    private async Task<byte[]> ReadAsync(string name, long offset = 0, long? length = null)
    {
        await using var stream = await store.OpenReadAsync(container, name, offset, length, CancellationToken.None);
        using var copy = new MemoryStream();
        await stream.CopyToAsync(copy);
        return copy.ToArray();
    }

    [Theory]
    [InlineData(0)]
    [InlineData(13)]
    [InlineData(50 * 1024 * 1024 + 7)]
    public async Task BlobsRoundTripWhateverTheirSize(int size)
    {
        await store.CreateContainerIfMissingAsync(container, CancellationToken.None);
        var data = RandomNumberGenerator.GetBytes(size);
        await using (var writer = await store.OpenWriteAsync(container, "dir/blob name", CancellationToken.None))
        {
            // Uneven writes cross block boundaries (1 MiB blocks in these tests).
            for (var offset = 0; offset < size; offset += 777_777)
            {
                await writer.WriteAsync(data.AsMemory(offset, Math.Min(777_777, size - offset)));
            }
            Assert.True(await writer.CommitAsync(overwrite: false, CancellationToken.None));
        }
        Assert.Equal(size, (await store.GetPropertiesAsync(container, "dir/blob name", CancellationToken.None))!.Length);
        var whole = await ReadAsync("dir/blob name");
        Assert.True(data.AsSpan().SequenceEqual(whole));
        if (size > 100)
        {
            var range = await ReadAsync("dir/blob name", 5, 90);
            Assert.True(data.AsSpan(5, 90).SequenceEqual(range));
            var tail = await ReadAsync("dir/blob name", size - 10);
            Assert.True(data.AsSpan(size - 10).SequenceEqual(tail));
        }
    }

    [Fact]
    public async Task ACommitIsVisibleOnlyWhenCompleteAndTheFirstCommitWins()
    {
        await store.CreateContainerIfMissingAsync(container, CancellationToken.None);
        await using var first = await store.OpenWriteAsync(container, "part", CancellationToken.None);
        await using var second = await store.OpenWriteAsync(container, "part", CancellationToken.None);
        await first.WriteAsync(new byte[3 << 20]); // three blocks staged, nothing visible
        await second.WriteAsync(new byte[] { 1, 2, 3 });
        Assert.Null(await store.GetPropertiesAsync(container, "part", CancellationToken.None));
        Assert.True(await first.CommitAsync(overwrite: false, CancellationToken.None));
        Assert.False(await second.CommitAsync(overwrite: false, CancellationToken.None));
        Assert.Equal(3 << 20, (await store.GetPropertiesAsync(container, "part", CancellationToken.None))!.Length);
        Assert.True(await store.DeleteAsync(container, "part", CancellationToken.None));
        Assert.False(await store.DeleteAsync(container, "part", CancellationToken.None));
        await Assert.ThrowsAsync<BlobNotFoundException>(() => store.OpenReadAsync(container, "part", 0, null, CancellationToken.None));
    }

    [Fact]
    public async Task ListingPagesPastFiveThousandBlobsAndFiltersByPrefix()
    {
        await store.CreateContainerIfMissingAsync(container, CancellationToken.None);
        await Parallel.ForAsync(0, 5003, new ParallelOptions { MaxDegreeOfParallelism = 16 }, async (i, ct) =>
            await store.PutAsync(container, $"many/{i:D5}", new byte[] { 1 }, ct));
        await store.PutAsync(container, "other", new byte[] { 1 }, CancellationToken.None);
        var names = new List<string>();
        await foreach (var item in store.ListAsync(container, "many/", CancellationToken.None))
        {
            names.Add(item.Name);
        }
        Assert.Equal(Enumerable.Range(0, 5003).Select(i => $"many/{i:D5}"), names);
        var none = new List<BlobItem>();
        await foreach (var item in store.ListAsync("nosuchcontainer", "", CancellationToken.None))
        {
            none.Add(item);
        }
        Assert.Empty(none);
    }

    [Fact]
    public async Task ConcurrentWritersToDifferentBlobsAllLand()
    {
        await store.CreateContainerIfMissingAsync(container, CancellationToken.None);
        await Parallel.ForAsync(0, 24, async (i, ct) => await store.PutAsync(container, $"w/{i}", RandomNumberGenerator.GetBytes(100_000 + i), ct));
        for (var i = 0; i < 24; i++)
        {
            Assert.Equal(100_000 + i, (await store.GetPropertiesAsync(container, $"w/{i}", CancellationToken.None))!.Length);
        }
    }

    [Fact]
    public async Task AWrongKeyGivesAClearAuthenticationError()
    {
        var wrong = new AzureBlobStore(azurite.Client(Convert.ToBase64String(new byte[64])));
        var error = await Assert.ThrowsAsync<AzureStorageException>(() => wrong.CreateContainerIfMissingAsync(container, CancellationToken.None));
        Assert.Equal(System.Net.HttpStatusCode.Forbidden, error.Status);
        Assert.Contains("Check the account name and key", error.Message, StringComparison.Ordinal);
        Assert.Contains("request id", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(AzuriteServer.DevKey, error.Message, StringComparison.Ordinal);
    }
}

/// <summary>A SAS instead of the account key.</summary>
[Collection("azurite")]
public sealed class AzureSasTests(AzuriteFixture azurite)
{
    private AzureStorageClients Client(string sas) => new(Options.Create(new AzureStorageOptions
    {
        AccountName = "devstoreaccount1",
        SasToken = sas,
        BlobEndpoint = $"http://127.0.0.1:{azurite.Server.BlobPort}/devstoreaccount1",
        QueueEndpoint = $"http://127.0.0.1:{azurite.Server.QueuePort}/devstoreaccount1",
        QueuePrefix = "sas-",
    }));

    [Fact]
    public async Task AnAccountSasGrantsBlobAndQueueAccessWithoutTheKey()
    {
        // The SDK signs the SAS (the services never hold the key).
        var sas = new Azure.Storage.Sas.AccountSasBuilder(Azure.Storage.Sas.AccountSasPermissions.All, DateTimeOffset.UtcNow.AddHours(1),
            Azure.Storage.Sas.AccountSasServices.Blobs | Azure.Storage.Sas.AccountSasServices.Queues, Azure.Storage.Sas.AccountSasResourceTypes.All)
        {
            Protocol = Azure.Storage.Sas.SasProtocol.HttpsAndHttp,
        }.ToSasQueryParameters(new Azure.Storage.StorageSharedKeyCredential("devstoreaccount1", AzuriteServer.DevKey)).ToString();
        var client = Client(sas);
        var blobs = new AzureBlobStore(client);
        var container = "sas" + Guid.NewGuid().ToString("N")[..12];
        await blobs.CreateContainerIfMissingAsync(container, CancellationToken.None);
        await blobs.PutAsync(container, "a/b.txt", "hello"u8.ToArray(), CancellationToken.None);
        Assert.Equal("hello"u8.ToArray(), await blobs.ReadAllBytesAsync(container, "a/b.txt", CancellationToken.None));

        var queue = new AzureStorageWorkQueue(Guid.NewGuid().ToString("N")[..10], client, Options.Create(new WorkQueueOptions()));
        await queue.SendAsync("task"u8.ToArray(), CancellationToken.None);
        var received = await queue.ReceiveAsync(1, TimeSpan.FromSeconds(5), CancellationToken.None);
        Assert.Equal("task"u8.ToArray(), Assert.Single(received).Body.ToArray());
        await received[0].CompleteAsync(CancellationToken.None);

        // A SAS whose signature does not match is refused.
        var signature = System.Text.RegularExpressions.Regex.Match(sas, "sig=([^&]+)").Groups[1].Value;
        var forged = Client(sas.Replace(signature, Uri.EscapeDataString(Convert.ToBase64String(new byte[32])), StringComparison.Ordinal));
        await Assert.ThrowsAsync<AzureStorageException>(() => new AzureBlobStore(forged).GetPropertiesAsync(container, "a/b.txt", CancellationToken.None));
    }
}

/// <summary>How the adapter picks its credential: key, or an Azure.Identity token when no secret is configured.</summary>
[Collection("azurite")]
public sealed class AzureCredentialTests(AzuriteFixture azurite)
{
    [Fact]
    public async Task AnAccountKeyWithEndpointsWorksWithoutAConnectionString()
    {
        var clients = new AzureStorageClients(Options.Create(new AzureStorageOptions
        {
            AccountName = "devstoreaccount1",
            AccountKey = AzuriteServer.DevKey,
            BlobEndpoint = $"http://127.0.0.1:{azurite.Server.BlobPort}/devstoreaccount1",
            QueueEndpoint = $"http://127.0.0.1:{azurite.Server.QueuePort}/devstoreaccount1",
        }));
        Assert.Equal("account key", clients.Credential);
        var blobs = new AzureBlobStore(clients);
        await blobs.PutAsync("keyed", "k.txt", "key"u8.ToArray(), CancellationToken.None);
        Assert.Equal("key"u8.ToArray(), await blobs.ReadAllBytesAsync("keyed", "k.txt", CancellationToken.None));
    }

    [Fact]
    public void WithoutASecretTheServicesUseDefaultAzureCredentialOnTheAccountsEndpoints()
    {
        // What AKS workload identity needs: no key or connection string anywhere, a token from the pod's identity.
        var options = new AzureStorageOptions { AccountName = "examplequeuestorage" };
        Assert.Empty(options.Validate(new System.ComponentModel.DataAnnotations.ValidationContext(options)));
        var clients = new AzureStorageClients(Options.Create(options));
        Assert.Equal("DefaultAzureCredential", clients.Credential);
        Assert.Equal(new Uri("https://examplequeuestorage.blob.core.windows.net/"), clients.Blobs.Uri);
        Assert.Equal(new Uri("https://examplequeuestorage.queue.core.windows.net/"), clients.Queues.Uri);
        var none = new AzureStorageOptions();
        Assert.Contains(none.Validate(new System.ComponentModel.DataAnnotations.ValidationContext(none)), r => r.ErrorMessage!.Contains("BlobEndpoint / AccountName", StringComparison.Ordinal));
    }
}

/// <summary>Transient failures: a proxy in front of Azurite answers 503 or 500 to the first tries of each request.</summary>
[Collection("azurite")]
public sealed class AzureRetryTests(AzuriteFixture azurite)
{
    [Fact]
    public async Task ServerBusyAndInternalErrorsAreRetriedWithBackOff()
    {
        await using var proxy = FaultyProxy.Start(azurite.Server.BlobPort, failuresPerRequest: 2);
        var client = new AzureStorageClients(Options.Create(new AzureStorageOptions
        {
            ConnectionString = $"AccountName=devstoreaccount1;AccountKey={AzuriteServer.DevKey};BlobEndpoint=http://127.0.0.1:{proxy.Port}/devstoreaccount1;QueueEndpoint=http://127.0.0.1:{azurite.Server.QueuePort}/devstoreaccount1;",
        }));
        var blobs = new AzureBlobStore(client);
        var container = "retry" + Guid.NewGuid().ToString("N")[..10];
        await blobs.CreateContainerIfMissingAsync(container, CancellationToken.None);
        await blobs.PutAsync(container, "x", "survived"u8.ToArray(), CancellationToken.None);
        Assert.Equal("survived"u8.ToArray(), await blobs.ReadAllBytesAsync(container, "x", CancellationToken.None));
        Assert.True(proxy.Failures >= 6, $"Only {proxy.Failures} failures were injected.");

        await using var broken = FaultyProxy.Start(azurite.Server.BlobPort, failuresPerRequest: 100);
        var hopeless = new AzureStorageClients(Options.Create(new AzureStorageOptions
        {
            ConnectionString = $"AccountName=devstoreaccount1;AccountKey={AzuriteServer.DevKey};BlobEndpoint=http://127.0.0.1:{broken.Port}/devstoreaccount1;QueueEndpoint=http://127.0.0.1:{azurite.Server.QueuePort}/devstoreaccount1;",
        }));
        // Past its retries the adapter says the service is unavailable (the port's one connection-level fault), naming the last answer.
        var unavailable = await Assert.ThrowsAsync<BrokerUnavailableException>(() => new AzureBlobStore(hopeless).GetPropertiesAsync(container, "x", CancellationToken.None));
        var error = Assert.IsType<AzureStorageException>(unavailable.InnerException);
        Assert.True(error.Status is System.Net.HttpStatusCode.ServiceUnavailable or System.Net.HttpStatusCode.InternalServerError, error.Message);
        Assert.StartsWith("Azure Storage is unavailable:", unavailable.Message, StringComparison.Ordinal);
        Assert.Equal(4, broken.Failures); // one try and the SDK's three retries, then a clear error
    }

    /// <summary>Forwards to a real server, but answers the first tries of every request with 503 and 500.</summary>
    private sealed class FaultyProxy : IAsyncDisposable
    {
        private readonly System.Net.HttpListener listener = new();
        private readonly HttpClient forward = new();
        private readonly System.Collections.Concurrent.ConcurrentDictionary<string, int> seen = new();
        private readonly int target;
        private readonly int failuresPerRequest;
        private readonly Task loop;
        private int failures;

        private FaultyProxy(int target, int failuresPerRequest)
        {
            this.target = target;
            this.failuresPerRequest = failuresPerRequest;
            Port = ServiceProcess.FreePort();
            listener.Prefixes.Add($"http://127.0.0.1:{Port}/");
            listener.Start();
            loop = Task.Run(ServeAsync);
        }

        public int Port { get; }

        public int Failures => Volatile.Read(ref failures);

        public static FaultyProxy Start(int target, int failuresPerRequest) => new(target, failuresPerRequest);

        public async ValueTask DisposeAsync()
        {
            listener.Stop();
            listener.Close();
            try
            {
                await loop;
            }
            catch (Exception e) when (e is System.Net.HttpListenerException or ObjectDisposedException)
            {
            }
            forward.Dispose();
        }

        private async Task ServeAsync()
        {
            while (listener.IsListening)
            {
                System.Net.HttpListenerContext context;
                try
                {
                    context = await listener.GetContextAsync();
                }
                catch (Exception e) when (e is System.Net.HttpListenerException or ObjectDisposedException)
                {
                    return;
                }
                var key = context.Request.HttpMethod + " " + context.Request.Url!.PathAndQuery;
                var tries = seen.AddOrUpdate(key, 1, (_, n) => n + 1);
                if (tries <= failuresPerRequest)
                {
                    Interlocked.Increment(ref failures);
                    context.Response.StatusCode = tries % 2 == 1 ? 503 : 500;
                    context.Response.Close();
                    continue;
                }
                var request = new HttpRequestMessage(new HttpMethod(context.Request.HttpMethod), $"http://127.0.0.1:{target}{context.Request.Url.PathAndQuery}");
                using var body = new MemoryStream();
                await context.Request.InputStream.CopyToAsync(body);
                request.Content = new ByteArrayContent(body.ToArray());
                foreach (string name in context.Request.Headers)
                {
                    var value = context.Request.Headers[name]!;
                    if (name.StartsWith("Content-", StringComparison.OrdinalIgnoreCase))
                    {
                        request.Content.Headers.TryAddWithoutValidation(name, value);
                    }
                    else if (name is not ("Host" or "Connection" or "Transfer-Encoding"))
                    {
                        request.Headers.TryAddWithoutValidation(name, value);
                    }
                }
                using var response = await forward.SendAsync(request);
                context.Response.StatusCode = (int)response.StatusCode;
                foreach (var (name, values) in response.Headers.Concat(response.Content.Headers))
                {
                    if (name is not ("Transfer-Encoding" or "Content-Length"))
                    {
                        context.Response.Headers[name] = string.Join(",", values);
                    }
                }
                var bytes = await response.Content.ReadAsByteArrayAsync();
                context.Response.ContentLength64 = bytes.Length;
                await context.Response.OutputStream.WriteAsync(bytes);
                context.Response.Close();
            }
        }
    }
}
