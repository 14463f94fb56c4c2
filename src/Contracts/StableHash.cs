using System.Runtime.CompilerServices;

namespace Queue.Contracts;

/// <summary>
/// A hash that is the same in every process and on every run (unlike <see cref="string.GetHashCode()"/>),
/// so map tasks on different machines agree on a key's partition.
/// </summary>
public static class StableHash
{
    /// <summary>64-bit FNV-1a over the key's UTF-8 bytes.</summary>
    // Runs per record on the map side: compiled optimised from the first call rather than tiered up.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static ulong Fnv1a(ReadOnlySpan<byte> utf8)
    {
        var hash = 14695981039346656037UL;
        foreach (var b in utf8)
        {
            hash = (hash ^ b) * 1099511628211UL;
        }
        return hash;
    }

    /// <summary>The reduce partition of a UTF-8 key.</summary>
    public static int Partition(ReadOnlySpan<byte> utf8Key, int partitions) =>
        partitions == 1 ? 0 : (int)(Fnv1a(utf8Key) % (ulong)partitions);
}
