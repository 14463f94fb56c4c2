using System.Buffers.Binary;
using Queue.Contracts.IO;
using Queue.Contracts.Jobs;
using Queue.Contracts.Ports;

namespace Queue.Worker.Execution;

/// <summary>
/// One map attempt's whole output as one blob (Hadoop's <c>file.out</c> with its index at the end):
/// every partition's sorted run back to back, then the index — the start of each partition and the
/// end of the last (<c>R + 1</c> little-endian int64s), the records of each partition (<c>R</c>
/// int64s), the CRC-32C of each partition's bytes (<c>R</c> uint32s), the partition count (int32) and
/// the magic <c>QMO2</c>. A reducer reads the index with one ranged read (the blob's length is in the
/// job's manifest) and then only its own segment, whose checksum it verifies as it reads: a damaged
/// segment fails the reduce with its name rather than feeding it wrong records.
/// </summary>
public static class MapOutputFile
{
    private const uint Magic = 0x324F4D51; // "QMO2", little-endian

    /// <summary>Bytes of the index of a file with <paramref name="partitions"/> partitions.</summary>
    public static int IndexBytes(int partitions) => ((partitions * 2) + 1) * sizeof(long) + (partitions * sizeof(uint)) + 8;

    /// <summary>
    /// Writes the partitions in order through <paramref name="writePartition"/> (which writes one
    /// partition's records), then the index; returns the file's length.
    /// </summary>
    public static long Write(Stream blob, int partitions, Action<int, RecordWriter> writePartition, out long records)
    {
        var offsets = new long[partitions + 1];
        var counts = new long[partitions];
        var checksums = new uint[partitions];
        using (var writer = new RecordWriter(blob, checksum: true))
        {
            for (var p = 0; p < partitions; p++)
            {
                offsets[p] = writer.Bytes;
                var before = writer.Records;
                writePartition(p, writer);
                counts[p] = writer.Records - before;
                checksums[p] = writer.TakeChecksum();
            }
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
        foreach (var checksum in checksums)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(index.AsSpan(at), checksum);
            at += sizeof(uint);
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
        // Not fsynced: an output lost with the machine (or damaged) is found by its reducer, whose report
        // has the map run again. A map-only job's outputs, kept for a later reduce-only job that cannot
        // re-run them, are written durably.
        blob.Durable = task.MapOnly;
        var length = Write(blob, task.ReduceTasks, (partition, writer) =>
        {
            cancellationToken.ThrowIfCancellationRequested();
            collector.WritePartition(partition, writer);
        }, out var records);
        await blob.CommitAsync(overwrite: true, cancellationToken);
        return (length, length - IndexBytes(task.ReduceTasks), records);
    }

    /// <summary>
    /// Reads the index from the last <see cref="IndexBytes"/> of a file of <paramref name="fileLength"/>
    /// bytes; throws on a file that is not one, or whose segments do not fill it exactly (a file cut short,
    /// or never written in full before its machine went down: map outputs are not fsynced).
    /// </summary>
    public static MapOutputIndex ParseIndex(ReadOnlySpan<byte> index, int partitions, long fileLength)
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
            if (p == 0 ? offsets[p] != 0 : offsets[p] < offsets[p - 1])
            {
                throw new InvalidDataException("A map output's index is damaged: its segments are out of order.");
            }
        }
        if (offsets[partitions] + index.Length != fileLength)
        {
            throw new InvalidDataException($"A map output's index does not match its length ({fileLength} bytes).");
        }
        var checksums = new uint[partitions];
        for (var p = 0; p < partitions; p++)
        {
            records[p] = BinaryPrimitives.ReadInt64LittleEndian(index[((partitions + 1 + p) * sizeof(long))..]);
            checksums[p] = BinaryPrimitives.ReadUInt32LittleEndian(index[((((partitions * 2) + 1) * sizeof(long)) + (p * sizeof(uint)))..]);
        }
        return new MapOutputIndex(offsets, records, checksums);
    }

    /// <summary>Throws unless <paramref name="segment"/> is partition <paramref name="partition"/> of <paramref name="name"/> as its map wrote it.</summary>
    public static void Verify(ReadOnlySpan<byte> segment, uint checksum, string name, int partition)
    {
        if (Crc32C.Compute(segment) != checksum)
        {
            throw Damaged(name, partition);
        }
    }

    public static InvalidDataException Damaged(string name, int partition) =>
        new($"Map output {name} is damaged: partition {partition}'s bytes do not match their checksum.");
}

/// <summary>
/// A reduce's input from one map's committed output is missing or damaged (Hadoop's fetch failure):
/// for a map of the reduce's own job the leader runs that map again and sends the reduce once more.
/// </summary>
public sealed class MapOutputLostException(string jobId, int map, string attempt, Exception cause)
    : Exception($"Map {map}'s output (attempt {attempt}) is lost: {cause.Message}", cause)
{
    /// <summary>The job whose map output it is (a reduce-only job reads another job's).</summary>
    public string JobId { get; } = jobId;

    public int Map { get; } = map;

    public string Attempt { get; } = attempt;

    /// <summary>What a missing or damaged map output throws as it is read (any other failure is not the output's).</summary>
    public static bool IsLoss(Exception e) => e is MapOutputLostException or BlobNotFoundException or InvalidDataException or EndOfStreamException;
}

/// <summary>Where each partition's segment lies in a map output file, how many records it holds and its checksum.</summary>
public sealed class MapOutputIndex(long[] offsets, long[] records, uint[] checksums)
{
    public long Offset(int partition) => offsets[partition];

    public long Length(int partition) => offsets[partition + 1] - offsets[partition];

    public long Records(int partition) => records[partition];

    public uint Checksum(int partition) => checksums[partition];
}

/// <summary>A map output segment read from its blob, its checksum verified when the read reaches the end.</summary>
public sealed class VerifyingStream(Stream inner, long length, uint checksum, string name, int partition, Func<Exception, Exception> lost) : ReadOnlyWrapperStream(inner)
{
    private uint crc;
    private long seen;

    public override int Read(Span<byte> buffer)
    {
        var read = Inner.Read(buffer);
        Check(buffer[..read], buffer.Length);
        return read;
    }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var read = await Inner.ReadAsync(buffer, cancellationToken);
        Check(buffer.Span[..read], buffer.Length);
        return read;
    }

    private void Check(ReadOnlySpan<byte> read, int asked)
    {
        crc = Crc32C.Append(crc, read);
        seen += read.Length;
        // The end: nothing more though room was asked for.
        if (read.Length == 0 && asked > 0 && (seen != length || crc != checksum))
        {
            throw lost(MapOutputFile.Damaged(name, partition));
        }
    }
}
