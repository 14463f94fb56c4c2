using System.Numerics;
using System.Runtime.InteropServices;

namespace Queue.Worker.Execution;

/// <summary>
/// CRC-32C (Castagnoli), the checksum of a map output's partitions (Hadoop's IFile checksums its
/// segments the same way): the processor's CRC instruction, eight bytes at a time, where it has one.
/// </summary>
public static class Crc32C
{
    public static uint Append(uint crc, ReadOnlySpan<byte> data)
    {
        var words = MemoryMarshal.Cast<byte, ulong>(data);
        foreach (var word in words)
        {
            crc = BitOperations.Crc32C(crc, word);
        }
        foreach (var b in data[(words.Length * sizeof(ulong))..])
        {
            crc = BitOperations.Crc32C(crc, b);
        }
        return crc;
    }

    public static uint Compute(ReadOnlySpan<byte> data) => Append(0, data);
}
