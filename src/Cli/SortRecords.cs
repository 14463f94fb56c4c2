using System.Buffers;
using Queue.Contracts;

namespace Queue.Cli;

/// <summary>
/// Records for the sort benchmark, after gensort's ASCII records (the TeraSort input): 100 bytes each —
/// a 10-character printable key, a tab, the row id as 32 hex digits, a space, 55 filler letters and a
/// newline. The key is what the built-in <c>sort</c> app orders by (the line up to its first tab).
/// The same seed and rows give the same bytes. And TeraValidate's checks over a sorted output.
/// </summary>
public static class SortRecords
{
    public const int RecordBytes = 100;
    private const int KeyBytes = 10;

    /// <summary>Writes rows <paramref name="firstRow"/> .. +<paramref name="rows"/> to <paramref name="output"/>.</summary>
    public static void Write(Stream output, long firstRow, long rows, ulong seed)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(RecordBytes * 10_000);
        try
        {
            var used = 0;
            for (var row = firstRow; row < firstRow + rows; row++)
            {
                var record = buffer.AsSpan(used, RecordBytes);
                // A per-row generator (splitmix64), so any range of rows can be made on its own.
                var state = seed ^ ((ulong)row * 0x9E3779B97F4A7C15UL);
                for (var i = 0; i < KeyBytes; i++)
                {
                    record[i] = (byte)(' ' + (int)(Next(ref state) % 95));
                }
                record[KeyBytes] = (byte)'\t';
                ((ulong)row).TryFormat(record.Slice(KeyBytes + 1 + 16, 16), out _, "X16", System.Globalization.CultureInfo.InvariantCulture);
                record.Slice(KeyBytes + 1, 16).Fill((byte)'0');
                record[KeyBytes + 33] = (byte)' ';
                record.Slice(KeyBytes + 34, RecordBytes - KeyBytes - 35).Fill((byte)('A' + (int)(row % 26)));
                record[RecordBytes - 1] = (byte)'\n';
                used += RecordBytes;
                if (used + RecordBytes > buffer.Length)
                {
                    output.Write(buffer, 0, used);
                    used = 0;
                }
            }
            output.Write(buffer, 0, used);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private static ulong Next(ref ulong state)
    {
        var z = state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>What TeraValidate checks: record count, an order-independent checksum, and (for outputs) key order.</summary>
    public sealed class Summary
    {
        private byte[] lastKey = [];
        private byte[] partial = [];

        public long Records { get; private set; }

        /// <summary>Sum of every line's FNV-1a 64 (with its newline): the same for any order of the same lines.</summary>
        public ulong Checksum { get; private set; }

        /// <summary>Where the first key out of order was met, when one was.</summary>
        public string? Disorder { get; private set; }

        /// <summary>Feeds the next bytes of the stream (any chunking).</summary>
        public void Add(ReadOnlySpan<byte> bytes)
        {
            while (!bytes.IsEmpty)
            {
                var end = bytes.IndexOf((byte)'\n');
                if (end < 0)
                {
                    partial = [.. partial, .. bytes];
                    return;
                }
                if (partial.Length > 0)
                {
                    Line([.. partial, .. bytes[..(end + 1)]]);
                    partial = [];
                }
                else
                {
                    Line(bytes[..(end + 1)]);
                }
                bytes = bytes[(end + 1)..];
            }
        }

        /// <summary>Ends the stream: a last line without a newline counts as a line.</summary>
        public Summary Finish()
        {
            if (partial.Length > 0)
            {
                Line([.. partial, (byte)'\n']);
                partial = [];
            }
            return this;
        }

        private void Line(ReadOnlySpan<byte> line)
        {
            Records++;
            Checksum += StableHash.Fnv1a(line);
            var content = line[..^1];
            var tab = content.IndexOf((byte)'\t');
            var key = tab < 0 ? content : content[..tab];
            if (Disorder is null && key.SequenceCompareTo(lastKey) < 0)
            {
                Disorder = $"record {Records}: key '{System.Text.Encoding.UTF8.GetString(key)}' after '{System.Text.Encoding.UTF8.GetString(lastKey)}'";
            }
            if (lastKey.Length != key.Length)
            {
                lastKey = new byte[key.Length];
            }
            key.CopyTo(lastKey);
        }
    }

    /// <summary>Reads a stream to its end into a summary.</summary>
    public static async Task<Summary> SummarizeAsync(Stream stream, Summary? into, CancellationToken cancellationToken)
    {
        var summary = into ?? new Summary();
        var buffer = ArrayPool<byte>.Shared.Rent(1 << 20);
        try
        {
            int read;
            while ((read = await stream.ReadAsync(buffer, cancellationToken)) > 0)
            {
                summary.Add(buffer.AsSpan(0, read));
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        return summary;
    }
}
