using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Options;
using Queue.Contracts;
using Queue.Contracts.Jobs;
using Queue.Contracts.Ports;

namespace Queue.Worker.Execution;

/// <summary>Which reduce partition a map output key goes to.</summary>
public interface IPartitioner
{
    int Partition(ReadOnlySpan<byte> key, int partitions);
}

/// <summary>The default: FNV-1a 64 of the key's UTF-8 bytes modulo the partition count (never <c>string.GetHashCode</c>).</summary>
public sealed class HashPartitioner : IPartitioner
{
    public static HashPartitioner Instance { get; } = new();

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public int Partition(ReadOnlySpan<byte> key, int partitions) => StableHash.Partition(key, partitions);
}

/// <summary>
/// Total order (Hadoop's TotalOrderPartitioner): R − 1 sorted cut points; a key goes to the number of
/// cut points at or below it in ordinal byte order, so part 0's keys all sort before part 1's, and so
/// on: the parts concatenated are one sorted output.
/// </summary>
public sealed class RangePartitioner(byte[][] cuts) : IPartitioner
{
    public int Cuts => cuts.Length;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public int Partition(ReadOnlySpan<byte> key, int partitions)
    {
        // The first cut point greater than the key: its index is the partition.
        int low = 0, high = cuts.Length;
        while (low < high)
        {
            var middle = (low + high) >>> 1;
            if (key.SequenceCompareTo(cuts[middle]) >= 0)
            {
                low = middle + 1;
            }
            else
            {
                high = middle;
            }
        }
        return low;
    }
}

/// <summary>A job's partitioner: hash, or the range partitioner over the cut points its leader stored (read once per job and worker).</summary>
public sealed class PartitionerCache(IBlobStore blobs, IOptions<StorageOptions> storage)
{
    private const int MaxJobs = 64;
    private readonly ConcurrentDictionary<string, RangePartitioner> ranges = new(StringComparer.Ordinal);

    public async Task<IPartitioner> GetAsync(TaskMessage task, CancellationToken cancellationToken)
    {
        if (task.PartitionCuts is not { } name)
        {
            return HashPartitioner.Instance;
        }
        if (ranges.TryGetValue(name, out var cached))
        {
            return cached;
        }
        var cuts = PartitionCuts.Read(await blobs.ReadAllBytesAsync(storage.Value.IntermediateContainer, name, cancellationToken));
        if (cuts.Length != task.ReduceTasks - 1)
        {
            throw new InvalidDataException($"The job's cut points ({cuts.Length}) do not make {task.ReduceTasks} partitions.");
        }
        if (ranges.Count >= MaxJobs)
        {
            ranges.Clear();
        }
        return ranges[name] = new RangePartitioner(cuts);
    }
}
