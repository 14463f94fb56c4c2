using System.Text;
using Queue.Contracts;
using Queue.Contracts.Apps;
using Queue.Worker.Apps;
using Queue.Worker.Execution;

namespace Queue.Tests;

public sealed class RecordTests
{
    [Fact]
    public void PartitionOfAKeyIsStableAcrossProcessesAndRuns()
    {
        // FNV-1a 64 test vectors: the hash must never depend on the runtime's string hashing.
        Assert.Equal(0xcbf29ce484222325UL, StableHash.Fnv1a([]));
        Assert.Equal(0xaf63dc4c8601ec8cUL, StableHash.Fnv1a("a"u8));
        Assert.Equal(0x85944171f73967e8UL, StableHash.Fnv1a("foobar"u8));
        Assert.Equal(StableHash.Partition("hello"u8, 7), StableHash.Partition(Encoding.UTF8.GetBytes("hello"), 7));
        var counts = new int[4];
        for (var i = 0; i < 4000; i++)
        {
            counts[StableHash.Partition(Encoding.UTF8.GetBytes($"word{i}"), 4)]++;
        }
        Assert.All(counts, c => Assert.InRange(c, 800, 1200));
    }

    private static MemoryStream Run(params (string Key, string Value)[] records)
    {
        var stream = new MemoryStream();
        using var writer = new RecordWriter(stream);
        foreach (var (key, value) in records)
        {
            writer.Write(Encoding.UTF8.GetBytes(key), Encoding.UTF8.GetBytes(value));
        }
        writer.Flush();
        stream.Position = 0;
        return stream;
    }

    /// <summary>
    /// The merge compares keys' first eight bytes before the keys: keys sharing long prefixes, shorter
    /// than eight bytes, holding zero bytes or bytes above 0x7f must still come out in ordinal order,
    /// equal keys in source order. Checked against a stable sort of the same records.
    /// </summary>
    [Fact]
    public void MergeOrdersKeysByTheirBytesWhateverTheirFirstEightBytes()
    {
        var random = new Random(7);
        byte[][] alphabet = [[0], [1], [0x61], [0x62], [0x7f], [0x80], [0xff]];
        var runs = new List<List<(byte[] Key, int Source, int Seq)>>();
        for (var source = 0; source < 40; source++)
        {
            var run = new List<(byte[], int, int)>();
            for (var n = random.Next(0, 60); n > 0; n--)
            {
                // A shared stem of 0, 7, 8 or 9 bytes, then up to three letters of a small alphabet.
                var key = new List<byte>(Encoding.ASCII.GetBytes("abcdefghi"[..new[] { 0, 7, 8, 9 }[random.Next(4)]]));
                for (var tail = random.Next(0, 4); tail > 0; tail--)
                {
                    key.AddRange(alphabet[random.Next(alphabet.Length)]);
                }
                run.Add(([.. key], source, run.Count));
            }
            run.Sort((a, b) => a.Item1.AsSpan().SequenceCompareTo(b.Item1) is var c && c != 0 ? c : a.Item3.CompareTo(b.Item3));
            runs.Add(run);
        }
        var expected = runs.SelectMany(r => r).OrderBy(r => r.Key, Comparer<byte[]>.Create((a, b) => a.AsSpan().SequenceCompareTo(b)))
            .ThenBy(r => r.Source).ThenBy(r => r.Seq).Select(r => $"{Convert.ToHexString(r.Key)}/{r.Source}.{r.Seq}").ToList();
        var readers = new List<IRecordSource>();
        foreach (var run in runs)
        {
            var stream = new MemoryStream();
            using (var writer = new RecordWriter(stream))
            {
                foreach (var (key, source, seq) in run)
                {
                    writer.Write(key, Encoding.ASCII.GetBytes($"{source}.{seq}"));
                }
                writer.Flush();
            }
            stream.Position = 0;
            readers.Add(new RecordReader(stream));
        }
        using var merged = new RecordMerger(readers);
        var actual = new List<string>();
        while (merged.MoveNext())
        {
            actual.Add($"{Convert.ToHexString(merged.Key)}/{Encoding.ASCII.GetString(merged.Value)}");
        }
        Assert.Equal(expected, actual);
    }

    /// <summary>
    /// A summing reduce goes by hash: its output must be the merge's, one <c>key TAB sum</c> line per key
    /// in ordinal order of the keys' bytes, whether its table fits (budget 1 MiB) or goes to disk as runs
    /// and is merged back (budgets of a few keys, and a merge factor of 2 so runs are merged in between).
    /// Keys share stems of 7 to 9 bytes, are shorter than eight bytes, hold zero and high bytes; sums are
    /// negative and past 32 bits too. Checked against a dictionary's sums sorted by the keys' bytes.
    /// </summary>
    [Theory]
    [InlineData(1 << 20)]
    [InlineData(2_000)]
    [InlineData(200)]
    public void ASummingReduceByHashWritesWhatTheMergeWould(int budget)
    {
        var random = new Random(11);
        byte[][] alphabet = [[0], [1], [0x61], [0x62], [0x7f], [0x80], [0xff]];
        var sums = new Dictionary<string, long>(StringComparer.Ordinal);
        var inputs = new List<IRecordSource>();
        for (var source = 0; source < 30; source++)
        {
            var run = new List<(byte[] Key, long Amount)>();
            for (var n = random.Next(0, 80); n > 0; n--)
            {
                var key = new List<byte>(Encoding.ASCII.GetBytes("abcdefghi"[..new[] { 0, 7, 8, 9 }[random.Next(4)]]));
                for (var tail = random.Next(0, 4); tail > 0; tail--)
                {
                    key.AddRange(alphabet[random.Next(alphabet.Length)]);
                }
                var amount = random.Next(4) switch { 0 => 1, 1 => -random.Next(1000), 2 => 3_000_000_000L, _ => random.Next(100) };
                run.Add(([.. key], amount));
                var hex = Convert.ToHexString([.. key]);
                sums[hex] = sums.GetValueOrDefault(hex) + amount;
            }
            run.Sort((a, b) => a.Key.AsSpan().SequenceCompareTo(b.Key));
            var stream = new MemoryStream();
            using (var writer = new RecordWriter(stream))
            {
                foreach (var (key, amount) in run)
                {
                    writer.Write(key, Encoding.ASCII.GetBytes(amount.ToString(System.Globalization.CultureInfo.InvariantCulture)));
                }
                writer.Flush();
            }
            stream.Position = 0;
            inputs.Add(new RecordReader(stream));
        }
        var expected = sums.Keys.Select(Convert.FromHexString).OrderBy(k => k, Comparer<byte[]>.Create((a, b) => a.AsSpan().SequenceCompareTo(b)))
            .Select(k => $"{Convert.ToHexString(k)}\t{sums[Convert.ToHexString(k)]}").ToList();
        var folder = Path.Combine(Path.GetTempPath(), "queue-tests", Guid.NewGuid().ToString("N"));
        var output = new MemoryStream();
        var (groups, records, bytes, spilled) = SumAggregator.Run(inputs, budget, 2, folder, output, CancellationToken.None);
        var actual = new List<string>();
        var text = output.ToArray();
        for (var start = 0; start < text.Length;)
        {
            var tab = Array.IndexOf(text, (byte)'\t', start);
            var end = Array.IndexOf(text, (byte)'\n', tab);
            actual.Add($"{Convert.ToHexString(text.AsSpan(start, tab - start))}\t{Encoding.ASCII.GetString(text, tab + 1, end - tab - 1)}");
            start = end + 1;
        }
        Assert.Equal(expected, actual);
        Assert.Equal(sums.Count, groups);
        Assert.Equal(text.Length, bytes);
        Assert.Equal(budget < 1 << 20, spilled > 0);
        Assert.True(records > sums.Count);
        // Runs are deleted as they are read: nothing is left in the folder.
        Assert.True(!Directory.Exists(folder) || Directory.GetFiles(folder).Length == 0);
    }

    /// <summary>
    /// Arrays of a MiB and more (sort buffers, segments) are kept a few per size, with no copy per thread:
    /// returning many from many threads leaves at most that many to come back, the rest to the GC.
    /// </summary>
    [Fact]
    public async Task LargeArraysAreKeptAFewPerSizeWhateverTheThreadsThatReturnThem()
    {
        const int length = 3 << 20; // a 4 MiB bucket no other test uses
        var kept = Math.Max(2, Environment.ProcessorCount);
        var arrays = new List<byte[]>();
        for (var i = 0; i < kept + 6; i++)
        {
            arrays.Add(PooledArrays<byte>.Rent(length));
        }
        Assert.All(arrays, a => Assert.True(a.Length >= length));
        // Returned from as many threads, as a worker's thread pool does.
        await Task.WhenAll(arrays.Select(a => Task.Run(() => PooledArrays<byte>.Return(a))));
        var again = new List<byte[]>();
        for (var i = 0; i < kept + 6; i++)
        {
            again.Add(PooledArrays<byte>.Rent(length));
        }
        // A rent the pool cannot serve from its size may take the next larger sizes: the bound is per size.
        var reused = again.Where(a => arrays.Any(b => ReferenceEquals(a, b))).GroupBy(a => a.Length).ToList();
        Assert.NotEmpty(reused);
        Assert.All(reused, size => Assert.True(size.Count() <= kept, $"{size.Count()} arrays of {size.Key} bytes came back; the pool should keep at most {kept} of a size."));
        Assert.True(reused.Sum(size => size.Count()) < arrays.Count, "Every array came back: the pool kept them all.");
        foreach (var a in again)
        {
            PooledArrays<byte>.Return(a);
        }
        // An array that came from no pool (not a power of two) is left alone rather than refused.
        PooledArrays<byte>.Return(new byte[(3 << 20) + 1]);
    }

    [Fact]
    public void MergeOfSortedRunsIsSortedAndGroupsEveryValueOfAKey()
    {
        var merged = new RecordMerger(
        [
            new RecordReader(Run(("a", "1"), ("c", "2"), ("e", "3"))),
            new RecordReader(Run()),
            new RecordReader(Run(("a", "4"), ("b", "5"), ("e", "6"), ("z", "7"))),
            new RecordReader(Run(("c", "8"))),
        ]);
        using var groups = new RecordGroups(merged);
        var result = new List<string>();
        while (groups.NextGroup())
        {
            var key = Encoding.UTF8.GetString(groups.Key);
            result.Add($"{key}={string.Join(",", groups.Values)}");
        }
        Assert.Equal(["a=1,4", "b=5", "c=2,8", "e=3,6", "z=7"], result);
    }

    [Fact]
    public void GroupsSkipValuesTheReducerDidNotRead()
    {
        using var groups = new RecordGroups(new RecordReader(Run(("a", "1"), ("a", "2"), ("a", "3"), ("b", "4"))));
        Assert.True(groups.NextGroup());
        Assert.True(groups.NextValue(out _));
        Assert.True(groups.NextGroup());
        Assert.Equal("b", Encoding.UTF8.GetString(groups.Key));
        Assert.Equal(["4"], groups.Values.ToList());
        Assert.False(groups.NextGroup());
    }

    [Fact]
    public void RecordsLargerThanTheReadBufferRoundTrip()
    {
        var big = new string('k', 200_000);
        using var reader = new RecordReader(Run((big, "v"), ("x", new string('v', 100_000))));
        Assert.True(reader.MoveNext());
        Assert.Equal(big, Encoding.UTF8.GetString(reader.Key));
        Assert.True(reader.MoveNext());
        Assert.Equal(100_000, reader.Value.Length);
        Assert.False(reader.MoveNext());
    }

    [Theory]
    [InlineData(0, 1_000_000)]
    [InlineData(1, 1_000_000)]
    [InlineData(2, 1_000_000)]
    [InlineData(17, 1_000_000)]
    [InlineData(1000, 1_000_000)]
    [InlineData(5000, 3)]
    [InlineData(100_000, 50)]
    [InlineData(100_000, 1_000_000)]
    public void IntroSortOrdersLikeArraySort(int length, int range)
    {
        var random = new Random(length + range);
        var items = new int[length];
        for (var i = 0; i < length; i++)
        {
            items[i] = random.Next(range);
        }
        var expected = (int[])items.Clone();
        Array.Sort(expected);
        var quick = (int[])items.Clone();
        IntroSort.Sort(quick.AsSpan(), new IntComparer());
        Assert.Equal(expected, quick);
        // The depth limit's fallback, which random input rarely reaches.
        var heap = (int[])items.Clone();
        IntroSort.HeapSort(heap.AsSpan(), new IntComparer());
        Assert.Equal(expected, heap);
        // Already sorted and reversed input: the median of three keeps both fast and correct.
        IntroSort.Sort(quick.AsSpan(), new IntComparer());
        Assert.Equal(expected, quick);
        Array.Reverse(quick);
        IntroSort.Sort(quick.AsSpan(), new IntComparer());
        Assert.Equal(expected, quick);
    }

    private readonly struct IntComparer : IComparer<int>
    {
        public int Compare(int x, int y) => x.CompareTo(y);
    }

    [Fact]
    public void TheWarmUpRunsTheDataPathInMemory()
    {
        var spillFolder = Path.Combine(Path.GetTempPath(), "queue-warmup-unused");
        DataPathWarmup.Run(CancellationToken.None);
        // Its buffer holds the whole sample: nothing spilled, no folder made.
        Assert.False(Directory.Exists(spillFolder));
        Assert.Throws<OperationCanceledException>(() => DataPathWarmup.Run(new CancellationToken(canceled: true)));
    }

    [Fact]
    public void MapOutputThatSpillsEqualsMapOutputThatFitsInMemory()
    {
        // Words are letters only (wordcount drops digits): spell numbers in base 26.
        static string Word(int n) => n < 26 ? ((char)('a' + n)).ToString() : Word((n / 26) - 1) + (char)('a' + (n % 26));
        var text = string.Join('\n', Enumerable.Range(0, 20_000).Select(i => $"{Word(i % 997)} {Word(i % 13)} longer{Word(i % 5)} u{Word(i)} v{Word(i % 4999)}"));
        Assert.Equal(Collect(text, 64 << 20, combiner: true), Collect(text, 64 * 1024, combiner: true));
        Assert.Equal(Collect(text, 64 << 20, combiner: false), Collect(text, 64 * 1024, combiner: false));
    }

    private static List<string> Collect(string text, int bufferBytes, bool combiner)
    {
        IMapReduceApp app = combiner ? new WordCountApp() : new IndexerApp();
        var folder = Path.Combine(Path.GetTempPath(), "queue-tests", Guid.NewGuid().ToString("N"));
        using var collector = new MapOutputCollector(3, app, bufferBytes, folder);
        foreach (var line in text.Split('\n'))
        {
            app.Map(new MapInput("doc", line + "\n", 0), collector);
        }
        if (bufferBytes < 1 << 20)
        {
            Assert.True(collector.SpilledRecords > 0);
        }
        collector.Finish();
        var result = new List<string>();
        for (var p = 0; p < 3; p++)
        {
            var stream = new MemoryStream();
            using (var writer = new RecordWriter(stream))
            {
                collector.WritePartition(p, writer);
                writer.Flush();
            }
            stream.Position = 0;
            using var groups = new RecordGroups(new RecordReader(stream));
            byte[]? previous = null;
            while (groups.NextGroup())
            {
                var key = Encoding.UTF8.GetString(groups.Key);
                Assert.Equal(p, StableHash.Partition(groups.Key, 3));
                // Keys leave the sort buffer (and the spills' merge) in strictly ascending byte order.
                if (previous is not null && groups.Key.SequenceCompareTo(previous) <= 0)
                {
                    Assert.Fail($"'{key}' after '{Encoding.UTF8.GetString(previous)}'");
                }
                previous = groups.Key.ToArray();
                result.Add($"{key}\t{app.Reduce(key, groups.Values)}");
            }
        }
        return result;
    }
}
