using System.Buffers.Text;
using System.Runtime.CompilerServices;
using System.Text;

namespace Queue.Worker.Execution;

/// <summary>
/// A summing reduce by hash, as Spark aggregates for reduceByKey, instead of a k-way merge: each
/// fetched segment is read in turn and its values added into a <see cref="CountTable{T}"/> of UTF-8
/// keys, whose keys are sorted once at the end and written with their sums. A fine-grained job's
/// reduce has one segment per map (2,000 of them), and merging them compared each record about
/// log2(segments) times, on cache misses; here a record costs one table lookup, and only the distinct
/// keys are sorted. Memory stays bounded: past the budget the table is written to local disk as a
/// sorted run and emptied, and the runs are merged and summed at the end. The output is the merge's,
/// byte for byte: one <c>key&lt;TAB&gt;sum</c> line per key, in ordinal order of the keys' bytes.
/// </summary>
public static class SumAggregator
{
    /// <summary>
    /// Sums <paramref name="inputs"/> (disposing them) into <paramref name="output"/>, holding at most
    /// about <paramref name="budget"/> bytes of keys in memory and spilling runs into <paramref name="folder"/>;
    /// <c>Spilled</c> counts the records written to those runs.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static (long Groups, long Records, long Bytes, long Spilled) Run(List<IRecordSource> inputs, long budget, int mergeFactor, string folder, Stream output, CancellationToken cancellationToken)
    {
        var table = CountTable<byte>.Rent();
        var runs = new List<IRecordSource>();
        long records = 0, spilled = 0;
        try
        {
            long held = 0;
            foreach (var input in inputs)
            {
                while (input.MoveNext())
                {
                    var key = input.Key;
                    table.GetOrAdd(key, out var added) += Amount(input.Value);
                    if (added && (held += CountTable<byte>.CostOf(key.Length)) > budget)
                    {
                        spilled += table.Count;
                        runs.Add(Spill(table, folder));
                        held = 0;
                        if (runs.Count >= Math.Max(2, mergeFactor))
                        {
                            // Runs merge into one (not summed: the last pass sums) so that open files stay few.
                            var batch = new List<IRecordSource>(runs);
                            runs.Clear();
                            runs.Add(RecordRuns.Merge(batch, folder, cancellationToken));
                        }
                    }
                    if ((++records & 0xFFFF) == 0)
                    {
                        cancellationToken.ThrowIfCancellationRequested();
                    }
                }
            }
            if (runs.Count == 0)
            {
                using var lines = new LineWriter(output);
                var groups = WriteSorted(table, lines, cancellationToken);
                lines.Flush();
                return (groups, records, lines.Bytes, 0);
            }
            spilled += table.Count;
            runs.Add(Spill(table, folder));
            var merged = new RecordGroups(new RecordMerger(runs));
            runs = [];
            using (merged)
            {
                var (groups, bytes) = ReduceRunner.SumGroups(merged, output, cancellationToken);
                return (groups, records, bytes, spilled);
            }
        }
        finally
        {
            foreach (var input in inputs)
            {
                input.Dispose();
            }
            foreach (var run in runs)
            {
                run.Dispose();
            }
            CountTable<byte>.Return(table);
        }
    }

    /// <summary>A summing reduce's value: a decimal integer, or the job fails saying which value was not.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long Amount(ReadOnlySpan<byte> value)
    {
        if (value is [(byte)'1'])
        {
            return 1;
        }
        if (!Utf8Parser.TryParse(value, out long amount, out var consumed) || consumed != value.Length)
        {
            throw new FormatException($"The app reduces by sum, but a value is not an integer: '{Encoding.UTF8.GetString(value)}'.");
        }
        return amount;
    }

    /// <summary>Writes the table's keys in ordinal order with their sums; returns how many.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static long WriteSorted(CountTable<byte> table, LineWriter lines, CancellationToken cancellationToken)
    {
        var (entries, count) = Sort(table);
        try
        {
            cancellationToken.ThrowIfCancellationRequested();
            var keys = table.Keys;
            foreach (ref readonly var entry in entries.AsSpan(0, count))
            {
                lines.WriteSum(keys.Slice(entry.Offset, entry.Length), entry.Total);
            }
            return count;
        }
        finally
        {
            PooledArrays<Entry>.Return(entries);
        }
    }

    /// <summary>The table as a sorted run of <c>key, sum</c> records on local disk; the table is emptied.</summary>
    private static IRecordSource Spill(CountTable<byte> table, string folder)
    {
        var (entries, count) = Sort(table);
        try
        {
            var run = RecordRuns.Write(folder, writer =>
            {
                var keys = table.Keys;
                Span<byte> digits = stackalloc byte[20];
                foreach (ref readonly var entry in entries.AsSpan(0, count))
                {
                    entry.Total.TryFormat(digits, out var written, default, System.Globalization.CultureInfo.InvariantCulture);
                    writer.Write(keys.Slice(entry.Offset, entry.Length), digits[..written]);
                }
            });
            table.Clear();
            return run;
        }
        finally
        {
            PooledArrays<Entry>.Return(entries);
        }
    }

    /// <summary>The table's entries in ordinal order of their keys, in a pooled array the caller returns.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static (Entry[] Entries, int Count) Sort(CountTable<byte> table)
    {
        var keys = table.Keys;
        var entries = PooledArrays<Entry>.Rent(Math.Max(1, table.Count));
        var count = 0;
        var cursor = 0;
        while (table.NextEntry(ref cursor, out var offset, out var length, out var total))
        {
            entries[count++] = new Entry(KeyPrefix.Of(keys.Slice(offset, length)), offset, length, total);
        }
        IntroSort.Sort(entries.AsSpan(0, count), new EntryComparer(table));
        return (entries, count);
    }

    private readonly record struct Entry(ulong Prefix, int Offset, int Length, long Total);

    private readonly struct EntryComparer(CountTable<byte> table) : IComparer<Entry>
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public int Compare(Entry x, Entry y)
        {
            if (KeyPrefix.TryCompare(x.Prefix, x.Length, y.Prefix, y.Length, out var order))
            {
                return order;
            }
            var keys = table.Keys;
            return keys.Slice(x.Offset, x.Length).SequenceCompareTo(keys.Slice(y.Offset, y.Length));
        }
    }
}
