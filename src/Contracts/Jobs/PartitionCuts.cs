using System.Buffers.Binary;

namespace Queue.Contracts.Jobs;

/// <summary>
/// A list of keys as one small blob (Hadoop's <c>_partition.lst</c>): a range-partitioned job's sample
/// keys as a worker drew them, and its R − 1 cut points as the leader chose them. Format: the count
/// (int32), then each key as its length (int32) and its UTF-8 bytes; all little-endian.
/// </summary>
public static class PartitionCuts
{
    public static byte[] Write(IReadOnlyList<byte[]> keys)
    {
        var size = sizeof(int);
        foreach (var key in keys)
        {
            size += sizeof(int) + key.Length;
        }
        var bytes = new byte[size];
        BinaryPrimitives.WriteInt32LittleEndian(bytes, keys.Count);
        var at = sizeof(int);
        foreach (var key in keys)
        {
            BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(at), key.Length);
            key.CopyTo(bytes, at + sizeof(int));
            at += sizeof(int) + key.Length;
        }
        return bytes;
    }

    public static byte[][] Read(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length < sizeof(int))
        {
            throw new InvalidDataException("A key list is shorter than its count.");
        }
        var count = BinaryPrimitives.ReadInt32LittleEndian(bytes);
        if (count < 0 || count > (bytes.Length - sizeof(int)) / sizeof(int))
        {
            throw new InvalidDataException("A key list's count does not fit its length.");
        }
        var keys = new byte[count][];
        var at = sizeof(int);
        for (var i = 0; i < count; i++)
        {
            var length = at + sizeof(int) <= bytes.Length ? BinaryPrimitives.ReadInt32LittleEndian(bytes[at..]) : -1;
            if (length < 0 || at + sizeof(int) + length > bytes.Length)
            {
                throw new InvalidDataException("A key list is truncated.");
            }
            keys[i] = bytes.Slice(at + sizeof(int), length).ToArray();
            at += sizeof(int) + length;
        }
        return keys;
    }

    /// <summary>
    /// The R − 1 cut points that split <paramref name="sample"/> (sorted in ordinal byte order here) into
    /// <paramref name="partitions"/> ranges of about equal size, as TeraSort's sampler picks them.
    /// </summary>
    public static List<byte[]> Choose(List<byte[]> sample, int partitions)
    {
        sample.Sort(static (a, b) => a.AsSpan().SequenceCompareTo(b));
        var cuts = new List<byte[]>(Math.Max(0, partitions - 1));
        for (var i = 1; i < partitions; i++)
        {
            cuts.Add(sample.Count == 0 ? [] : sample[(int)((long)i * sample.Count / partitions)]);
        }
        return cuts;
    }
}
