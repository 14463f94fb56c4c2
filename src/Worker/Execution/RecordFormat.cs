using System.Runtime.CompilerServices;

namespace Queue.Worker.Execution;

/// <summary>
/// Intermediate records: <c>[varint keyLength][key][varint valueLength][value]</c>, UTF-8, sorted by
/// key in ordinal byte order within a file. Used for map outputs and for spills.
/// </summary>
public interface IRecordSource : IDisposable
{
    bool MoveNext();

    ReadOnlySpan<byte> Key { get; }

    ReadOnlySpan<byte> Value { get; }
}

/// <summary>Writes records to a stream through a pooled buffer; with <paramref name="checksum"/>, keeps a CRC-32C of what it wrote.</summary>
public sealed class RecordWriter(Stream stream, bool checksum = false) : IDisposable
{
    private byte[] buffer = PooledArrays<byte>.Rent(1 << 16);
    private int used;
    private uint crc;

    public long Records { get; private set; }

    public long Bytes { get; private set; }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Write(ReadOnlySpan<byte> key, ReadOnlySpan<byte> value)
    {
        var need = key.Length + value.Length + 10;
        if (buffer.Length - used < need)
        {
            Flush();
            if (buffer.Length < need)
            {
                PooledArrays<byte>.Return(buffer);
                buffer = PooledArrays<byte>.Rent(need);
            }
        }
        var span = buffer.AsSpan(used);
        var n = WriteVarint(span, key.Length);
        key.CopyTo(span[n..]);
        n += key.Length;
        n += WriteVarint(span[n..], value.Length);
        value.CopyTo(span[n..]);
        n += value.Length;
        used += n;
        Bytes += n;
        Records++;
    }

    public void Flush()
    {
        if (used > 0)
        {
            if (checksum)
            {
                crc = Crc32C.Append(crc, buffer.AsSpan(0, used));
            }
            stream.Write(buffer, 0, used);
            used = 0;
        }
    }

    /// <summary>Flushes, and returns the CRC-32C of what was written since the last call (the checksum of one partition).</summary>
    public uint TakeChecksum()
    {
        Flush();
        var taken = crc;
        crc = 0;
        return taken;
    }

    public void Dispose()
    {
        if (buffer.Length > 0)
        {
            PooledArrays<byte>.Return(buffer);
            buffer = [];
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int WriteVarint(Span<byte> span, int value)
    {
        var v = (uint)value;
        var i = 0;
        while (v >= 0x80)
        {
            span[i++] = (byte)(v | 0x80);
            v >>= 7;
        }
        span[i++] = (byte)v;
        return i;
    }
}

/// <summary>Reads records sequentially from a stream, which it owns. Spans stay valid until the next <see cref="MoveNext"/>.</summary>
public sealed class RecordReader : IRecordSource
{
    private readonly Stream stream;
    // Records already in memory are read in place: never compacted, never refilled, never returned
    // to the pool by the reader (an owner, if any, is disposed instead).
    private readonly bool inMemory;
    // What a malformed record is reported as: the stream's source's own failure (a damaged map output).
    private readonly Func<Exception, Exception>? damaged;
    private IDisposable? owner;
    private byte[] buffer;
    private int start;
    private int end;
    private int keyStart;
    private int keyLength;
    private int valueStart;
    private int valueLength;

    /// <summary>Records from <paramref name="stream"/>; a malformed one throws what <paramref name="damaged"/> makes of the error, when given.</summary>
    public RecordReader(Stream stream, Func<Exception, Exception>? damaged = null)
    {
        this.stream = stream;
        this.damaged = damaged;
        buffer = PooledArrays<byte>.Rent(1 << 16);
    }

    /// <summary>
    /// Records in part of an array others may share — a cached map output file, left as it is, or a
    /// reduce's segment arena, whose reference (<paramref name="owner"/>) is disposed with the reader.
    /// </summary>
    public RecordReader(byte[] data, int offset, int length, IDisposable? owner = null)
    {
        stream = Stream.Null;
        inMemory = true;
        this.owner = owner;
        buffer = data;
        start = offset;
        end = offset + length;
        BytesRead = length;
    }

    public long BytesRead { get; private set; }

    public ReadOnlySpan<byte> Key
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        get => buffer.AsSpan(keyStart, keyLength);
    }

    public ReadOnlySpan<byte> Value
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        get => buffer.AsSpan(valueStart, valueLength);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public bool MoveNext()
    {
        if (!Ensure(1))
        {
            return false;
        }
        // Offsets are kept relative to start: Ensure may compact the buffer.
        Ensure(10);
        var pos = start;
        keyLength = ReadVarint(ref pos);
        var keyHeader = pos - start;
        if (!Ensure(keyHeader + keyLength + 1))
        {
            throw Malformed("Truncated intermediate record.");
        }
        Ensure(keyHeader + keyLength + 10);
        pos = start + keyHeader + keyLength;
        valueLength = ReadVarint(ref pos);
        var valueHeader = pos - (start + keyHeader + keyLength);
        if (!Ensure(keyHeader + keyLength + valueHeader + valueLength))
        {
            throw Malformed("Truncated intermediate record.");
        }
        keyStart = start + keyHeader;
        valueStart = keyStart + keyLength + valueHeader;
        start = valueStart + valueLength;
        return true;
    }

    public void Dispose()
    {
        stream.Dispose();
        if (buffer.Length > 0 && !inMemory)
        {
            PooledArrays<byte>.Return(buffer);
        }
        buffer = [];
        owner?.Dispose();
        owner = null;
    }

    private Exception Malformed(string message) => damaged is null ? new InvalidDataException(message) : damaged(new InvalidDataException(message));

    /// <summary>Makes at least <paramref name="count"/> bytes available from <see cref="start"/>; false at end of stream.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private bool Ensure(int count)
    {
        if (end - start >= count)
        {
            return true;
        }
        if (inMemory)
        {
            return false;
        }
        if (start > 0)
        {
            Buffer.BlockCopy(buffer, start, buffer, 0, end - start);
            end -= start;
            start = 0;
        }
        if (buffer.Length < count)
        {
            var bigger = PooledArrays<byte>.Rent(Math.Max(count, buffer.Length * 2));
            Buffer.BlockCopy(buffer, 0, bigger, 0, end);
            PooledArrays<byte>.Return(buffer);
            buffer = bigger;
        }
        while (end < count)
        {
            var read = stream.Read(buffer, end, buffer.Length - end);
            if (read == 0)
            {
                return end >= count;
            }
            end += read;
            BytesRead += read;
        }
        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int ReadVarint(ref int pos)
    {
        var result = 0;
        var shift = 0;
        while (true)
        {
            if (pos >= end)
            {
                throw Malformed("Truncated intermediate record header.");
            }
            var b = buffer[pos++];
            result |= (b & 0x7F) << shift;
            if (b < 0x80)
            {
                return result;
            }
            shift += 7;
            if (shift > 28)
            {
                throw Malformed("Corrupt intermediate record length.");
            }
        }
    }
}
