using System.Runtime.CompilerServices;

namespace Queue.Worker.Execution;

/// <summary>
/// K-way merge of sorted record sources by key (ordinal bytes), ties broken by source order so the
/// merge is stable. Owns its sources. Each heap entry carries its source's current key as its first
/// eight bytes and its length, compared first: a reduce merges thousands of map segments, each
/// record's key sits in a different segment's memory, and most comparisons (equal keys of up to eight
/// bytes, as most words, included) are then settled in the heap's own array without touching the keys.
/// </summary>
public sealed class RecordMerger : IRecordSource
{
    private readonly IRecordSource[] sources;
    private readonly Entry[] heap;
    private int count;
    private int current = -1;
    private bool advancePending;

    public RecordMerger(IReadOnlyList<IRecordSource> inputs)
    {
        sources = new IRecordSource[inputs.Count];
        heap = new Entry[inputs.Count];
        for (var i = 0; i < inputs.Count; i++)
        {
            sources[i] = inputs[i];
            if (inputs[i].MoveNext())
            {
                heap[count++] = Describe(i);
                SiftUp(count - 1);
            }
        }
    }

    public ReadOnlySpan<byte> Key
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        get => sources[current].Key;
    }

    public ReadOnlySpan<byte> Value
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        get => sources[current].Value;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public bool MoveNext()
    {
        if (advancePending)
        {
            // The previous record's spans were valid until now; advance its source.
            var top = heap[0].Source;
            if (sources[top].MoveNext())
            {
                heap[0] = Describe(top);
                SiftDown(0);
            }
            else
            {
                heap[0] = heap[--count];
                if (count > 0)
                {
                    SiftDown(0);
                }
            }
        }
        if (count == 0)
        {
            advancePending = false;
            return false;
        }
        current = heap[0].Source;
        advancePending = true;
        return true;
    }

    public void Dispose()
    {
        foreach (var source in sources)
        {
            source.Dispose();
        }
    }

    /// <summary>A source's current key as its first eight bytes (big-endian, zero-padded) and its length.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Entry Describe(int source)
    {
        var key = sources[source].Key;
        return new Entry(KeyPrefix.Of(key), key.Length, source);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool Less(in Entry a, in Entry b)
    {
        if (!KeyPrefix.TryCompare(a.Prefix, a.Length, b.Prefix, b.Length, out var c))
        {
            c = sources[a.Source].Key.SequenceCompareTo(sources[b.Source].Key);
        }
        return c < 0 || (c == 0 && a.Source < b.Source);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void SiftUp(int i)
    {
        while (i > 0)
        {
            var parent = (i - 1) / 2;
            if (!Less(heap[i], heap[parent]))
            {
                return;
            }
            (heap[i], heap[parent]) = (heap[parent], heap[i]);
            i = parent;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void SiftDown(int i)
    {
        var moving = heap[i];
        while (true)
        {
            var left = (2 * i) + 1;
            if (left >= count)
            {
                break;
            }
            var smallest = left + 1 < count && Less(heap[left + 1], heap[left]) ? left + 1 : left;
            if (!Less(heap[smallest], moving))
            {
                break;
            }
            heap[i] = heap[smallest];
            i = smallest;
        }
        heap[i] = moving;
    }

    /// <summary>A heap entry: the source and what its current key is compared by first.</summary>
    private readonly record struct Entry(ulong Prefix, int Length, int Source);
}

/// <summary>
/// Groups a sorted record stream by key. <see cref="NextGroup"/> moves to the next key; the group's
/// values are read with <see cref="NextValue"/> or, decoded, through <see cref="Values"/>.
/// </summary>
public sealed class RecordGroups : IDisposable
{
    private readonly IRecordSource source;
    private readonly GroupValues values;
    private byte[] key = new byte[256];
    private int keyLength;
    private bool hasRecord;
    private bool unconsumed;
    private bool inGroup;

    public RecordGroups(IRecordSource source)
    {
        this.source = source;
        hasRecord = source.MoveNext();
        unconsumed = hasRecord;
        values = new GroupValues(this);
    }

    public ReadOnlySpan<byte> Key => key.AsSpan(0, keyLength);

    /// <summary>Records consumed so far.</summary>
    public long Records { get; private set; }

    /// <summary>The current group's values as strings; enumerate at most once per group.</summary>
    public IEnumerable<string> Values => values;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public bool NextGroup()
    {
        // Skip what the caller left of the current group; this stops on the next group's first record.
        while (NextValue(out _))
        {
        }
        if (!unconsumed)
        {
            return false;
        }
        var k = source.Key;
        if (k.Length > key.Length)
        {
            key = new byte[Math.Max(k.Length, key.Length * 2)];
        }
        k.CopyTo(key);
        keyLength = k.Length;
        inGroup = true;
        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public bool NextValue(out ReadOnlySpan<byte> value)
    {
        value = default;
        if (!inGroup)
        {
            return false;
        }
        if (!unconsumed)
        {
            hasRecord = hasRecord && source.MoveNext();
            unconsumed = hasRecord;
        }
        if (!unconsumed || !source.Key.SequenceEqual(Key))
        {
            inGroup = false;
            return false;
        }
        unconsumed = false;
        value = source.Value;
        Records++;
        return true;
    }

    public void Dispose() => source.Dispose();

    /// <summary>Reused for every group: decoding values lazily keeps huge groups out of memory.</summary>
    private sealed class GroupValues(RecordGroups groups) : IEnumerable<string>, IEnumerator<string>
    {
        public string Current { get; private set; } = "";

        object System.Collections.IEnumerator.Current => Current;

        public IEnumerator<string> GetEnumerator() => this;

        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => this;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public bool MoveNext()
        {
            if (!groups.NextValue(out var value))
            {
                return false;
            }
            Current = System.Text.Encoding.UTF8.GetString(value);
            return true;
        }

        public void Reset() => throw new NotSupportedException("Group values can be enumerated once.");

        public void Dispose()
        {
        }
    }
}

/// <summary>Sorted runs on local disk: records written to a new file in the attempt's folder, read back as one source.</summary>
public static class RecordRuns
{
    /// <summary>Merges <paramref name="batch"/> (disposing it) into a new file in <paramref name="folder"/>, deleted when the returned source is.</summary>
    public static IRecordSource Merge(List<IRecordSource> batch, string folder, CancellationToken cancellationToken) =>
        Write(folder, writer =>
        {
            using var merger = new RecordMerger(batch);
            while (merger.MoveNext())
            {
                writer.Write(merger.Key, merger.Value);
                if ((writer.Records & 0xFFFF) == 0)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                }
            }
        });

    /// <summary>A new file in <paramref name="folder"/> holding what <paramref name="write"/> writes (in key order), deleted when the returned source is.</summary>
    public static IRecordSource Write(string folder, Action<RecordWriter> write)
    {
        Directory.CreateDirectory(folder);
        var path = Path.Combine(folder, $"run-{Guid.NewGuid():N}");
        using (var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
        using (var writer = new RecordWriter(file))
        {
            write(writer);
            writer.Flush();
        }
        return new RecordReader(new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, 1 << 16, FileOptions.DeleteOnClose | FileOptions.SequentialScan));
    }
}
