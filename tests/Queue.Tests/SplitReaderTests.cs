using System.Text;
using Queue.Contracts.Jobs;
using Queue.Contracts.Ports;
using Queue.Coordinator;
using Queue.Worker.Execution;

namespace Queue.Tests;

public sealed class SplitReaderTests
{
    /// <summary>Reads every split of <paramref name="data"/> and returns the lines in order.</summary>
    private static List<string> ReadAllSplits(byte[] data, IEnumerable<(long Offset, long Length)> splits, int chunkBytes)
    {
        var lines = new List<string>();
        foreach (var (offset, length) in splits)
        {
            var stream = new MemoryStream(data);
            stream.Position = Math.Max(0, offset - 1);
            using var reader = new SplitReader(stream, offset, length, chunkBytes);
            var text = new StringBuilder();
            while (reader.TryReadChunk(out var chunk))
            {
                text.Append(chunk.Span);
            }
            if (text.Length > 0)
            {
                var s = text.ToString();
                lines.AddRange((s.EndsWith('\n') ? s[..^1] : s).Split('\n'));
            }
        }
        return lines;
    }

    private static List<string> ExpectedLines(string text)
    {
        var body = text.StartsWith('\uFEFF') ? text[1..] : text;
        if (body.Length == 0)
        {
            return [];
        }
        return [.. (body.EndsWith('\n') ? body[..^1] : body).Split('\n')];
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(7)]
    [InlineData(50)]
    public void EveryLineIsReadExactlyOnceWhereverTheCutsFall(int seed)
    {
        var random = new Random(seed);
        var text = new StringBuilder();
        var lineCount = random.Next(1, 400);
        for (var i = 0; i < lineCount; i++)
        {
            var length = random.Next(0, 5) == 0 ? 0 : random.Next(1, 120);
            for (var j = 0; j < length; j++)
            {
                text.Append(random.Next(20) switch { 0 => 'é', 1 => '語', 2 => '\r', _ => (char)random.Next('a', 'z' + 1) });
            }
            if (i < lineCount - 1 || random.Next(2) == 0)
            {
                text.Append('\n');
            }
        }
        var data = Encoding.UTF8.GetBytes(text.ToString());
        var splitCount = random.Next(1, 30);
        var blob = new BlobItem("c", "f", data.Length);
        var splits = SplitPlanner.Plan([blob], splitCount, null).SelectMany(t => t).ToList();
        var lines = ReadAllSplits(data, splits.Select(s => (s.Offset, s.Length)), chunkBytes: random.Next(16, 256));
        Assert.Equal(ExpectedLines(text.ToString()), lines);
    }

    [Fact]
    public void CutsAtEveryByteOfASmallFileLoseAndRepeatNothing()
    {
        var text = "one\ntwo\n\nthree\r\nfour";
        var data = Encoding.UTF8.GetBytes(text);
        for (var cut = 0; cut <= data.Length; cut++)
        {
            var lines = ReadAllSplits(data, [(0, cut), (cut, data.Length - cut)], chunkBytes: 4);
            Assert.Equal(ExpectedLines(text), lines);
        }
    }

    [Fact]
    public void SkipsAByteOrderMarkAndReadsLinesLongerThanTheBuffer()
    {
        var longLine = new string('x', 10_000);
        var text = "\uFEFF" + longLine + "\nshort\n";
        var lines = ReadAllSplits(Encoding.UTF8.GetBytes(text), [(0, 5000), (5000, 5010)], chunkBytes: 64);
        Assert.Equal([longLine, "short"], lines);
    }

    [Fact]
    public void TasksComeOutEqualWithSmallFilesWholeAndEveryByteCoveredOnce()
    {
        // 240 small files, two large ones and an empty one, 8 map tasks asked for: 8 tasks of about an eighth each.
        var blobs = Enumerable.Range(0, 240).Select(i => new BlobItem("c", $"small/{i:D3}", 1000 + i))
            .Append(new BlobItem("c", "zz-large-1", 200_000)).Append(new BlobItem("c", "zz-large-2", 90_000)).Append(new BlobItem("c", "zz-empty", 0)).ToList();
        var tasks = SplitPlanner.Plan(blobs, 8, null);
        Assert.Equal(8, tasks.Count);
        AssertEqualSizes(tasks, blobs.Sum(b => b.Length) / 8.0);
        AssertCoveredOnce(blobs, tasks);
        // A small file is never cut: the cuts near it move to its ends.
        Assert.All(tasks.SelectMany(t => t).Where(s => s.Blob.StartsWith("small/", StringComparison.Ordinal)), s => Assert.Equal(0, s.Offset));

        // The same with the books' real sizes (the bench's shape): 8 large files of 4–18 MB, 8 tasks.
        var books = new[] { 4.2, 13.6, 13.2, 16.2, 17.8, 17.4, 12.4, 5.1 }.Select((mb, i) => new BlobItem("c", $"book-{i}", (long)(mb * 1e6))).ToList();
        var bookTasks = SplitPlanner.Plan(books, 8, null);
        Assert.Equal(8, bookTasks.Count);
        AssertEqualSizes(bookTasks, books.Sum(b => b.Length) / 8.0);
        AssertCoveredOnce(books, bookTasks);

        // A split size smaller than the files: tasks of at most about that size, crossing files where they must.
        var fine = SplitPlanner.Plan(blobs, null, 1024);
        Assert.Equal(SplitPlanner.TaskCount(blobs.Sum(b => b.Length), null, 1024), fine.Count);
        AssertEqualSizes(fine, blobs.Sum(b => b.Length) / (double)fine.Count);
        AssertCoveredOnce(blobs, fine);

        // Fewer bytes than tasks asked for, and nothing but empty blobs.
        Assert.Equal(3, SplitPlanner.Plan([new BlobItem("c", "tiny", 3)], 8, null).Count);
        var empty = SplitPlanner.Plan([new BlobItem("c", "e1", 0), new BlobItem("c", "e2", 0)], 8, null);
        Assert.Equal(["e1", "e2"], Assert.Single(empty).Select(s => s.Blob));
    }

    /// <summary>Each task within two slops (10 % of a segment at either end) of an equal share.</summary>
    private static void AssertEqualSizes(List<List<InputSplit>> tasks, double segment) =>
        Assert.All(tasks, t => Assert.InRange(t.Sum(s => s.Length), (long)(segment * 0.8) - 1, (long)(segment * 1.2) + 1));

    private static void AssertCoveredOnce(List<BlobItem> blobs, List<List<InputSplit>> tasks)
    {
        var splits = tasks.SelectMany(t => t).ToList();
        foreach (var blob in blobs)
        {
            var parts = splits.Where(s => s.Blob == blob.Name).OrderBy(s => s.Offset).ToList();
            Assert.NotEmpty(parts);
            Assert.Equal(0, parts[0].Offset);
            for (var i = 1; i < parts.Count; i++)
            {
                Assert.Equal(parts[i - 1].Offset + parts[i - 1].Length, parts[i].Offset);
            }
            Assert.Equal(blob.Length, parts[^1].Offset + parts[^1].Length);
        }
    }
}
