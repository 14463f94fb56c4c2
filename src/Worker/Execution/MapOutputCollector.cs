using System.Buffers;
using System.Runtime.CompilerServices;
using System.Text;
using Queue.Contracts;
using Queue.Contracts.Apps;

namespace Queue.Worker.Execution;

/// <summary>
/// Buffers a map task's output as UTF-8 in one pooled arena, partitioned by a stable hash of the key.
/// When the arena is full its records are sorted by (partition, key), combined, and spilled to a
/// local run file, so memory stays bounded whatever the map emits. At the end every partition is
/// the merge of the in-memory records and the spills.
/// Apps with a combiner first go through a hash table of pending values per key, combined every
/// <see cref="CombineBatch"/> values (a combiner may run on any subset), so frequent keys cost a
/// lookup instead of a record to sort.
/// </summary>
public sealed class MapOutputCollector : IMapEmitter, IDisposable
{
    private readonly int partitions;
    private readonly IMapReduceApp app;
    private readonly string spillFolder;
    private readonly IPartitioner partitioner;
    private const int CombineBatch = 64;
    private const int MaxInternedValues = 1024;
    private readonly List<SpillRun> spills = [];
    private readonly int budget;
    private readonly Dictionary<string, List<string>>? pending;
    private CountTable<char>? sums;
    private readonly HashSet<string> interned = new(StringComparer.Ordinal);
    private long pendingBytes;
    private string lastValue = "";
    private byte[] data;
    private Meta[] meta;
    private int used;
    private int count;

    public MapOutputCollector(int partitions, IMapReduceApp app, int bufferBytes, string spillFolder, IPartitioner? partitioner = null)
    {
        this.partitions = partitions;
        this.partitioner = partitioner ?? HashPartitioner.Instance;
        this.app = app;
        this.spillFolder = spillFolder;
        budget = bufferBytes;
        data = PooledArrays<byte>.Rent(bufferBytes);
        meta = PooledArrays<Meta>.Rent(4096);
        if (app.HasCombiner && app.CombinesBySum)
        {
            sums = CountTable<char>.Rent();
        }
        else if (app.HasCombiner)
        {
            pending = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        }
    }

    public long OutputRecords { get; private set; }


    public long SpilledRecords { get; private set; }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Emit(ReadOnlySpan<char> key, ReadOnlySpan<char> value)
    {
        OutputRecords++;
        if (sums is not null)
        {
            AddToSum(key, value);
            return;
        }
        if (pending is null)
        {
            Append(key, value);
            return;
        }
        var lookup = pending.GetAlternateLookup<ReadOnlySpan<char>>();
        if (!lookup.TryGetValue(key, out var values))
        {
            values = new List<string>(4);
            pending[key.ToString()] = values;
            pendingBytes += (key.Length * 2) + 96;
        }
        values.Add(Intern(value));
        pendingBytes += 8;
        if (values.Count == CombineBatch)
        {
            lookup.TryGetValue(key, out var actualKey, out _);
            var combined = app.Combine(actualKey!, values);
            values.Clear();
            values.Add(combined);
            pendingBytes -= 8 * (CombineBatch - 1);
        }
        if (pendingBytes > budget / 2)
        {
            FlushPending();
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void EmitCount(ReadOnlySpan<char> key, long amount)
    {
        if (sums is null)
        {
            EmitCountAsText(key, amount);
            return;
        }
        OutputRecords++;
        AddToSum(key, amount);
    }

    // Apart from EmitCount, which runs per word: its stack buffer would be zeroed and guarded on every call.
    private void EmitCountAsText(ReadOnlySpan<char> key, long amount)
    {
        Span<char> digits = stackalloc char[20];
        amount.TryFormat(digits, out var written, default, System.Globalization.CultureInfo.InvariantCulture);
        Emit(key, digits[..written]);
    }

    /// <summary>A summing combiner's map side: one running total per key, no value strings at all.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void AddToSum(ReadOnlySpan<char> key, ReadOnlySpan<char> value)
    {
        long amount;
        if (value is ['1'])
        {
            amount = 1;
        }
        else if (!long.TryParse(value, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out amount))
        {
            throw new FormatException($"The app combines by sum, but emitted a value that is not an integer: '{value}'.");
        }
        AddToSum(key, amount);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void AddToSum(ReadOnlySpan<char> key, long amount)
    {
        sums!.GetOrAdd(key, out var added) += amount;
        if (added)
        {
            pendingBytes += CountTable<char>.CostOf(key.Length);
            if (pendingBytes > budget / 2)
            {
                FlushPending();
            }
        }
    }

    /// <summary>Combines every pending key into one record of the sort buffer.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void FlushPending()
    {
        if (sums is not null)
        {
            Span<char> digits = stackalloc char[20];
            var cursor = 0;
            while (sums.Next(ref cursor, out var key, out var total))
            {
                total.TryFormat(digits, out var written, default, System.Globalization.CultureInfo.InvariantCulture);
                Append(key, digits[..written]);
            }
            sums.Clear();
            pendingBytes = 0;
            return;
        }
        if (pending is null)
        {
            return;
        }
        foreach (var (key, values) in pending)
        {
            var value = values.Count == 1 ? values[0] : app.Combine(key, values);
            Append(key, value);
        }
        pending.Clear();
        pendingBytes = 0;
    }

    /// <summary>Values repeat (wordcount's "1"): reuse one string per distinct small value.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private string Intern(ReadOnlySpan<char> value)
    {
        if (value.SequenceEqual(lastValue))
        {
            return lastValue;
        }
        lastValue = InternSlow(value);
        return lastValue;
    }

    private string InternSlow(ReadOnlySpan<char> value)
    {
        if (value.Length > 32)
        {
            return value.ToString();
        }
        var lookup = interned.GetAlternateLookup<ReadOnlySpan<char>>();
        if (lookup.TryGetValue(value, out var known))
        {
            return known;
        }
        var text = value.ToString();
        if (interned.Count < MaxInternedValues)
        {
            interned.Add(text);
        }
        return text;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Append(ReadOnlySpan<char> key, ReadOnlySpan<char> value)
    {
        var max = (key.Length + value.Length) * 3;
        // The budget covers record bytes and their index entries together.
        if (data.Length - used < max || used + ((long)count * Unsafe.SizeOf<Meta>()) >= budget)
        {
            if (count > 0)
            {
                Spill();
            }
            if (data.Length < max)
            {
                // One record larger than the whole buffer: give it room of its own.
                PooledArrays<byte>.Return(data);
                data = PooledArrays<byte>.Rent(max);
            }
        }
        if (count == meta.Length)
        {
            var bigger = PooledArrays<Meta>.Rent(meta.Length * 2);
            meta.AsSpan(0, count).CopyTo(bigger);
            PooledArrays<Meta>.Return(meta);
            meta = bigger;
        }
        var span = data.AsSpan(used);
        var keyLength = Encoding.UTF8.GetBytes(key, span);
        var valueLength = Encoding.UTF8.GetBytes(value, span[keyLength..]);
        var keyBytes = span[..keyLength];
        meta[count++] = new Meta(KeyPrefix.Of(keyBytes), used, keyLength, valueLength, partitioner.Partition(keyBytes, partitions));
        used += keyLength + valueLength;
    }

    /// <summary>
    /// Writes partition <paramref name="partition"/>'s records, merged, sorted and combined, to
    /// <paramref name="output"/>. Call <see cref="Finish"/> once before the first partition.
    /// </summary>
    public void WritePartition(int partition, RecordWriter output) => WriteCombined(ReadPartition(partition), output);

    /// <summary>Partition <paramref name="partition"/>'s records in key order (buffer and spills merged, not combined). Call <see cref="Finish"/> first.</summary>
    public IRecordSource ReadPartition(int partition)
    {
        if (spills.Count == 0)
        {
            // The usual case: the buffer alone, read as it is, not through a merge of one.
            return Buffered(partition);
        }
        var sources = new List<IRecordSource>(spills.Count + 1);
        foreach (var spill in spills)
        {
            sources.Add(spill.Open(partition));
        }
        sources.Add(Buffered(partition));
        return new RecordMerger(sources);
    }

    /// <summary>Partition <paramref name="partition"/>'s records in the sorted buffer.</summary>
    private BufferSource Buffered(int partition) => new(this, PartitionStart(partition), PartitionStart(partition + 1));

    /// <summary>Ends the input: combines what is pending and sorts what is in memory (the spills are sorted already).</summary>
    public void Finish()
    {
        FlushPending();
        SortBuffer();
    }

    private void SortBuffer() => IntroSort.Sort(meta.AsSpan(0, count), new MetaComparer(data));

    public void Dispose()
    {
        if (sums is not null)
        {
            CountTable<char>.Return(sums);
            sums = null;
        }
        foreach (var spill in spills)
        {
            spill.Delete();
        }
        spills.Clear();
        if (data.Length > 0)
        {
            PooledArrays<byte>.Return(data);
            PooledArrays<Meta>.Return(meta);
            data = [];
            meta = [];
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Spill()
    {
        SortBuffer();
        Directory.CreateDirectory(spillFolder);
        var path = Path.Combine(spillFolder, $"spill-{Guid.NewGuid():N}");
        var starts = new long[partitions + 1];
        using (var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
        using (var writer = new RecordWriter(file))
        {
            for (var p = 0; p < partitions; p++)
            {
                writer.Flush();
                starts[p] = file.Position;
                WriteCombined(Buffered(p), writer);
            }
            writer.Flush();
            starts[partitions] = file.Position;
            SpilledRecords += writer.Records;
        }
        spills.Add(new SpillRun(path, starts));
        used = 0;
        count = 0;
    }

    /// <summary>Copies a sorted stream to <paramref name="output"/>, combining each key's values when the app can.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void WriteCombined(IRecordSource sorted, RecordWriter output)
    {
        using var groups = new RecordGroups(sorted);
        if (!app.HasCombiner)
        {
            while (groups.NextGroup())
            {
                while (groups.NextValue(out var value))
                {
                    output.Write(groups.Key, value);
                }
            }
            return;
        }
        var encoded = new ArrayBufferWriter<byte>(256);
        while (groups.NextGroup())
        {
            // Skip the combiner for single values: a combiner is optional by contract, and most keys are rare.
            if (!groups.NextValue(out var first))
            {
                continue;
            }
            encoded.Clear();
            encoded.Write(first);
            if (!groups.NextValue(out var second))
            {
                output.Write(groups.Key, encoded.WrittenSpan);
                continue;
            }
            var key = Encoding.UTF8.GetString(groups.Key);
            var result = app.Combine(key, Prepend(Encoding.UTF8.GetString(encoded.WrittenSpan), Encoding.UTF8.GetString(second), groups.Values));
            encoded.Clear();
            var bytes = encoded.GetSpan(Encoding.UTF8.GetMaxByteCount(result.Length));
            var written = Encoding.UTF8.GetBytes(result, bytes);
            encoded.Advance(written);
            output.Write(groups.Key, encoded.WrittenSpan);
        }
    }

    private static IEnumerable<string> Prepend(string first, string second, IEnumerable<string> rest)
    {
        yield return first;
        yield return second;
        foreach (var value in rest)
        {
            yield return value;
        }
    }

    /// <summary>Index of the first sorted record of <paramref name="partition"/> (binary search on the sorted buffer).</summary>
    private int PartitionStart(int partition)
    {
        int lo = 0, hi = count;
        while (lo < hi)
        {
            var mid = (lo + hi) >>> 1;
            if (meta[mid].Partition < partition)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid;
            }
        }
        return lo;
    }

    /// <summary>A record in the buffer; <see cref="KeyPrefix"/> orders most of them without touching the arena.</summary>
    private readonly record struct Meta(ulong Prefix, int Offset, int KeyLength, int ValueLength, int Partition);

    private readonly struct MetaComparer(byte[] data) : IComparer<Meta>
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public int Compare(Meta a, Meta b)
        {
            if (a.Partition != b.Partition)
            {
                return a.Partition < b.Partition ? -1 : 1;
            }
            if (!KeyPrefix.TryCompare(a.Prefix, a.KeyLength, b.Prefix, b.KeyLength, out var c))
            {
                c = data.AsSpan(a.Offset, a.KeyLength).SequenceCompareTo(data.AsSpan(b.Offset, b.KeyLength));
            }
            // Equal keys keep emit order (offsets grow with emits) so the sort is stable.
            return c != 0 ? c : a.Offset.CompareTo(b.Offset);
        }
    }

    private sealed class BufferSource(MapOutputCollector owner, int start, int end) : IRecordSource
    {
        private int index = start - 1;

        public ReadOnlySpan<byte> Key
        {
            [MethodImpl(MethodImplOptions.AggressiveOptimization)]
            get
            {
                var m = owner.meta[index];
                return owner.data.AsSpan(m.Offset, m.KeyLength);
            }
        }

        public ReadOnlySpan<byte> Value
        {
            [MethodImpl(MethodImplOptions.AggressiveOptimization)]
            get
            {
                var m = owner.meta[index];
                return owner.data.AsSpan(m.Offset + m.KeyLength, m.ValueLength);
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public bool MoveNext() => ++index < end;

        public void Dispose()
        {
        }
    }

    private sealed record SpillRun(string Path, long[] Starts)
    {
        public IRecordSource Open(int partition)
        {
            var file = new FileStream(Path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
            file.Seek(Starts[partition], SeekOrigin.Begin);
            return new RecordReader(new Queue.Contracts.IO.ReadLimitStream(file, Starts[partition + 1] - Starts[partition]));
        }

        public void Delete() => File.Delete(Path);
    }
}
