using System.Text;
using Queue.Contracts.Apps;
using Queue.Worker.Apps;

namespace Queue.Worker.Execution;

/// <summary>
/// Runs the map and reduce data path once over a small sample: split reading (a split at the start
/// and one past it), tokenising, the count table (grown once) and the pending-values path, the sort
/// buffer, record files, the merge, the reduce loop and the summing reduce's table.
/// Those methods are compiled with full optimisation on their first call (AggressiveOptimization, which
/// ReadyToRun images also leave to the JIT); run at start, the compiling is done before the first task
/// instead of inside it, where it shared the cores with the task slots.
/// </summary>
public static class DataPathWarmup
{
    private static readonly string[] Words =
    [
        "the", "of", "and", "a", "queue", "Worker", "lease", "reduce", "partition", "combiner", "Straßenbahn",
        "café", "naïve", "Ærøskøbing", "über", "extraordinarily", "x", "Internationalisation", "it's", "MapReduce",
    ];

    public static void Run(CancellationToken cancellationToken)
    {
        var bytes = Encoding.UTF8.GetBytes(Sample());
        foreach (var app in new IMapReduceApp[] { new WordCountApp(), new IndexerApp() })
        {
            cancellationToken.ThrowIfCancellationRequested();
            // A buffer larger than the sample: nothing spills, so nothing touches the disk.
            using var collector = new MapOutputCollector(2, app, 1 << 20, Path.Combine(Path.GetTempPath(), "queue-warmup-unused"));
            // Two splits, so the second skips its partial first line as a split past the start does.
            var half = bytes.Length / 2;
            foreach (var (offset, length) in new[] { (0, half), (half, bytes.Length - half) })
            {
                var stream = new MemoryStream(bytes);
                stream.Position = Math.Max(0, offset - 1);
                using var reader = new SplitReader(stream, offset, length, 4096);
                while (reader.TryReadChunk(out var chunk))
                {
                    app.Map(new MapInput("warmup.txt", chunk.Span, 0), collector);
                }
            }
            if (app.CombinesBySum)
            {
                // Enough distinct keys for the count table to grow once, as a real task's does.
                var key = new char[8];
                for (var i = 0; i < 10_000; i++)
                {
                    var n = i;
                    for (var c = 0; c < key.Length; c++, n /= 26)
                    {
                        key[c] = (char)('a' + (n % 26));
                    }
                    collector.EmitCount(key, 1);
                }
            }
            collector.Finish();
            var runs = new List<IRecordSource>(2);
            for (var partition = 0; partition < 2; partition++)
            {
                var run = new MemoryStream();
                using (var writer = new RecordWriter(run))
                {
                    collector.WritePartition(partition, writer);
                    writer.Flush();
                }
                run.Position = 0;
                runs.Add(new RecordReader(run));
            }
            if (app.ReducesBySum)
            {
                // A summing reduce goes by hash (its table grown once too); nothing spills, so the folder stays unmade.
                SumAggregator.Run(runs, 1 << 20, 2, Path.Combine(Path.GetTempPath(), "queue-warmup-unused"), Stream.Null, cancellationToken);
            }
            else
            {
                using var groups = new RecordGroups(new RecordMerger(runs));
                using var text = new StreamWriter(Stream.Null);
                ReduceRunner.ReduceGroups(app, groups, text, cancellationToken);
            }
        }
    }

    /// <summary>About 16 KB of lines: ASCII and other letters, short and long words, capitals and punctuation.</summary>
    private static string Sample()
    {
        var text = new StringBuilder(20_000);
        var state = 12345u;
        for (var line = 0; line < 400; line++)
        {
            var count = 3 + (line % 11);
            for (var w = 0; w < count; w++)
            {
                state = (state * 1664525) + 1013904223;
                text.Append(Words[(state >> 16) % (uint)Words.Length]).Append(w % 5 == 4 ? ", " : " ");
            }
            text.Append(line % 3 == 0 ? ".\n" : "\n");
        }
        return text.ToString();
    }
}
