using System.Runtime.CompilerServices;
using System.Text;

namespace Queue.Worker.Execution;

/// <summary>
/// Reads one split — bytes [offset, offset+length) of a blob — as chunks of whole lines, decoded
/// from UTF-8. A line belongs to the split that holds its first byte, so every line is read exactly
/// once wherever the cuts fall: a split that does not start at 0 skips through the first '\n' at or
/// after offset-1, and reads past its end to finish its last line.
/// </summary>
public sealed class SplitReader : IDisposable
{
    private readonly Stream stream;
    private readonly long end;
    private byte[] bytes;
    private char[] chars;
    private int start;
    private int filled;
    private long position; // absolute offset of bytes[start]
    private bool eof;
    private bool done;

    /// <param name="stream">The blob, positioned at <c>max(0, offset - 1)</c>. Owned.</param>
    public SplitReader(Stream stream, long offset, long length, int chunkBytes = 1 << 20)
    {
        this.stream = stream;
        end = offset + length;
        bytes = PooledArrays<byte>.Rent(chunkBytes);
        chars = PooledArrays<char>.Rent(chunkBytes);
        position = Math.Max(0, offset - 1);
        if (offset > 0)
        {
            SkipThroughNewline();
        }
        else
        {
            Fill();
            if (filled >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF)
            {
                start = 3;
                position = 3;
            }
            FirstLineOffset = position;
        }
        done |= position >= end;
    }

    /// <summary>Bytes of the blob this split consumed (its lines, including the tail read past the end).</summary>
    public long BytesRead { get; private set; }

    /// <summary>Lines read so far.</summary>
    public long Lines { get; private set; }

    /// <summary>Absolute offset of the first line this split owns (valid after construction).</summary>
    public long FirstLineOffset { get; private set; }

    /// <summary>Returns the next chunk of whole lines, or false when the split is done.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public bool TryReadChunk(out ReadOnlyMemory<char> text)
    {
        text = default;
        while (!done)
        {
            var available = bytes.AsSpan(start, filled - start);
            // Our last line is the one holding byte end-1: stop after the first '\n' at or after it.
            var stopSearchFrom = (int)Math.Clamp(end - 1 - position, 0, available.Length);
            var stop = available[stopSearchFrom..].IndexOf((byte)'\n');
            int take;
            if (stop >= 0)
            {
                take = stopSearchFrom + stop + 1;
                done = true;
            }
            else if (eof)
            {
                take = available.Length;
                done = true;
            }
            else
            {
                var lastNewline = available.LastIndexOf((byte)'\n');
                if (lastNewline < 0)
                {
                    // A line longer than the buffer: make room and read more.
                    Fill();
                    continue;
                }
                take = lastNewline + 1;
            }
            if (take == 0)
            {
                return false;
            }
            var chunk = bytes.AsSpan(start, take);
            var lines = chunk.Count((byte)'\n');
            Lines += chunk[^1] == (byte)'\n' ? lines : lines + 1;
            if (chars.Length < take)
            {
                PooledArrays<char>.Return(chars);
                chars = PooledArrays<char>.Rent(take);
            }
            var decoded = Encoding.UTF8.GetChars(chunk, chars);
            start += take;
            position += take;
            BytesRead += take;
            text = chars.AsMemory(0, decoded);
            if (!done)
            {
                Fill();
            }
            return true;
        }
        return false;
    }

    public void Dispose()
    {
        stream.Dispose();
        if (bytes.Length > 0)
        {
            PooledArrays<byte>.Return(bytes);
            PooledArrays<char>.Return(chars);
            bytes = [];
            chars = [];
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void SkipThroughNewline()
    {
        while (true)
        {
            Fill();
            var available = bytes.AsSpan(start, filled - start);
            var newline = available.IndexOf((byte)'\n');
            if (newline >= 0)
            {
                start += newline + 1;
                position += newline + 1;
                FirstLineOffset = position;
                return;
            }
            position += available.Length;
            start = filled;
            if (eof)
            {
                FirstLineOffset = position;
                done = true;
                return;
            }
        }
    }

    /// <summary>Moves unread bytes to the front and reads until the buffer is full or the stream ends.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Fill()
    {
        if (start > 0)
        {
            Buffer.BlockCopy(bytes, start, bytes, 0, filled - start);
            filled -= start;
            start = 0;
        }
        if (filled == bytes.Length)
        {
            var bigger = PooledArrays<byte>.Rent(bytes.Length * 2);
            Buffer.BlockCopy(bytes, 0, bigger, 0, filled);
            PooledArrays<byte>.Return(bytes);
            bytes = bigger;
        }
        while (!eof && filled < bytes.Length)
        {
            var read = stream.Read(bytes, filled, bytes.Length - filled);
            if (read == 0)
            {
                eof = true;
            }
            filled += read;
        }
    }
}
