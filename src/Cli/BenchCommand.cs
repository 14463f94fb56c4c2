using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Queue.Contracts.Jobs;

namespace Queue.Cli;

/// <summary>
/// <c>queue bench</c>: one run that prints the engine's word-count throughput next to a hand-written
/// single-pass C# word count and the <c>tr | sort | uniq -c</c> pipeline, on the same generated file.
/// </summary>
public static class BenchCommand
{
    public static Command Create()
    {
        var megabytes = new Option<int>("--mb") { Description = "Size of the generated input in MB.", DefaultValueFactory = _ => 100 };
        var slots = new Option<int>("--slots") { Description = "Worker slots of the engine.", DefaultValueFactory = _ => Environment.ProcessorCount };
        var folder = new Option<string>("--dir") { Description = "Scratch folder.", DefaultValueFactory = _ => ".bench" };
        var cluster = new Option<string?>("--cluster") { Description = "Measure a running cluster at this ingress URL instead (e.g. http://127.0.0.1:5000 from scripts/cluster.sh up)." };
        var books = new Option<string>("--books") { Description = "With --cluster: the folder of books to count.", DefaultValueFactory = _ => "../shared/data/gutenberg" };
        var runs = new Option<int>("--runs") { Description = "With --cluster: warm runs of the books job.", DefaultValueFactory = _ => 5 };
        var overheadJobs = new Option<int>("--overhead-jobs") { Description = "With --cluster: tiny jobs (8 tasks each) for the per-task overhead.", DefaultValueFactory = _ => 25 };
        var command = new Command("bench", "Measure word-count throughput of the engine against baselines.") { megabytes, slots, folder, cluster, books, runs, overheadJobs };
        command.SetAction(async (parse, ct) =>
        {
            if (parse.GetValue(cluster) is { } url)
            {
                return await ClusterBench.RunAsync(url, Environment.GetEnvironmentVariable("QUEUE_API_KEY"), Path.GetFullPath(parse.GetValue(books)!),
                    Math.Clamp(parse.GetValue(runs), 1, 100), Math.Clamp(parse.GetValue(overheadJobs), 1, 1000), ct);
            }
            var mb = parse.GetValue(megabytes);
            if (mb is < 1 or > 100_000)
            {
                await Console.Error.WriteLineAsync("--mb must be between 1 and 100000.");
                return 2;
            }
            var root = Path.GetFullPath(parse.GetValue(folder)!);
            var dataPath = Path.Combine(root, "data");
            var input = Path.Combine(dataPath, "bench", $"words-{mb}mb.txt");
            if (!File.Exists(input))
            {
                Console.WriteLine($"Generating {mb} MB of text ...");
                await SampleText.WriteAsync(input, mb * 1_000_000L, seed: 7, ct);
            }
            var size = new FileInfo(input).Length;
            var megas = size / 1_000_000.0;
            Console.WriteLine($"Input: {input} ({megas:0.0} MB), {Environment.ProcessorCount} cores");

            var rows = new List<(string Name, double Seconds)>();

            var watch = Stopwatch.StartNew();
            var reference = Baselines.WordCount(input);
            rows.Add(("C# single pass (Dictionary by span)", watch.Elapsed.TotalSeconds));

            watch.Restart();
            if (Baselines.ShellPipeline(input))
            {
                rows.Add(("tr -cs 'A-Za-z' '\\n' | sort | uniq -c", watch.Elapsed.TotalSeconds));
            }

            await using (var engine = await EmbeddedEngine.StartAsync(dataPath, parse.GetValue(slots), ct))
            {
                var mapTasks = Math.Max(2, (int)Math.Ceiling(megas / 16));
                watch.Restart();
                var view = await engine.RunAsync(new JobRequest { App = "wordcount", Input = $"bench/words-{mb}mb.txt", MapTasks = mapTasks, ReduceTasks = 2 }, null, ct);
                var seconds = watch.Elapsed.TotalSeconds;
                if (view.Status.State != JobState.Succeeded)
                {
                    await Console.Error.WriteLineAsync($"The engine's job ended {view.Status.State}: {view.Status.Error}");
                    return 1;
                }
                rows.Insert(0, ($"Queue engine, embedded ({mapTasks} maps, 2 reduces, {parse.GetValue(slots)} slots)", seconds));
                var mismatch = Compare(dataPath, view, reference);
                if (mismatch is not null)
                {
                    await Console.Error.WriteLineAsync($"The engine's output differs from the baseline: {mismatch}");
                    return 1;
                }
            }

            Console.WriteLine();
            Console.WriteLine($"{"",-58} {"seconds",8} {"MB/s",8}");
            foreach (var (name, seconds) in rows)
            {
                Console.WriteLine($"{name,-58} {seconds,8:0.00} {megas / seconds,8:0.0}");
            }
            return 0;
        });
        return command;
    }

    /// <summary>The engine's counts must equal the baseline's; returns the first difference.</summary>
    private static string? Compare(string dataPath, JobView view, Dictionary<string, long> reference)
    {
        var seen = 0;
        foreach (var part in view.Status.Outputs)
        {
            foreach (var line in File.ReadLines(Path.Combine(dataPath, view.Status.OutputContainer!, part)))
            {
                var tab = line.IndexOf('\t');
                var word = line[..tab];
                var count = long.Parse(line.AsSpan(tab + 1), CultureInfo.InvariantCulture);
                if (!reference.TryGetValue(word, out var expected) || expected != count)
                {
                    return $"'{word}': engine {count}, baseline {(reference.TryGetValue(word, out var e) ? e : 0)}";
                }
                seen++;
            }
        }
        return seen == reference.Count ? null : $"engine has {seen} words, baseline {reference.Count}";
    }
}
