using System.Text;
using Queue.Coordinator;
using Queue.Contracts.Ports;
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
    public void SmallFilesArePackedIntoTasksAndLargeOnesAreCutWithEveryByteCoveredOnce()
    {
        // 240 small files and two large ones, 8 map tasks asked for: about 8 tasks, not 240.
        var blobs = Enumerable.Range(0, 240).Select(i => new BlobItem("c", $"small/{i:D3}", 1000 + i))
            .Append(new BlobItem("c", "zz-large-1", 200_000)).Append(new BlobItem("c", "zz-large-2", 90_000)).Append(new BlobItem("c", "zz-empty", 0)).ToList();
        var total = blobs.Sum(b => b.Length);
        var tasks = SplitPlanner.Plan(blobs, 8, null);
        Assert.InRange(tasks.Count, 8, 10);
        var splitSize = (total + 7) / 8;
        Assert.All(tasks, t => Assert.True(t.Sum(s => s.Length) <= splitSize, $"A task of {t.Sum(s => s.Length)} bytes is over the split size {splitSize}."));
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
        // A split size smaller than every file: one file per task, large ones cut.
        var fine = SplitPlanner.Plan(blobs, null, 1024);
        Assert.All(fine, t => Assert.True(t.Count == 1 || t.All(s => s.Length == 0) || t.Count(s => s.Length > 0) == 1));
        Assert.True(fine.Count >= 240);
    }
}
