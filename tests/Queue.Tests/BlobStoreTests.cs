using System.Text;
using Queue.Adapters.Embedded;
using Queue.Contracts.Ports;

namespace Queue.Tests;

public sealed class FileSystemBlobStoreTests : IDisposable
{
    private readonly string root = Path.Combine(Path.GetTempPath(), "queue-tests", Guid.NewGuid().ToString("N"));
    private readonly FileSystemBlobStore store;

    public FileSystemBlobStoreTests() => store = new FileSystemBlobStore(root);

    public void Dispose() => Directory.Delete(root, recursive: true);

    [Fact]
    public async Task CommittedBlobIsVisibleOnlyAfterCommit()
    {
        await using (var writer = await store.OpenWriteAsync("out", "job/part-00000", CancellationToken.None))
        {
            await writer.WriteAsync(Encoding.UTF8.GetBytes("half"));
            Assert.Null(await store.GetPropertiesAsync("out", "job/part-00000", CancellationToken.None));
            await writer.WriteAsync(Encoding.UTF8.GetBytes(" and whole"));
            Assert.True(await writer.CommitAsync(overwrite: false, CancellationToken.None));
        }
        Assert.Equal("half and whole", Encoding.UTF8.GetString(await store.ReadAllBytesAsync("out", "job/part-00000", CancellationToken.None)));
    }

    [Fact]
    public async Task FirstCommitWinsWhenOverwriteIsOff()
    {
        await using var first = await store.OpenWriteAsync("out", "p", CancellationToken.None);
        await using var second = await store.OpenWriteAsync("out", "p", CancellationToken.None);
        await first.WriteAsync(Encoding.UTF8.GetBytes("first"));
        await second.WriteAsync(Encoding.UTF8.GetBytes("second"));
        Assert.True(await first.CommitAsync(overwrite: false, CancellationToken.None));
        Assert.False(await second.CommitAsync(overwrite: false, CancellationToken.None));
        Assert.Equal("first", Encoding.UTF8.GetString(await store.ReadAllBytesAsync("out", "p", CancellationToken.None)));
    }

    [Fact]
    public async Task AbandonedWriteLeavesNothingBehind()
    {
        await using (var writer = await store.OpenWriteAsync("out", "never", CancellationToken.None))
        {
            await writer.WriteAsync(new byte[1000]);
        }
        Assert.Null(await store.GetPropertiesAsync("out", "never", CancellationToken.None));
        Assert.Empty(Directory.GetFiles(Path.Combine(root, ".tmp")));
    }

    [Fact]
    public async Task ReadsRangesAndListsByPrefixInOrdinalOrder()
    {
        foreach (var name in new[] { "b/2", "a/1", "a/10", "a/x/3", "c" })
        {
            await store.PutAsync("in", name, Encoding.UTF8.GetBytes("0123456789"), CancellationToken.None);
        }
        var names = new List<string>();
        await foreach (var item in store.ListAsync("in", "a/", CancellationToken.None))
        {
            names.Add(item.Name);
        }
        Assert.Equal(["a/1", "a/10", "a/x/3"], names);
        await using var range = await store.OpenReadAsync("in", "c", 3, 4, CancellationToken.None);
        Assert.Equal("3456", await new StreamReader(range).ReadToEndAsync());
        Assert.Empty(await ListAsync("missing-container"));
    }

    [Fact]
    public async Task NamesCannotEscapeTheirContainer()
    {
        await Assert.ThrowsAsync<ArgumentException>(() => store.OpenWriteAsync("out", "../evil", CancellationToken.None));
        await Assert.ThrowsAsync<ArgumentException>(() => store.OpenReadAsync("out", "/etc/passwd", 0, null, CancellationToken.None));
        await Assert.ThrowsAsync<ArgumentException>(() => store.OpenReadAsync("..", "x", 0, null, CancellationToken.None));
        await Assert.ThrowsAsync<BlobNotFoundException>(() => store.OpenReadAsync("out", "absent", 0, null, CancellationToken.None));
    }

    [Fact]
    public async Task DeletePrefixRemovesEveryBlobUnderIt()
    {
        for (var i = 0; i < 5; i++)
        {
            await store.PutAsync("mid", $"job1/m-{i}/part", new byte[] { 1 }, CancellationToken.None);
        }
        await store.PutAsync("mid", "job2/keep", new byte[] { 1 }, CancellationToken.None);
        Assert.Equal(5, await store.DeletePrefixAsync("mid", "job1/", CancellationToken.None));
        Assert.Equal(["job2/keep"], await ListAsync("mid"));
    }

    private async Task<List<string>> ListAsync(string container)
    {
        var names = new List<string>();
        await foreach (var item in store.ListAsync(container, "", CancellationToken.None))
        {
            names.Add(item.Name);
        }
        return names;
    }
}
