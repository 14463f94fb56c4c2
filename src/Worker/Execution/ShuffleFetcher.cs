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
    // Lazy: GetOrAdd may run its factory for each of several reduces asking at once; only the stored one reads.
    private readonly ConcurrentDictionary<string, Lazy<Task<byte[]>>> files = new(StringComparer.Ordinal);
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
        // First where each segment lies (indexes are cached per worker), then which are copied into memory.
        var segments = new Segment[maps];
        var copies = new ParallelOptions { MaxDegreeOfParallelism = options.ShuffleParallelCopies, CancellationToken = cancellationToken };
        await Parallel.ForEachAsync(Enumerable.Range(0, maps), copies, async (m, ct) =>
        {
            var name = TaskNames.MapOutput(source, m, manifest.Attempts[m]);
            try
            {
                if (lengths[m] <= options.MapOutputCacheBytes / 64)
                {
                    var whole = await WholeFileAsync(name, lengths[m], ct);
                    var cachedIndex = indexes.GetOrAdd(name, static (_, state) =>
                        MapOutputFile.ParseIndex(state.whole.AsSpan(state.whole.Length - MapOutputFile.IndexBytes(state.partitions)), state.partitions, state.whole.Length), (whole, partitions));
                    segments[m] = new Segment(name, cachedIndex.Offset(partition), cachedIndex.Length(partition), cachedIndex.Checksum(partition), whole);
                    return;
                }
                var index = await IndexAsync(name, lengths[m], partitions, ct);
                segments[m] = new Segment(name, index.Offset(partition), index.Length(partition), index.Checksum(partition), null);
            }
            catch (Exception e) when (MapOutputLostException.IsLoss(e))
            {
                throw Lost(source, manifest, m, e);
            }
        });

        // In map order, each segment of at most a quarter of the budget goes into memory while the budget lasts:
        // all of them into one array (a slice each), so a reduce makes no garbage per segment and reuses the
        // pool's large arrays (the maps' sort buffers are the same size).
        var perSegmentLimit = options.ShuffleMemoryBytes / 4;
        var budget = Math.Min(options.ShuffleMemoryBytes, 1L << 30);
        var slices = new long[maps];
        long used = 0;
        for (var m = 0; m < maps; m++)
        {
            var length = segments[m].Length;
            slices[m] = -1;
            if (segments[m].Data is null && length > 0 && length <= perSegmentLimit && used + length <= budget)
            {
                slices[m] = used;
                used += length;
            }
        }
        using var arena = used > 0 ? new SegmentArena((int)used) : null;
        if (arena is not null)
        {
            await Parallel.ForEachAsync(Enumerable.Range(0, maps), copies, async (m, ct) =>
            {
                if (slices[m] < 0)
                {
                    return;
                }
                var segment = segments[m];
                try
                {
                    await using var stream = await blobs.OpenReadAsync(container, segment.Name, segment.Offset, segment.Length, ct);
                    var slice = arena.Data.AsMemory((int)slices[m], (int)segment.Length);
                    await stream.ReadExactlyAsync(slice, ct);
                    MapOutputFile.Verify(slice.Span, segment.Checksum, segment.Name, partition);
                }
                catch (Exception e) when (MapOutputLostException.IsLoss(e))
                {
                    throw Lost(source, manifest, m, e);
                }
            });
        }

        var inputs = new List<IRecordSource>(maps);
        long bytes = 0;
        var streams = 0;
        try
        {
            for (var m = 0; m < maps; m++)
            {
                var segment = segments[m];
                if (segment.Length == 0)
                {
                    continue;
                }
                bytes += segment.Length;
                if (segment.Data is { } data)
                {
                    // A cached whole file: each reduce checks its own partition's bytes.
                    try
                    {
                        MapOutputFile.Verify(data.AsSpan((int)segment.Offset, (int)segment.Length), segment.Checksum, segment.Name, partition);
                    }
                    catch (InvalidDataException e)
                    {
                        throw Lost(source, manifest, m, e);
                    }
                    inputs.Add(new RecordReader(data, (int)segment.Offset, (int)segment.Length));
                    continue;
                }
                if (slices[m] >= 0)
                {
                    inputs.Add(new RecordReader(arena!.Data, (int)slices[m], (int)segment.Length, arena.Share()));
                    continue;
                }
                Stream stream;
                try
                {
                    stream = await blobs.OpenReadAsync(container, segment.Name, segment.Offset, segment.Length, cancellationToken);
                }
                catch (BlobNotFoundException e)
                {
                    throw Lost(source, manifest, m, e);
                }
                // Read as the merge goes: damage shows at the segment's end, mid-merge, and is reported as this map's.
                var map = m;
                Func<Exception, Exception> lost = e => Lost(source, manifest, map, e);
                inputs.Add(new RecordReader(new VerifyingStream(stream, segment.Length, segment.Checksum, segment.Name, partition, lost), lost));
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
            throw;
        }
        return (inputs, bytes);
    }

    /// <summary>
    /// The failure of map <paramref name="m"/>'s output, with this worker's cached copy of it (a damaged
    /// file, or the index of a missing one) dropped: a later attempt reads it again.
    /// </summary>
    private MapOutputLostException Lost(string source, MapManifest manifest, int m, Exception cause)
    {
        var name = TaskNames.MapOutput(source, m, manifest.Attempts[m]);
        files.TryRemove(name, out _);
        indexes.TryRemove(name, out _);
        return cause as MapOutputLostException ?? new MapOutputLostException(source, m, manifest.Attempts[m], cause);
    }

    /// <summary>A small map output file, read whole once per worker and kept while the cache has room (oldest out first).</summary>
    private async Task<byte[]> WholeFileAsync(string name, long length, CancellationToken cancellationToken)
    {
        var entry = files.GetOrAdd(name, static (key, state) => new Lazy<Task<byte[]>>(() => state.self.ReadWholeAsync(key, state.length)), (self: this, length));
        var load = entry.Value;
        try
        {
            return await load.WaitAsync(cancellationToken);
        }
        catch when (load.IsFaulted || load.IsCanceled)
        {
            // A failed read is not remembered: the next attempt reads again.
            files.TryRemove(new KeyValuePair<string, Lazy<Task<byte[]>>>(name, entry));
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
        var index = MapOutputFile.ParseIndex(bytes, partitions, length);
        if (indexes.Count >= MaxCachedIndexes)
        {
            indexes.Clear();
        }
        indexes[name] = index;
        return index;
    }

    /// <summary>
    /// One map output's segment of the partition, at <see cref="Offset"/>, with its checksum: in a cached
    /// whole file (<see cref="Data"/>), or to be read from the blob.
    /// </summary>
    private readonly record struct Segment(string Name, long Offset, long Length, uint Checksum, byte[]? Data);

    /// <summary>
    /// The one array a reduce's in-memory segments share, from the pool; it goes back when the fetch and
    /// every reader over it are done.
    /// </summary>
    private sealed class SegmentArena(int length) : IDisposable
    {
        private int references = 1;

        public byte[] Data { get; } = PooledArrays<byte>.Rent(length);

        /// <summary>A reference for one reader; disposing it gives the reference back.</summary>
        public IDisposable Share()
        {
            Interlocked.Increment(ref references);
            return this;
        }

        public void Dispose()
        {
            if (Interlocked.Decrement(ref references) == 0)
            {
                PooledArrays<byte>.Return(Data);
            }
        }
    }
}
