using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Queue.Contracts.Jobs;

namespace Queue.Cli;

/// <summary>
/// <c>queue bench</c>: in one run, the engine's word-count throughput next to baselines — a tuned
/// all-core C# count, a single-pass one and <c>tr | sort | uniq -c</c> — on a generated file and on
/// real text (the shared books copied N times) in both shapes users bring: few large files and many
/// small ones. The engine's first job (cold code) and a warm repeat are both shown; every engine and
/// all-core result is checked against the single-pass count. <c>--cluster URL</c> measures a running
/// cluster instead (<see cref="ClusterBench"/>).
/// </summary>
public static class BenchCommand
{
    public static Command Create()
    {
        var megabytes = new Option<int>("--mb") { Description = "Size of the generated input in MB.", DefaultValueFactory = _ => 100 };
        var copies = new Option<int>("--copies") { Description = "Copies of the books in each real-text corpus (0 skips them).", DefaultValueFactory = _ => 30 };
        var slots = new Option<int>("--slots") { Description = "Worker slots of the engine.", DefaultValueFactory = _ => Environment.ProcessorCount };
        var folder = new Option<string>("--dir") { Description = "Scratch folder.", DefaultValueFactory = _ => ".bench" };
        var books = new Option<string>("--books") { Description = "The folder of books (real text).", DefaultValueFactory = _ => "../shared/data/gutenberg" };
        var maps = new Option<int?>("--maps") { Description = "Map tasks of the engine's jobs (default: 4 per slot, so the waves come out even)." };
        var shell = new Option<bool>("--shell") { Description = "Also time tr | sort | uniq -c (slow).", DefaultValueFactory = _ => true };
        var cluster = new Option<string?>("--cluster") { Description = "Measure a running cluster at this ingress URL instead (e.g. http://127.0.0.1:5000 from scripts/cluster.sh up)." };
        var runs = new Option<int>("--runs") { Description = "With --cluster: warm runs of the books job.", DefaultValueFactory = _ => 5 };
        var repeat = new Option<int>("--repeat") { Description = "Warm runs of the engine and the all-core baselines per corpus, interleaved; medians are shown (this machine's neighbours make single runs vary).", DefaultValueFactory = _ => 3 };
        var overheadJobs = new Option<int>("--overhead-jobs") { Description = "With --cluster: tiny jobs of 8 tasks each for the per-task overhead.", DefaultValueFactory = _ => 125 };
        var sort = new Option<bool>("--sort") { Description = "The sort benchmark instead: the built-in sort (range partitioner) against GNU sort on generated 100-byte records." };
        var sortSizes = new Option<int[]>("--sort-mb") { Description = "With --sort: input sizes in MB (repeatable).", DefaultValueFactory = _ => [1000], AllowMultipleArgumentsPerToken = true };
        var shuffle = new Option<bool>("--shuffle") { Description = "The task-granularity table instead: word count as 8x2 up to 2000x200 tasks." };
        var clusterPids = new Option<string>("--cluster-pids") { Description = "With --cluster: the cluster's \"name pid\" file (scripts/cluster.sh writes .cluster/pids); each of its processes' peak RSS is printed at the end.", DefaultValueFactory = _ => Path.Combine(".cluster", "pids") };
        var mix = new Option<bool>("--mix") { Description = "Several users' jobs on one pool instead: a small job alone, a large one alone, the small one behind the large one (fair sharing and first come, first served)." };
        var command = new Command("bench", "Measure word-count throughput of the engine against baselines (--sort, --shuffle: the shuffle's benchmarks; --mix: fair sharing).")
        {
            megabytes, copies, slots, folder, books, maps, shell, repeat, cluster, runs, overheadJobs, sort, sortSizes, shuffle, mix, clusterPids,
        };
        command.SetAction(async (parse, ct) =>
        {
            try
            {
                return await RunAsync(parse, ct);
            }
            catch (CliException e)
            {
                await Console.Error.WriteLineAsync($"error: {e.Message}");
                return e.ExitCode;
            }
        });
        return command;

        async Task<int> RunAsync(ParseResult parse, CancellationToken ct)
        {
            if (parse.GetValue(sort) || parse.GetValue(shuffle))
            {
                return await ShuffleBenchesAsync(parse, ct);
            }
            if (parse.GetValue(mix))
            {
                return await MixBenchesAsync(parse, ct);
            }
            if (parse.GetValue(cluster) is { } url)
            {
                return await ClusterBench.RunAsync(url, Environment.GetEnvironmentVariable("QUEUE_API_KEY"), Path.GetFullPath(parse.GetValue(books)!),
                    Math.Clamp(parse.GetValue(runs), 1, 100), Math.Clamp(parse.GetValue(overheadJobs), 1, 1000), Math.Max(0, parse.GetValue(copies)),
                    Path.Combine(Path.GetFullPath(parse.GetValue(folder)!), "cluster-input"), ct);
            }
            var mb = parse.GetValue(megabytes);
            if (mb is < 1 or > 100_000)
            {
                await Console.Error.WriteLineAsync("--mb must be between 1 and 100000.");
                return 2;
            }
            var root = Path.GetFullPath(parse.GetValue(folder)!);
            var dataPath = Path.Combine(root, "data");
            var corpora = new List<(string Name, string Container, List<string> Files)>();
            var generated = Path.Combine(dataPath, $"gen-{mb}mb", "words.txt");
            if (!File.Exists(generated))
            {
                Console.WriteLine($"Generating {mb} MB of text ...");
                await SampleText.WriteAsync(generated, mb * 1_000_000L, seed: 7, ct);
            }
            corpora.Add(($"generated, 1 file", $"gen-{mb}mb", [generated]));
            var n = parse.GetValue(copies);
            var bookFiles = Directory.Exists(parse.GetValue(books)) ? Directory.GetFiles(parse.GetValue(books)!, "*.txt") : [];
            Array.Sort(bookFiles, StringComparer.Ordinal);
            if (n > 0 && bookFiles.Length > 0)
            {
                corpora.Add(($"books x{n}, {bookFiles.Length} large files", $"books-{n}-large", await BuildAsync(dataPath, $"books-{n}-large", bookFiles, n, large: true, ct)));
                corpora.Add(($"books x{n}, {bookFiles.Length * n} small files", $"books-{n}-small", await BuildAsync(dataPath, $"books-{n}-small", bookFiles, n, large: false, ct)));
            }
            Console.WriteLine($"{Environment.ProcessorCount} cores; engine with {parse.GetValue(slots)} slots over {dataPath}");
            Console.WriteLine();
            Console.WriteLine($"{"corpus",-30} {"run",-70} {"seconds",8} {"MB/s",7} {"vs all-core",11}");

            await using var engine = await EmbeddedEngine.StartOrReportAsync(dataPath, parse.GetValue(slots), ct);
            if (engine is null)
            {
                return 1;
            }
            var first = true;
            foreach (var (name, container, files) in corpora)
            {
                long bytes = 0;
                foreach (var file in files)
                {
                    bytes += new FileInfo(file).Length;
                }
                var megas = bytes / 1e6;
                var watch = Stopwatch.StartNew();
                var reference = Baselines.WordCount(files);
                var single = watch.Elapsed.TotalSeconds;
                // Whole waves: a multiple of the slots, so no slot idles through the last wave.
                var mapTasks = parse.GetValue(maps) ?? 4 * parse.GetValue(slots) * Math.Max(1, (int)Math.Ceiling(megas / (64.0 * 4 * parse.GetValue(slots))));
                var request = new JobRequest { App = "wordcount", Input = container, MapTasks = mapTasks, ReduceTasks = 2 };
                var firstRun = await RunEngineAsync(engine, request, dataPath, reference, ct);
                var allCoreRuns = new List<double>();
                var kernelRuns = new List<double>();
                var engineRuns = new List<(double Seconds, JobView View, double JitMs)>();
                // Interleaved, so a busy spell of the machine's neighbours falls on each kind of run alike.
                for (var run = 0; run < Math.Clamp(parse.GetValue(repeat), 1, 50); run++)
                {
                    foreach (var (runs, count) in new[] { (allCoreRuns, (Func<IReadOnlyList<string>, Dictionary<string, long>>)Baselines.WordCountAllCores), (kernelRuns, Baselines.WordCountAllCoresEngineKernel) })
                    {
                        watch.Restart();
                        var counts = count(files);
                        runs.Add(watch.Elapsed.TotalSeconds);
                        if (Differs(counts, reference) is { } wrong)
                        {
                            throw new CliException($"An all-core baseline differs from the single pass on {name}: {wrong}", 1);
                        }
                    }
                    engineRuns.Add(await RunEngineAsync(engine, request, dataPath, reference, ct));
                }
                var parallel = Statistics.Median(allCoreRuns);
                void Row(string run, double seconds) =>
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{name,-30} {run,-70} {seconds,8:0.000} {megas / seconds,7:0.0} {parallel / seconds,10:0.00}x"));
                string Engine(string label, (double Seconds, JobView View, double JitMs) run) =>
                    string.Create(CultureInfo.InvariantCulture, $"{label} ({run.View.Status.Map.Total} maps; {run.View.Status.MapSeconds:0.00}+{run.View.Status.ReduceSeconds:0.00} s; JIT {run.JitMs:0} ms)");
                var runsNote = allCoreRuns.Count > 1 ? $", median of {allCoreRuns.Count}" : "";
                Row($"C# all cores (baseline{runsNote})", parallel);
                Row("C# single pass", single);
                if (parse.GetValue(shell))
                {
                    watch.Restart();
                    if (Baselines.ShellPipeline(files))
                    {
                        Row("tr | sort | uniq -c", watch.Elapsed.TotalSeconds);
                    }
                }
                Row($"C# all cores, engine's tokeniser + table{runsNote}", Statistics.Median(kernelRuns));
                Row(Engine(first ? "engine, first job of the process" : "engine, first job", firstRun), firstRun.Seconds);
                engineRuns.Sort((x, y) => x.Seconds.CompareTo(y.Seconds));
                var middle = engineRuns[engineRuns.Count / 2];
                Row(Engine($"engine, again{runsNote}", middle), middle.Seconds);
                first = false;
            }
            Console.WriteLine();
            Console.WriteLine($"peak RSS of this process (engine and baselines): {PeakMemory.SelfMiB():0} MiB");
            return 0;
        }

        // --mix: fair sharing against first come, first served on the embedded engine, and the cluster at --cluster too when given.
        async Task<int> MixBenchesAsync(ParseResult parse, CancellationToken ct)
        {
            var dataPath = Path.Combine(Path.GetFullPath(parse.GetValue(folder)!), "data");
            var slotCount = parse.GetValue(slots);
            var repeats = Math.Clamp(parse.GetValue(repeat), 1, 20);
            var bookFiles = Directory.Exists(parse.GetValue(books)) ? Directory.GetFiles(parse.GetValue(books)!, "*.txt") : [];
            Array.Sort(bookFiles, StringComparer.Ordinal);
            if (bookFiles.Length == 0)
            {
                throw new CliException($"No books in {parse.GetValue(books)}.", 2);
            }
            var (smallInput, largeInput) = ("books-1-large", "books-30-small");
            var smallFiles = await BuildAsync(dataPath, smallInput, bookFiles, 1, large: true, ct);
            var largeFiles = await BuildAsync(dataPath, largeInput, bookFiles, 30, large: false, ct);
            var (smallReference, largeReference) = (Baselines.WordCount(smallFiles), Baselines.WordCount(largeFiles));
            var title = $"Sharing the pool: small = word count over the books (3.3 MB, 8 x 2), large = the books x30 (100 MB, 240 files, 240 x 4); small submitted once a fifth of large's maps are done; medians of {repeats}";
            var columns = new List<(string, MixBench.Result)>();
            foreach (var fair in new[] { true, false })
            {
                await using var engine = await EmbeddedEngine.StartOrReportAsync(dataPath, slotCount, ct,
                    new Dictionary<string, string?> { ["Queue:Coordinator:FairSharing"] = fair ? "true" : "false" });
                if (engine is null)
                {
                    return 1;
                }
                var pool = new MixBench.Pool("the embedded engine", engine.SubmitAsync, engine.ViewAsync,
                    (view, small, _) => Task.FromResult(Compare(dataPath, view, small ? smallReference : largeReference)));
                columns.Add((fair ? "fair sharing" : "first come, first served", await MixBench.RunAsync(pool, smallInput, largeInput, repeats, ct)));
            }
            MixBench.Print($"{title}\nembedded, {slotCount} slots:", columns);
            if (parse.GetValue(cluster) is { } url)
            {
                using var client = new IngressClient(url, Environment.GetEnvironmentVariable("QUEUE_API_KEY"));
                foreach (var (input, files) in new[] { (smallInput, smallFiles), (largeInput, largeFiles) })
                {
                    foreach (var file in files)
                    {
                        await client.UploadAsync("bench-" + input, Path.GetFileName(file), file, _ => { }, ct);
                    }
                }
                var pool = new MixBench.Pool($"cluster {client.BaseAddress}", client.SubmitAsync, client.GetViewAsync, async (view, small, token) =>
                {
                    using var output = new MemoryStream();
                    await client.CopyOutputAsync(view.Spec.Id, output, token);
                    var text = System.Text.Encoding.UTF8.GetString(output.GetBuffer(), 0, (int)output.Length);
                    return Baselines.FirstDifference(text.Split('\n', StringSplitOptions.RemoveEmptyEntries), small ? smallReference : largeReference);
                });
                MixBench.Print($"cluster {client.BaseAddress} (its leader's sharing setting):",
                    [("cluster", await MixBench.RunAsync(pool, "bench-" + smallInput, "bench-" + largeInput, repeats, ct))]);
            }
            return 0;
        }

        // --shuffle and --sort: on the embedded engine in this process, and on the cluster at --cluster too when given, in one run.
        async Task<int> ShuffleBenchesAsync(ParseResult parse, CancellationToken ct)
        {
            var dataPath = Path.Combine(Path.GetFullPath(parse.GetValue(folder)!), "data");
            var slotCount = parse.GetValue(slots);
            using var client = parse.GetValue(cluster) is { } url ? new IngressClient(url, Environment.GetEnvironmentVariable("QUEUE_API_KEY")) : null;
            await using var engine = await EmbeddedEngine.StartOrReportAsync(dataPath, slotCount, ct);
            if (engine is null)
            {
                return 1;
            }
            if (parse.GetValue(shuffle))
            {
                var bookFiles = Directory.Exists(parse.GetValue(books)) ? Directory.GetFiles(parse.GetValue(books)!, "*.txt") : [];
                Array.Sort(bookFiles, StringComparer.Ordinal);
                if (bookFiles.Length == 0)
                {
                    throw new CliException($"No books in {parse.GetValue(books)}.", 2);
                }
                var container = "books-30-small";
                var files = await BuildAsync(dataPath, container, bookFiles, 30, large: false, ct);
                var reference = Baselines.WordCount(files);
                await ShuffleBench.GranularityAsync($"embedded, {slotCount} slots", (request, token) => engine.RunAsync(request, null, token), container,
                    (view, _) => Task.FromResult(Compare(dataPath, view, reference)), engine.IntermediateOperationsAsync, ct);
                if (client is not null)
                {
                    foreach (var file in files)
                    {
                        await client.UploadAsync("bench-" + container, Path.GetFileName(file), file, _ => { }, ct);
                    }
                    await ShuffleBench.GranularityAsync($"cluster {client.BaseAddress}", async (request, token) =>
                    {
                        var id = await client.SubmitAsync(request, token);
                        JobView view;
                        while (!(view = await client.GetViewAsync(id, token)).Status.IsTerminal)
                        {
                            await Task.Delay(50, token);
                        }
                        return view;
                    }, "bench-" + container, async (view, token) =>
                    {
                        using var output = new MemoryStream();
                        await client.CopyOutputAsync(view.Spec.Id, output, token);
                        var text = System.Text.Encoding.UTF8.GetString(output.GetBuffer(), 0, (int)output.Length);
                        return Baselines.FirstDifference(text.Split('\n', StringSplitOptions.RemoveEmptyEntries), reference);
                    }, null, ct);
                }
            }
            if (parse.GetValue(sort))
            {
                await ShuffleBench.SortAsync(engine, dataPath, parse.GetValue(sortSizes)!, slotCount, client, ct);
            }
            Console.WriteLine();
            Console.WriteLine($"peak RSS of this process (the embedded engine): {PeakMemory.SelfMiB():0} MiB");
            if (client is not null && File.Exists(parse.GetValue(clusterPids)))
            {
                // The kernel keeps one peak per process since it started: the cluster's whole life, not this run alone.
                foreach (var (name, pid) in PeakMemory.ReadPidsFile(parse.GetValue(clusterPids)!))
                {
                    var kib = PeakMemory.LargestInTreeKiB(pid);
                    Console.WriteLine($"peak RSS of the cluster's {name} (pid {pid}, since it started): {(kib is { } k ? $"{k / 1024.0:0} MiB" : "ended")}");
                }
            }
            return 0;
        }
    }

    /// <summary>Runs one word-count job on the in-process engine and checks its output.</summary>
    /// <returns>The job's wall time, its view, and the CPU time the JIT spent meanwhile (cold code shows there).</returns>
    private static async Task<(double Seconds, JobView View, double JitMs)> RunEngineAsync(EmbeddedEngine engine, JobRequest request, string dataPath, Dictionary<string, long> reference, CancellationToken ct)
    {
        var jit = System.Runtime.JitInfo.GetCompilationTime();
        var watch = Stopwatch.StartNew();
        var view = await engine.RunAsync(request, null, ct);
        var seconds = watch.Elapsed.TotalSeconds;
        var jitMs = (System.Runtime.JitInfo.GetCompilationTime() - jit).TotalMilliseconds;
        if (view.Status.State != JobState.Succeeded)
        {
            throw new CliException($"The engine's job ended {view.Status.State}: {view.Status.Error}", 1);
        }
        if (Compare(dataPath, view, reference) is { } mismatch)
        {
            throw new CliException($"The engine's output differs from the baseline on {request.Input}: {mismatch}", 1);
        }
        return (seconds, view, jitMs);
    }

    /// <summary>The books copied n times: as one large file per book, or one small file per copy.</summary>
    internal static async Task<List<string>> BuildAsync(string dataPath, string container, string[] books, int copies, bool large, CancellationToken ct)
    {
        var folder = Path.Combine(dataPath, container);
        var files = new List<string>();
        var complete = Path.Combine(dataPath, $".{container}.complete");
        foreach (var book in books)
        {
            var name = Path.GetFileNameWithoutExtension(book);
            if (large)
            {
                files.Add(Path.Combine(folder, $"{name}.txt"));
            }
            else
            {
                for (var i = 0; i < copies; i++)
                {
                    files.Add(Path.Combine(folder, $"{name}-{i:D3}.txt"));
                }
            }
        }
        if (File.Exists(complete))
        {
            return files;
        }
        Directory.CreateDirectory(folder);
        foreach (var book in books)
        {
            var text = await File.ReadAllBytesAsync(book, ct);
            var name = Path.GetFileNameWithoutExtension(book);
            if (large)
            {
                await using var file = File.Create(Path.Combine(folder, $"{name}.txt"));
                for (var i = 0; i < copies; i++)
                {
                    await file.WriteAsync(text, ct);
                }
            }
            else
            {
                for (var i = 0; i < copies; i++)
                {
                    await File.WriteAllBytesAsync(Path.Combine(folder, $"{name}-{i:D3}.txt"), text, ct);
                }
            }
        }
        await File.WriteAllTextAsync(complete, "", ct);
        return files;
    }

    private static string? Differs(Dictionary<string, long> counts, Dictionary<string, long> reference)
    {
        foreach (var (word, count) in reference)
        {
            if (counts.GetValueOrDefault(word) != count)
            {
                return $"'{word}': {counts.GetValueOrDefault(word)}, expected {count}";
            }
        }
        return counts.Count == reference.Count ? null : $"{counts.Count} words, expected {reference.Count}";
    }

    /// <summary>The engine's counts must equal the baseline's; returns the first difference.</summary>
    private static string? Compare(string dataPath, JobView view, Dictionary<string, long> reference)
    {
        IEnumerable<string> Lines()
        {
            foreach (var part in view.Status.Outputs)
            {
                foreach (var line in File.ReadLines(Path.Combine(dataPath, view.Status.OutputContainer!, part)))
                {
                    yield return line;
                }
            }
        }
        return Baselines.FirstDifference(Lines(), reference);
    }
}
