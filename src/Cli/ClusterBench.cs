using System.Diagnostics;
using System.Globalization;
using Queue.Contracts.Jobs;

namespace Queue.Cli;

/// <summary>
/// <c>queue bench --cluster URL</c>: against a running cluster (e.g. <c>scripts/cluster.sh up</c>), the
/// books job's time (cold, then the median of warm runs, output checked against the single-pass baseline)
/// and the per-task overhead: for tasks that never wait for a slot, the time from the leader sending a
/// task to recording its success, minus the attempt's own run time.
/// </summary>
public static class ClusterBench
{
    private const string BooksContainer = "bench-books";
    private const string TinyContainer = "bench-tiny";

    public static async Task<int> RunAsync(string url, string? apiKey, string books, int warmRuns, int overheadJobs, int copies, string scratch, CancellationToken ct)
    {
        using var client = new IngressClient(url, apiKey);
        var files = Directory.GetFiles(books, "*.txt");
        Array.Sort(files, StringComparer.Ordinal);
        if (files.Length == 0)
        {
            await Console.Error.WriteLineAsync($"No .txt files in {books}.");
            return 2;
        }
        long bytes = 0;
        foreach (var file in files)
        {
            await client.UploadAsync(BooksContainer, Path.GetFileName(file), file, _ => { }, ct);
            bytes += new FileInfo(file).Length;
        }
        var reference = Baselines.WordCount(files);
        // Four tiny inputs: one map each, so a job's eight tasks never wait for a slot on a 2 x 2-slot cluster.
        for (var i = 0; i < 4; i++)
        {
            var tiny = Path.Combine(Path.GetTempPath(), $"queue-bench-tiny-{i}.txt");
            await File.WriteAllTextAsync(tiny, $"tiny input {i} for the overhead bench\n", ct);
            await client.UploadAsync(TinyContainer, $"t{i}.txt", tiny, _ => { }, ct);
            File.Delete(tiny);
        }
        Console.WriteLine($"Cluster {url}: {files.Length} books, {bytes / 1e6:0.0} MB");

        var times = new List<double>();
        for (var run = 0; run <= warmRuns; run++)
        {
            var request = new JobRequest { App = "wordcount", Input = BooksContainer, MapTasks = 8, ReduceTasks = 4 };
            var (seconds, _) = await RunJobAsync(client, request, "books", run == 0 ? reference : null, ct);
            if (run > 0)
            {
                times.Add(seconds);
            }
            else
            {
                Console.WriteLine($"books job, first run: {seconds:0.000} s (output equals the baseline)");
            }
        }
        var warm = Statistics.Median(times);
        Console.WriteLine($"books job, warm: median {warm:0.000} s over {times.Count} runs ({bytes / 1e6 / warm:0.0} MB/s)");

        if (copies > 0)
        {
            // The 100 MB real-text shapes of the embedded bench, uploaded through the ingress once.
            foreach (var large in new[] { true, false })
            {
                var container = $"bench-{copies}-{(large ? "large" : "small")}";
                var local = await BenchCommand.BuildAsync(scratch, container, files, copies, large, ct);
                long size = 0;
                foreach (var file in local)
                {
                    size += new FileInfo(file).Length;
                }
                var present = await client.ListBlobsAsync(container, ct);
                if (present.Count != local.Count)
                {
                    foreach (var file in local)
                    {
                        await client.UploadAsync(container, Path.GetFileName(file), file, _ => { }, ct);
                    }
                }
                // The baseline's median of three, on the same (now cached) files, while the cluster idles.
                var watch = Stopwatch.StartNew();
                var allCores = Baselines.WordCountAllCores(local);
                var baselines = new List<double> { watch.Elapsed.TotalSeconds };
                for (var i = 0; i < 2; i++)
                {
                    watch.Restart();
                    Baselines.WordCountAllCores(local);
                    baselines.Add(watch.Elapsed.TotalSeconds);
                }
                var baseline = Statistics.Median(baselines);
                var shapeTimes = new List<double>();
                for (var run = 0; run < 4; run++)
                {
                    var request = new JobRequest { App = "wordcount", Input = container, MapTasks = 8, ReduceTasks = 2 };
                    var (seconds, _) = await RunJobAsync(client, request, container, run == 0 ? allCores : null, ct);
                    // The first run is a warm-up.
                    if (run > 0)
                    {
                        shapeTimes.Add(seconds);
                    }
                }
                var shape = Statistics.Median(shapeTimes);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"books x{copies}, {local.Count} {(large ? "large" : "small")} files ({size / 1e6:0} MB): warm median {shape:0.000} s, all-core baseline here {baseline:0.000} s, engine / baseline {baseline / shape:0.00}x"));
            }
        }

        var overhead = new List<double>();
        var pickup = new List<double>();
        var toStart = new List<double>();
        var toRecord = new List<double>();
        for (var job = 0; job < overheadJobs; job++)
        {
            var (_, details) = await RunJobAsync(client, new JobRequest { App = "wordcount", Input = TinyContainer, MapTasks = 4, ReduceTasks = 4 }, "overhead", null, ct);
            if (details.Status.StartedAt is { } planned)
            {
                // Submission (the ingress's clock) to the leader planning the job: how soon a new job is seen.
                pickup.Add((planned - details.Status.SubmittedAt).TotalMilliseconds);
            }
            foreach (var task in details.Tasks)
            {
                if (task is { QueuedAt: { } queued, StartedAt: { } started, FinishedAt: { } finished, RecordedAt: { } recorded })
                {
                    overhead.Add(((recorded - queued) - (finished - started)).TotalMilliseconds);
                    toStart.Add((started - queued).TotalMilliseconds);
                    toRecord.Add((recorded - finished).TotalMilliseconds);
                }
            }
        }
        overhead.Sort();
        pickup.Sort();
        toStart.Sort();
        toRecord.Sort();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"per-task overhead over {overhead.Count} tasks: p50 {Statistics.Percentile(overhead, 0.5):0.0} ms, p95 {Statistics.Percentile(overhead, 0.95):0.0} ms " +
            $"(sent to started p50 {Statistics.Percentile(toStart, 0.5):0.0} ms, finished to recorded p50 {Statistics.Percentile(toRecord, 0.5):0.0} ms); " +
            $"submitted to planned p50 {Statistics.Percentile(pickup, 0.5):0.0} ms, p95 {Statistics.Percentile(pickup, 0.95):0.0} ms"));
        return 0;
    }

    /// <summary>
    /// Submits a job and waits for its end; its output is checked against <paramref name="reference"/>
    /// when one is given (outside the time). A job that does not succeed, or differs, ends the bench.
    /// </summary>
    private static async Task<(double Seconds, JobDetails Details)> RunJobAsync(IngressClient client, JobRequest request, string label, Dictionary<string, long>? reference, CancellationToken ct)
    {
        var watch = Stopwatch.StartNew();
        var id = await client.SubmitAsync(request, ct);
        var details = await WaitAsync(client, id, ct);
        var seconds = watch.Elapsed.TotalSeconds;
        if (details.Status.State != JobState.Succeeded)
        {
            throw new CliException($"The {label} job ended {details.Status.State}: {details.Status.Error}", 1);
        }
        if (reference is not null && await CompareAsync(client, id, reference, ct) is { } mismatch)
        {
            throw new CliException($"The cluster's output of the {label} job differs from the baseline: {mismatch}", 1);
        }
        return (seconds, details);
    }

    /// <summary>Polls the job's view (cheap whatever the job's size), then reads its tasks once it ended.</summary>
    private static async Task<JobDetails> WaitAsync(IngressClient client, string id, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(10);
        while (!(await client.GetViewAsync(id, ct)).Status.IsTerminal && DateTime.UtcNow <= deadline)
        {
            await Task.Delay(20, ct);
        }
        return await client.GetAsync(id, ct);
    }

    private static async Task<string?> CompareAsync(IngressClient client, string id, Dictionary<string, long> reference, CancellationToken ct)
    {
        using var output = new MemoryStream();
        await client.CopyOutputAsync(id, output, ct);
        var text = System.Text.Encoding.UTF8.GetString(output.GetBuffer(), 0, (int)output.Length);
        return Baselines.FirstDifference(text.Split('\n', StringSplitOptions.RemoveEmptyEntries), reference);
    }

}
