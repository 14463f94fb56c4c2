using System.Buffers.Binary;
using System.Runtime.CompilerServices;

namespace Queue.Worker.Execution;

/// <summary>
/// A key's first eight bytes, big-endian and zero-padded, as one number: such prefixes order as the keys
/// do, so the sort buffer, the merge's heap and the summing reduce's table settle most comparisons
/// without reading the keys.
/// </summary>
public static class KeyPrefix
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Of(ReadOnlySpan<byte> key)
    {
        if (key.Length >= 8)
        {
            return BinaryPrimitives.ReadUInt64BigEndian(key);
        }
        ulong prefix = 0;
        for (var i = 0; i < key.Length; i++)
        {
            prefix |= (ulong)key[i] << (56 - (8 * i));
        }
        return prefix;
    }

    /// <summary>
    /// Orders two keys by their prefixes and lengths where those settle it: different prefixes, or equal
    /// ones with either key at most eight bytes long (that key is the other's start, so the shorter is
    /// less; equal lengths, equal keys). False when only the keys' bytes can tell.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool TryCompare(ulong prefixA, int lengthA, ulong prefixB, int lengthB, out int order)
    {
        if (prefixA != prefixB)
        {
            order = prefixA < prefixB ? -1 : 1;
            return true;
        }
        order = lengthA.CompareTo(lengthB);
        return lengthA <= 8 || lengthB <= 8;
    }
}
