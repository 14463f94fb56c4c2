using System.Buffers.Binary;
using Queue.Contracts.Jobs;
using Queue.Contracts.Ports;

namespace Queue.Worker.Execution;

/// <summary>
/// One map attempt's whole output as one blob (Hadoop's <c>file.out</c> with its index at the end):
/// every partition's sorted run back to back, then the index — the start of each partition and the
/// end of the last (<c>R + 1</c> little-endian int64s), the records of each partition (<c>R</c>
/// int64s), the partition count (int32) and the magic <c>QMO1</c>. A reducer reads the index with one
/// ranged read (the blob's length is in the job's manifest) and then only its own segment.
/// </summary>
public static class MapOutputFile
{
    private const uint Magic = 0x314F4D51; // "QMO1", little-endian

    /// <summary>Bytes of the index of a file with <paramref name="partitions"/> partitions.</summary>
    public static int IndexBytes(int partitions) => ((partitions * 2) + 1) * sizeof(long) + 8;

    /// <summary>
    /// Writes the partitions in order through <paramref name="writePartition"/> (which writes one
    /// partition's records), then the index; returns the file's length.
    /// </summary>
    public static long Write(Stream blob, int partitions, Action<int, RecordWriter> writePartition, out long records)
    {
        var offsets = new long[partitions + 1];
        var counts = new long[partitions];
        using (var writer = new RecordWriter(blob))
        {
            for (var p = 0; p < partitions; p++)
            {
                offsets[p] = writer.Bytes;
                var before = writer.Records;
                writePartition(p, writer);
                counts[p] = writer.Records - before;
            }
            writer.Flush();
            offsets[partitions] = writer.Bytes;
            records = writer.Records;
        }
        var index = new byte[IndexBytes(partitions)];
        var at = 0;
        foreach (var offset in offsets)
        {
            BinaryPrimitives.WriteInt64LittleEndian(index.AsSpan(at), offset);
            at += sizeof(long);
        }
        foreach (var count in counts)
        {
            BinaryPrimitives.WriteInt64LittleEndian(index.AsSpan(at), count);
            at += sizeof(long);
        }
        BinaryPrimitives.WriteInt32LittleEndian(index.AsSpan(at), partitions);
        BinaryPrimitives.WriteUInt32LittleEndian(index.AsSpan(at + 4), Magic);
        blob.Write(index);
        return offsets[partitions] + index.Length;
    }

    /// <summary>
    /// Writes a finished collector's output as the attempt's one map output blob and commits it: one
    /// write, one commit, whatever the partition count. Returns the file's length, and the bytes and
    /// records of the partitions' runs.
    /// </summary>
    public static async Task<(long Length, long Bytes, long Records)> CommitAsync(IBlobStore blobs, string container, TaskMessage task, string attemptId,
        MapOutputCollector collector, CancellationToken cancellationToken)
    {
        collector.Finish();
        await using var blob = await blobs.OpenWriteAsync(container, TaskNames.MapOutput(task.JobId, task.Index, attemptId), cancellationToken);
        var length = Write(blob, task.ReduceTasks, (partition, writer) =>
        {
            cancellationToken.ThrowIfCancellationRequested();
            collector.WritePartition(partition, writer);
        }, out var records);
        await blob.CommitAsync(overwrite: true, cancellationToken);
        return (length, length - IndexBytes(task.ReduceTasks), records);
    }

    /// <summary>Reads the index from the last <see cref="IndexBytes"/> of a file; throws on a file that is not one.</summary>
    public static MapOutputIndex ParseIndex(ReadOnlySpan<byte> index, int partitions)
    {
        if (index.Length != IndexBytes(partitions)
            || BinaryPrimitives.ReadInt32LittleEndian(index[^8..]) != partitions
            || BinaryPrimitives.ReadUInt32LittleEndian(index[^4..]) != Magic)
        {
            throw new InvalidDataException($"A map output's index is damaged or was written for another partition count than {partitions}.");
        }
        var offsets = new long[partitions + 1];
        var records = new long[partitions];
        for (var p = 0; p <= partitions; p++)
        {
            offsets[p] = BinaryPrimitives.ReadInt64LittleEndian(index[(p * sizeof(long))..]);
        }
        for (var p = 0; p < partitions; p++)
        {
            records[p] = BinaryPrimitives.ReadInt64LittleEndian(index[((partitions + 1 + p) * sizeof(long))..]);
        }
        return new MapOutputIndex(offsets, records);
    }
}

/// <summary>Where each partition's segment lies in a map output file, and how many records it holds.</summary>
public sealed class MapOutputIndex(long[] offsets, long[] records)
{
    public long Offset(int partition) => offsets[partition];

    public long Length(int partition) => offsets[partition + 1] - offsets[partition];

    public long Records(int partition) => records[partition];
}
