using System.Globalization;
using System.Runtime.CompilerServices;

namespace Queue.Worker.Execution;

/// <summary>Output lines assembled in a pooled buffer and written to the part in large pieces.</summary>
internal sealed class LineWriter(Stream output) : IDisposable
{
    private byte[] buffer = PooledArrays<byte>.Rent(1 << 16);
    private int used;

    public long Bytes { get; private set; }

    /// <summary>Room for a line of at most <paramref name="need"/> bytes; <see cref="Advance"/> by what was written.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Span<byte> Reserve(int need)
    {
        if (buffer.Length - used < need)
        {
            Flush();
            if (buffer.Length < need)
            {
                PooledArrays<byte>.Return(buffer);
                buffer = PooledArrays<byte>.Rent(need);
            }
        }
        return buffer.AsSpan(used);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Advance(int written)
    {
        used += written;
        Bytes += written;
    }

    /// <summary>A summing reduce's line: <c>key&lt;TAB&gt;sum</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void WriteSum(ReadOnlySpan<byte> key, long sum)
    {
        // Key, tab, at most 20 digits and a sign, newline.
        var line = Reserve(key.Length + 23);
        key.CopyTo(line);
        line[key.Length] = (byte)'\t';
        sum.TryFormat(line[(key.Length + 1)..], out var digits, default, CultureInfo.InvariantCulture);
        line[key.Length + 1 + digits] = (byte)'\n';
        Advance(key.Length + digits + 2);
    }

    public void Flush()
    {
        output.Write(buffer, 0, used);
        used = 0;
    }

    public void Dispose() => PooledArrays<byte>.Return(buffer);
}
