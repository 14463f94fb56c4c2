namespace Queue.Contracts.Ports;

/// <summary>
/// Blob storage organised as containers of named blobs. Writes go through a
/// <see cref="BlobWriter"/> and become visible only when committed, all at once.
/// </summary>
public interface IBlobStore
{
    Task CreateContainerIfMissingAsync(string container, CancellationToken cancellationToken);

    /// <summary>Opens a blob for streaming reads from <paramref name="offset"/>; <paramref name="length"/> null reads to the end.</summary>
    /// <exception cref="BlobNotFoundException">The blob does not exist.</exception>
    Task<Stream> OpenReadAsync(string container, string name, long offset, long? length, CancellationToken cancellationToken);

    Task<BlobItem?> GetPropertiesAsync(string container, string name, CancellationToken cancellationToken);

    /// <summary>Lists blobs whose names start with <paramref name="prefix"/>, in ordinal name order. An absent container lists nothing.</summary>
    IAsyncEnumerable<BlobItem> ListAsync(string container, string prefix, CancellationToken cancellationToken);

    /// <summary>Deletes a blob; returns false when it did not exist.</summary>
    Task<bool> DeleteAsync(string container, string name, CancellationToken cancellationToken);

    /// <summary>Starts a write. Nothing is visible under <paramref name="name"/> until <see cref="BlobWriter.CommitAsync"/>.</summary>
    Task<BlobWriter> OpenWriteAsync(string container, string name, CancellationToken cancellationToken);
}

/// <summary>A blob's name (relative to its container) and size.</summary>
public sealed record BlobItem(string Container, string Name, long Length);

/// <summary>
/// A write-only stream for a blob being written. <see cref="CommitAsync"/> publishes the content
/// under the final name atomically; disposing without committing discards it.
/// </summary>
public abstract class BlobWriter : Stream
{
    /// <summary>
    /// Makes the written content visible under the final name in one step.
    /// With <paramref name="overwrite"/> false the commit only succeeds when no blob of that name
    /// exists, and returns false otherwise (the first committed attempt wins).
    /// </summary>
    public abstract Task<bool> CommitAsync(bool overwrite, CancellationToken cancellationToken);

    /// <summary>
    /// Whether the commit must survive a crash of the machine (the default). False for what the engine
    /// makes again when it is lost (a map output: the reducer that finds it missing or damaged has its map
    /// run again), so a file system store skips the fsync, as Hadoop and Spark write map outputs; an
    /// object store commits durably either way.
    /// </summary>
    public bool Durable { get; set; } = true;

    public sealed override bool CanRead => false;
    public sealed override bool CanSeek => false;
    public sealed override bool CanWrite => true;
    public sealed override long Length => throw new NotSupportedException();
    public sealed override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public sealed override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    public sealed override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public sealed override void SetLength(long value) => throw new NotSupportedException();
}

public sealed class BlobNotFoundException(string container, string name)
    : Exception($"Blob '{name}' was not found in container '{container}'.");

/// <summary>Helpers shared by every blob adapter.</summary>
public static class BlobStoreExtensions
{
    /// <summary>Uploads <paramref name="content"/> and commits it (overwriting).</summary>
    public static async Task PutAsync(this IBlobStore store, string container, string name, Stream content, CancellationToken cancellationToken)
    {
        await using var writer = await store.OpenWriteAsync(container, name, cancellationToken);
        await content.CopyToAsync(writer, cancellationToken);
        await writer.CommitAsync(overwrite: true, cancellationToken);
    }

    public static async Task PutAsync(this IBlobStore store, string container, string name, ReadOnlyMemory<byte> content, CancellationToken cancellationToken)
    {
        await using var writer = await store.OpenWriteAsync(container, name, cancellationToken);
        await writer.WriteAsync(content, cancellationToken);
        await writer.CommitAsync(overwrite: true, cancellationToken);
    }

    public static async Task<byte[]> ReadAllBytesAsync(this IBlobStore store, string container, string name, CancellationToken cancellationToken)
    {
        await using var stream = await store.OpenReadAsync(container, name, 0, null, cancellationToken);
        using var buffer = new MemoryStream();
        await stream.CopyToAsync(buffer, cancellationToken);
        return buffer.ToArray();
    }

    /// <summary>True when at least one blob's name starts with <paramref name="prefix"/> (an absent container holds none).</summary>
    public static async Task<bool> AnyAsync(this IBlobStore store, string container, string prefix, CancellationToken cancellationToken)
    {
        await foreach (var _ in store.ListAsync(container, prefix, cancellationToken))
        {
            return true;
        }
        return false;
    }

    /// <summary>Deletes every blob under a prefix; returns how many were deleted.</summary>
    public static Task<int> DeletePrefixAsync(this IBlobStore store, string container, string prefix, CancellationToken cancellationToken) =>
        store.DeletePrefixAsync(container, prefix, parallelism: 1, cancellationToken);

    /// <summary>Deletes every blob under a prefix, <paramref name="parallelism"/> at once (each a request on a remote store); returns how many.</summary>
    public static async Task<int> DeletePrefixAsync(this IBlobStore store, string container, string prefix, int parallelism, CancellationToken cancellationToken)
    {
        var names = new List<string>();
        await foreach (var item in store.ListAsync(container, prefix, cancellationToken))
        {
            names.Add(item.Name);
        }
        await Parallel.ForEachAsync(names, new ParallelOptions { MaxDegreeOfParallelism = parallelism, CancellationToken = cancellationToken },
            async (name, ct) => await store.DeleteAsync(container, name, ct));
        return names.Count;
    }
}
