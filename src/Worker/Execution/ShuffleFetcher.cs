using System.Collections.Concurrent;
using Microsoft.Extensions.Options;
using Queue.Contracts;
using Queue.Contracts.Jobs;
using Queue.Contracts.Ports;

namespace Queue.Worker.Execution;

/// <summary>
/// The reduce side of the shuffle (Hadoop's fetchers and merge manager): for one partition, reads its
/// segment of every winning map output — the map output file's index first (cached per worker), then
/// the segment with a ranged read. Small segments are copied into memory several at a time
/// (<see cref="WorkerOptions.ShuffleParallelCopies"/>) within <see cref="WorkerOptions.ShuffleMemoryBytes"/>;
/// larger ones are read as the merge consumes them, and past <see cref="WorkerOptions.MergeFactor"/>
/// open streams the inputs so far are merged into a run on local disk first.
/// A small map output file (at most 1/64 of <see cref="WorkerOptions.MapOutputCacheBytes"/>) is read
/// whole, once per worker, and every reduce task on the worker takes its segment from memory: with
/// thousands of maps and hundreds of reduces, reads (and billed blob transactions) grow with maps ×
/// workers instead of maps × reduces. Map output files are written once under their attempt's name,
/// so a cached copy can never be stale.
/// </summary>
public sealed class ShuffleFetcher(IBlobStore blobs, IOptions<StorageOptions> storage, IOptions<WorkerOptions> options)
{
    private const int MaxCachedIndexes = 20_000;
    private readonly WorkerOptions options = options.Value;
    private readonly string container = storage.Value.IntermediateContainer;
    // Map output files never change once committed: an index read for one reduce task serves the others on this worker.
    private readonly ConcurrentDictionary<string, MapOutputIndex> indexes = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Task<byte[]>> files = new(StringComparer.Ordinal);
    private readonly ConcurrentQueue<(string Name, long Bytes)> cachedInOrder = new();
    private long cachedBytes;

    /// <summary>The partition's sorted inputs, in map order (ready for a stable merge), and the bytes fetched.</summary>
    public async Task<(List<IRecordSource> Inputs, long Bytes)> FetchAsync(string source, MapManifest manifest, int partition, int partitions,
        string spillFolder, CancellationToken cancellationToken)
    {
        var maps = manifest.Attempts.Count;
        if (manifest.Lengths is not { } lengths || lengths.Count != maps)
        {
            throw new InvalidDataException($"The map manifest of job {source} has no output length for every map.");
        }
        var segments = new Segment[maps];
        var perSegmentLimit = options.ShuffleMemoryBytes / 4;
        long inMemory = 0;
        await Parallel.ForEachAsync(Enumerable.Range(0, maps), new ParallelOptions
        {
            MaxDegreeOfParallelism = options.ShuffleParallelCopies,
            CancellationToken = cancellationToken,
        }, async (m, ct) =>
        {
            var name = TaskNames.MapOutput(source, m, manifest.Attempts[m]);
            if (lengths[m] <= options.MapOutputCacheBytes / 64)
            {
                var whole = await WholeFileAsync(name, lengths[m], ct);
                var cachedIndex = indexes.GetOrAdd(name, static (_, state) =>
                    MapOutputFile.ParseIndex(state.whole.AsSpan(state.whole.Length - MapOutputFile.IndexBytes(state.partitions)), state.partitions), (whole, partitions));
                if (cachedIndex.Length(partition) > 0)
                {
                    segments[m] = new Segment(name, cachedIndex.Offset(partition), cachedIndex.Length(partition), whole, Shared: true);
                }
                return;
            }
            var index = await IndexAsync(name, lengths[m], partitions, ct);
            var length = index.Length(partition);
            if (length == 0)
            {
                return;
            }
            if (length <= perSegmentLimit && Interlocked.Add(ref inMemory, length) <= options.ShuffleMemoryBytes)
            {
                var buffer = PooledArrays<byte>.Rent((int)Math.Max(length, 16));
                try
                {
                    await using var stream = await blobs.OpenReadAsync(container, name, index.Offset(partition), length, ct);
                    await stream.ReadExactlyAsync(buffer.AsMemory(0, (int)length), ct);
                }
                catch
                {
                    PooledArrays<byte>.Return(buffer);
                    throw;
                }
                segments[m] = new Segment(name, 0, length, buffer, Shared: false);
                return;
            }
            if (length <= perSegmentLimit)
            {
                Interlocked.Add(ref inMemory, -length); // over the budget: read it during the merge instead
            }
            segments[m] = new Segment(name, index.Offset(partition), length, null, Shared: false);
        });

        var inputs = new List<IRecordSource>(maps);
        long bytes = 0;
        var streams = 0;
        try
        {
            for (var m = 0; m < maps; m++)
            {
                var segment = segments[m];
                segments[m] = default;
                if (segment.Length == 0)
                {
                    continue;
                }
                bytes += segment.Length;
                if (segment.Data is { } data)
                {
                    inputs.Add(segment.Shared ? new RecordReader(data, (int)segment.Offset, (int)segment.Length, returnToPool: false) : new RecordReader(data, (int)segment.Length));
                    continue;
                }
                inputs.Add(new RecordReader(await blobs.OpenReadAsync(container, segment.Name, segment.Offset, segment.Length, cancellationToken)));
                if (++streams == options.MergeFactor)
                {
                    // Too many open streams for one pass: merge what is here into a local run first.
                    inputs = [RecordRuns.Merge(inputs, spillFolder, cancellationToken)];
                    streams = 1;
                }
            }
        }
        catch
        {
            foreach (var input in inputs)
            {
                input.Dispose();
            }
            foreach (var segment in segments)
            {
                if (segment is { Data: { } data, Shared: false })
                {
                    PooledArrays<byte>.Return(data);
                }
            }
            throw;
        }
        return (inputs, bytes);
    }

    /// <summary>A small map output file, read whole once per worker and kept while the cache has room (oldest out first).</summary>
    private async Task<byte[]> WholeFileAsync(string name, long length, CancellationToken cancellationToken)
    {
        var load = files.GetOrAdd(name, static (key, state) => state.self.ReadWholeAsync(key, state.length), (self: this, length));
        try
        {
            return await load.WaitAsync(cancellationToken);
        }
        catch when (load.IsFaulted || load.IsCanceled)
        {
            // A failed read is not remembered: the next attempt reads again.
            files.TryRemove(new KeyValuePair<string, Task<byte[]>>(name, load));
            throw;
        }
    }

    private async Task<byte[]> ReadWholeAsync(string name, long length)
    {
        var bytes = new byte[length];
        // Not a caller's token: the read is shared by every reduce task that wants the file.
        await using (var stream = await blobs.OpenReadAsync(container, name, 0, length, CancellationToken.None))
        {
            await stream.ReadExactlyAsync(bytes, CancellationToken.None);
        }
        Interlocked.Add(ref cachedBytes, length);
        cachedInOrder.Enqueue((name, length));
        while (Volatile.Read(ref cachedBytes) > options.MapOutputCacheBytes && cachedInOrder.TryDequeue(out var oldest))
        {
            // Segments already handed out keep their array alive; only later reads miss.
            files.TryRemove(oldest.Name, out _);
            indexes.TryRemove(oldest.Name, out _);
            Interlocked.Add(ref cachedBytes, -oldest.Bytes);
        }
        return bytes;
    }

    private async Task<MapOutputIndex> IndexAsync(string name, long length, int partitions, CancellationToken cancellationToken)
    {
        if (indexes.TryGetValue(name, out var cached))
        {
            return cached;
        }
        var size = MapOutputFile.IndexBytes(partitions);
        if (length < size)
        {
            throw new InvalidDataException($"Map output {name} is {length} bytes, shorter than its index.");
        }
        var bytes = new byte[size];
        await using (var stream = await blobs.OpenReadAsync(container, name, length - size, size, cancellationToken))
        {
            await stream.ReadExactlyAsync(bytes, cancellationToken);
        }
        var index = MapOutputFile.ParseIndex(bytes, partitions);
        if (indexes.Count >= MaxCachedIndexes)
        {
            indexes.Clear();
        }
        indexes[name] = index;
        return index;
    }

    /// <summary>
    /// One map output's segment of the partition: in memory (<see cref="Data"/>: rented for this task,
    /// or <see cref="Shared"/> — a cached whole file, the segment at <see cref="Offset"/>), or to be read from the blob.
    /// </summary>
    private readonly record struct Segment(string Name, long Offset, long Length, byte[]? Data, bool Shared);
}
