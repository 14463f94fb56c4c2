using System.Text;
using Queue.Adapters.Embedded;
using Queue.Contracts.Ports;

namespace Queue.Tests;

/// <summary>The embedded coordination store's log on a real folder: reopened, torn, compacted, locked.</summary>
public sealed class EmbeddedStoreTests : IDisposable
{
    private readonly string folder = Path.Combine(Path.GetTempPath(), "queue-kvlog", Guid.NewGuid().ToString("N"));

    private string LogPath => Path.Combine(folder, "coordination.log");

    public void Dispose() => Directory.Delete(folder, recursive: true);

    private static byte[] Bytes(string text) => Encoding.UTF8.GetBytes(text);

    [Fact]
    public async Task ReopeningGivesBackEveryAcknowledgedWriteWithItsRevisions()
    {
        KvEntry? before;
        using (var store = new EmbeddedKeyValueStore(LogPath, TimeProvider.System))
        {
            Assert.True(await store.TransactAsync([KvCompare.Absent("/a")], [new KvWrite("/a", Bytes("1")), new KvWrite("/b", Bytes("2"))], CancellationToken.None));
            Assert.True(await store.TransactAsync([], [new KvWrite("/a", Bytes("3")), KvWrite.Delete("/b")], CancellationToken.None));
            Assert.False(await store.TransactAsync([KvCompare.Absent("/a")], [new KvWrite("/c", Bytes("no"))], CancellationToken.None));
            await store.PutLeasedAsync("/leased", Bytes("x"), TimeSpan.FromMinutes(1), CancellationToken.None);
            before = await store.GetAsync("/a", CancellationToken.None);
        }
        using var reopened = new EmbeddedKeyValueStore(LogPath, TimeProvider.System);
        var after = await reopened.GetAsync("/a", CancellationToken.None);
        Assert.Equal("3", Encoding.UTF8.GetString(after!.Value));
        Assert.Equal(before!.CreateRevision, after.CreateRevision);
        Assert.Equal(before.ModRevision, after.ModRevision);
        Assert.Null(await reopened.GetAsync("/b", CancellationToken.None));
        Assert.Null(await reopened.GetAsync("/c", CancellationToken.None));
        // Leased keys die with their writer; revisions keep increasing past them.
        Assert.Null(await reopened.GetAsync("/leased", CancellationToken.None));
        Assert.True(await reopened.TransactAsync([], [new KvWrite("/d", Bytes("4"))], CancellationToken.None));
        Assert.True((await reopened.GetAsync("/d", CancellationToken.None))!.ModRevision > after.ModRevision + 1);
    }

    [Fact]
    public async Task ATornLastRecordIsCutOffAndTheRestKept()
    {
        using (var store = new EmbeddedKeyValueStore(LogPath, TimeProvider.System))
        {
            await store.TransactAsync([], [new KvWrite("/kept", Bytes("yes"))], CancellationToken.None);
            await store.TransactAsync([], [new KvWrite("/torn", new byte[1000])], CancellationToken.None);
        }
        // A crash in the middle of the last append.
        using (var file = new FileStream(LogPath, FileMode.Open))
        {
            file.SetLength(file.Length - 300);
        }
        var length = new FileInfo(LogPath).Length;
        using (var store = new EmbeddedKeyValueStore(LogPath, TimeProvider.System))
        {
            Assert.NotNull(await store.GetAsync("/kept", CancellationToken.None));
            Assert.Null(await store.GetAsync("/torn", CancellationToken.None));
            Assert.True(new FileInfo(LogPath).Length < length);
            await store.TransactAsync([], [new KvWrite("/after", Bytes("ok"))], CancellationToken.None);
        }
        using var again = new EmbeddedKeyValueStore(LogPath, TimeProvider.System);
        Assert.NotNull(await again.GetAsync("/after", CancellationToken.None));
        Assert.NotNull(await again.GetAsync("/kept", CancellationToken.None));
    }

    [Fact]
    public async Task AMostlyDeadLogIsCompactedAndStillReopens()
    {
        var value = new byte[64 * 1024];
        using (var store = new EmbeddedKeyValueStore(LogPath, TimeProvider.System))
        {
            // 20 MB of overwrites of four keys: far past the compaction threshold.
            for (var i = 0; i < 320; i++)
            {
                value[0] = (byte)i;
                await store.TransactAsync([], [new KvWrite($"/k{i % 4}", value)], CancellationToken.None);
            }
        }
        Assert.True(new FileInfo(LogPath).Length < 10 << 20, $"The log was not compacted: {new FileInfo(LogPath).Length} bytes.");
        using var reopened = new EmbeddedKeyValueStore(LogPath, TimeProvider.System);
        var entries = await reopened.ListAsync("/k", CancellationToken.None);
        Assert.Equal(4, entries.Count);
        Assert.Equal((byte)(319 % 256), (await reopened.GetAsync("/k3", CancellationToken.None))!.Value[0]);
    }

    [Fact]
    public async Task PrefixListingsFindTheirKeysAmongManyAndDropExpiredLeases()
    {
        using var store = new EmbeddedKeyValueStore(LogPath, TimeProvider.System);
        for (var batch = 0; batch < 20; batch++)
        {
            var writes = Enumerable.Range(batch * 100, 100).SelectMany(i => new[] { new KvWrite($"/jobs/{i:D4}/spec", Bytes("s")), new KvWrite($"/jobs/{i:D4}/status", Bytes("t")) }).ToList();
            Assert.True(await store.TransactAsync([], writes, CancellationToken.None));
        }
        async Task<List<string>> Keys(string prefix) => (await store.ListAsync(prefix, CancellationToken.None)).Select(e => e.Key).ToList();
        Assert.Equal(["/jobs/1234/spec", "/jobs/1234/status"], await Keys("/jobs/1234/"));
        Assert.Equal(4000, (await Keys("/jobs/")).Count);
        Assert.Equal((await Keys("/jobs/")).Order(StringComparer.Ordinal), await Keys("/jobs/"));
        Assert.Empty(await Keys("/jobs/9999/"));
        Assert.Empty(await Keys("/zz"));
        Assert.Empty(await Keys("/a"));

        // A leased key whose lease ran out is not listed, and listing it away does not upset the walk.
        await store.PutLeasedAsync("/workers/a", Bytes("1"), TimeSpan.FromMilliseconds(50), CancellationToken.None);
        await store.PutLeasedAsync("/workers/b", Bytes("2"), TimeSpan.FromMinutes(1), CancellationToken.None);
        await store.PutLeasedAsync("/workers/c", Bytes("3"), TimeSpan.FromMilliseconds(50), CancellationToken.None);
        await Task.Delay(300);
        Assert.Equal(["/workers/b"], await Keys("/workers/"));
        Assert.Equal(["/workers/b"], await Keys("/workers/"));
        Assert.Null(await store.GetAsync("/workers/a", CancellationToken.None));
    }

    [Fact]
    public void ASecondEngineOnTheSameFolderIsRefusedClearly()
    {
        using var first = new EmbeddedKeyValueStore(LogPath, TimeProvider.System);
        var error = Assert.Throws<InvalidOperationException>(() => new EmbeddedKeyValueStore(LogPath, TimeProvider.System));
        Assert.Contains("in use by another process", error.Message, StringComparison.Ordinal);
    }
}
