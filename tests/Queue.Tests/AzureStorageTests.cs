using System.Security.Cryptography;
using Microsoft.Extensions.Logging.Abstractions;
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

    public AzureStorageClient Client(string? key = null, string prefix = "queue-") =>
        new(Options.Create(new AzureStorageOptions { ConnectionString = Server.ConnectionString(key ?? AzuriteServer.DevKey), QueuePrefix = prefix, BlockSizeBytes = 1 << 20, MaxPollInterval = TimeSpan.FromMilliseconds(200) }),
            NullLogger<AzureStorageClient>.Instance);
}

[CollectionDefinition("azurite")]
public sealed class AzuriteCollection : ICollectionFixture<AzuriteFixture>;

/// <summary>The work-queue conformance suite against Azure Storage Queues (Azurite): real visibility-timeout expiry and renew.</summary>
[Collection("azurite")]
public sealed class AzureStorageQueueTests(AzuriteFixture azurite) : WorkQueueConformance
{
    protected override Task<IWorkQueue> CreateQueueAsync(TimeSpan leaseDuration, int maxDeliveryCount) =>
        Task.FromResult<IWorkQueue>(new AzureStorageWorkQueue(Guid.NewGuid().ToString("N")[..12], azurite.Client(prefix: "t-"),
            Options.Create(new WorkQueueOptions { LeaseDuration = leaseDuration, MaxDeliveryCount = maxDeliveryCount })));
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
    private AzureStorageClient Client(string sas) => new(Options.Create(new AzureStorageOptions
    {
        AccountName = "devstoreaccount1",
        SasToken = sas,
        BlobEndpoint = $"http://127.0.0.1:{azurite.Server.BlobPort}/devstoreaccount1",
        QueueEndpoint = $"http://127.0.0.1:{azurite.Server.QueuePort}/devstoreaccount1",
        QueuePrefix = "sas-",
    }), NullLogger<AzureStorageClient>.Instance);

    [Fact]
    public async Task AnAccountSasGrantsBlobAndQueueAccessWithoutTheKey()
    {
        var sas = AccountSas.Create("devstoreaccount1", Convert.FromBase64String(AzuriteServer.DevKey), DateTimeOffset.UtcNow.AddHours(1));
        using var client = Client(sas);
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
        using var forged = Client(sas.Replace("sp=rwdlacup", "sp=rwdlacupx", StringComparison.Ordinal));
        await Assert.ThrowsAsync<AzureStorageException>(() => new AzureBlobStore(forged).GetPropertiesAsync(container, "a/b.txt", CancellationToken.None));
    }
}
