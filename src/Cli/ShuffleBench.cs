using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Queue.Contracts.Jobs;

namespace Queue.Cli;

/// <summary>
/// The shuffle's benchmarks, where word count's combiner cannot hide it:
/// <list type="bullet">
/// <item><c>bench --shuffle</c>: the cost of task granularity — word count over the books ×30 in 240
/// files as 8 × 2, 2,000 × 2, 400 × 100 and 2,000 × 200 tasks, each output checked, each time beside
/// the 8 × 2 job's;</item>
/// <item><c>bench --sort</c>: the built-in sort with the range partitioner over generated 100-byte
/// records, against <c>LC_ALL=C sort --parallel=cores -S 256M</c> on the same records (outputs checked
/// equal, and TeraValidate's checks), with the disk's sequential write speed as the floor and every
/// process's peak RSS.</item>
/// </list>
/// Both run on the embedded engine in this process, and with <c>--cluster URL</c> on a running cluster too.
/// </summary>
public static partial class ShuffleBench
{
    private static readonly (int Maps, int Reduces)[] Shapes = [(8, 2), (2000, 2), (400, 100), (2000, 200)];

    /// <summary>A way to run a job and get its view: the embedded engine, or a cluster through its ingress.</summary>
    public delegate Task<JobView> JobRunner(JobRequest request, CancellationToken ct);

    /// <summary>Calls on the intermediate container so far (the embedded engine's own count; a cluster's are in its services' metrics).</summary>
    public delegate Task<Queue.Hosting.BlobCallCounts> OperationCounter(CancellationToken ct);

    public static async Task GranularityAsync(string label, JobRunner run, string container, Func<JobView, CancellationToken, Task<string?>> check,
        OperationCounter? operations, CancellationToken ct)
    {
        Console.WriteLine();
        Console.WriteLine($"Task granularity, {label}: word count over {container}, each output checked");
        Console.WriteLine($"{"maps x reduces",-16} {"seconds",8} {"map+reduce s",13} {"vs 8 x 2",9} {"intermediate blobs",19} {"(was maps x reduces)",20}"
            + (operations is null ? "" : $"  {"blob calls write/read/delete/list",34} {"(was)",0}"));
        double? baseline = null;
        foreach (var (maps, reduces) in Shapes)
        {
            var before = operations is null ? default : await operations(ct);
            var watch = Stopwatch.StartNew();
            var view = await run(new JobRequest { App = "wordcount", Input = container, MapTasks = maps, ReduceTasks = reduces }, ct);
            var seconds = watch.Elapsed.TotalSeconds;
            if (view.Status.State != JobState.Succeeded)
            {
                throw new CliException($"The {maps} x {reduces} job ended {view.Status.State}: {view.Status.Error}", 1);
            }
            if (await check(view, ct) is { } wrong)
            {
                throw new CliException($"The {maps} x {reduces} job's output differs from the baseline: {wrong}", 1);
            }
            baseline ??= seconds;
            var calls = "";
            if (operations is not null)
            {
                var after = await operations(ct);
                // One file per map and partition: each written, read by its reduce and deleted once.
                var was = (long)view.Status.Map.Total * reduces;
                calls = string.Create(CultureInfo.InvariantCulture,
                    $"  {$"{after.Writes - before.Writes}/{after.Reads - before.Reads}/{after.Deletes - before.Deletes}/{after.Lists - before.Lists}",34} ({was}/{was}/{was})");
            }
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{$"{view.Status.Map.Total} x {reduces}",-16} {seconds,8:0.000} {$"{view.Status.MapSeconds:0.00}+{view.Status.ReduceSeconds:0.00}",13} {seconds / baseline.Value,8:0.00}x {view.Status.Map.Total + 1,19} {(long)view.Status.Map.Total * reduces,20}{calls}"));
        }
    }

    /// <summary>The sort benchmark for each size, on the embedded engine (and the cluster when given).</summary>
    public static async Task<int> SortAsync(EmbeddedEngine engine, string dataPath, int[] sizes, int slots, IngressClient? cluster, CancellationToken ct)
    {
        foreach (var mb in sizes)
        {
            var container = $"sort-{mb}mb";
            var folder = Path.Combine(dataPath, container);
            var marker = Path.Combine(dataPath, $".{container}.complete");
            if (!File.Exists(marker))
            {
                Console.WriteLine($"Generating {mb} MB of sort records ...");
                if (Directory.Exists(folder))
                {
                    Directory.Delete(folder, recursive: true);
                }
                await SortCommands.WriteFilesAsync(folder, mb * 10_000L, seed: 1, ct);
                await File.WriteAllTextAsync(marker, "", ct);
            }
            var files = Directory.GetFiles(folder, "*.txt");
            Array.Sort(files, StringComparer.Ordinal);
            var bytes = files.Sum(f => new FileInfo(f).Length);
            var megas = bytes / 1e6;
            var input = new SortRecords.Summary();
            foreach (var file in files)
            {
                await using var stream = File.OpenRead(file);
                await SortRecords.SummarizeAsync(stream, input, ct);
                input.Finish();
            }

            Console.WriteLine();
            Console.WriteLine($"Sort, {megas:0} MB ({input.Records} records of 100 bytes, {files.Length} files); {Environment.ProcessorCount} cores");
            Console.WriteLine($"{"run",-62} {"seconds",8} {"MB/s",7} {"vs GNU sort",11} {"peak RSS",9}");
            void Row(string run, double seconds, double gnu, string rss) =>
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{run,-62} {seconds,8:0.000} {megas / seconds,7:0.0} {gnu / seconds,10:0.00}x {rss,9}"));

            var scratch = Path.Combine(dataPath, ".sort-scratch");
            Directory.CreateDirectory(scratch);
            var diskSeconds = await DiskWriteSecondsAsync(scratch, bytes, ct);

            // GNU sort first, into a file, with the same memory budget as the engine's sort buffer per slot.
            var gnuOutput = Path.Combine(scratch, "gnu-sorted.txt");
            var watch = Stopwatch.StartNew();
            var (gnuExit, gnuRssKb, gnuError) = await RunMeasuredAsync("sort",
                ["--parallel=" + Environment.ProcessorCount, "-S", "256M", "-T", scratch, "-o", gnuOutput, .. files], ct);
            var gnuSeconds = watch.Elapsed.TotalSeconds;
            if (gnuExit != 0)
            {
                throw new CliException($"GNU sort failed: {gnuError}", 1);
            }

            // Reduces: about 128 MB each, at least one per slot.
            var reduces = Math.Max(slots, (int)Math.Ceiling(megas / 128));
            var maps = Math.Max(slots, (int)Math.Ceiling(megas / 64));
            var request = new JobRequest { App = "sort", Input = container, MapTasks = maps, ReduceTasks = reduces, Partitioner = JobSpec.RangePartitioner };
            watch.Restart();
            var view = await engine.RunAsync(request, null, ct);
            var engineSeconds = watch.Elapsed.TotalSeconds;
            if (view.Status.State != JobState.Succeeded)
            {
                throw new CliException($"The engine's sort ended {view.Status.State}: {view.Status.Error}", 1);
            }
            var parts = view.Status.Outputs.Select(p => Path.Combine(dataPath, view.Status.OutputContainer!, p)).ToList();
            await CheckAsync("the engine's", input, parts, view.Status.Outputs.Count, gnuOutput, ct);

            Row($"disk, sequential write of {megas:0} MB (dd, fdatasync): the floor", diskSeconds, gnuSeconds, "");
            Row("GNU sort --parallel -S 256M (LC_ALL=C)", gnuSeconds, gnuSeconds, $"{gnuRssKb / 1024.0:0} MiB");
            Row($"engine, embedded ({view.Status.Map.Total} maps x {reduces} reduces; {view.Status.MapSeconds:0.0}+{view.Status.ReduceSeconds:0.0} s)", engineSeconds, gnuSeconds,
                $"{PeakMemory.SelfMiB():0} MiB");

            if (cluster is not null)
            {
                var clusterSeconds = await ClusterSortAsync(cluster, container, files, request, input, gnuOutput, ct);
                Row($"engine, cluster ({maps} maps x {reduces} reduces; vs embedded {clusterSeconds / engineSeconds:0.00}x)", clusterSeconds, gnuSeconds, "");
            }
            File.Delete(gnuOutput);
            await engine.DeleteOutputAsync(view, ct);
        }
        return 0;
    }

    /// <summary>Uploads the records to the cluster, sorts them there, validates the output; returns the job's seconds.</summary>
    private static async Task<double> ClusterSortAsync(IngressClient client, string container, string[] files, JobRequest request, SortRecords.Summary input, string gnuOutput, CancellationToken ct)
    {
        var remote = "bench-" + container;
        foreach (var file in files)
        {
            await client.UploadAsync(remote, Path.GetFileName(file), file, _ => { }, ct);
        }
        var watch = Stopwatch.StartNew();
        var id = await client.SubmitAsync(request with { Input = remote }, ct);
        JobView view;
        while (!(view = await client.GetViewAsync(id, ct)).Status.IsTerminal)
        {
            await Task.Delay(50, ct);
        }
        var seconds = watch.Elapsed.TotalSeconds;
        if (view.Status.State != JobState.Succeeded)
        {
            throw new CliException($"The cluster's sort ended {view.Status.State}: {view.Status.Error}", 1);
        }
        var output = new SortRecords.Summary();
        await using (var stream = await client.OpenOutputAsync(id, ct))
        await using (var gnu = File.OpenRead(gnuOutput))
        {
            await CompareStreamsAsync("the cluster's", new TeeStream(stream, output), gnu, ct);
        }
        output.Finish();
        Verdict("the cluster's", input, output);
        return seconds;
    }

    /// <summary>TeraValidate's checks and byte equality with GNU sort's output, or the bench ends.</summary>
    private static async Task CheckAsync(string who, SortRecords.Summary input, List<string> parts, int count, string gnuOutput, CancellationToken ct)
    {
        var output = new SortRecords.Summary();
        await using (var concatenated = new ConcatenatedStream(parts))
        await using (var gnu = File.OpenRead(gnuOutput))
        {
            await CompareStreamsAsync(who, new TeeStream(concatenated, output), gnu, ct);
        }
        output.Finish();
        Verdict(who, input, output);
        Console.WriteLine($"{who} output: {count} parts, globally sorted, every record once, byte for byte GNU sort's");
    }

    private static void Verdict(string who, SortRecords.Summary input, SortRecords.Summary output)
    {
        if (output.Disorder is { } disorder)
        {
            throw new CliException($"{who} output is out of order at {disorder}.", 1);
        }
        if (output.Records != input.Records || output.Checksum != input.Checksum)
        {
            throw new CliException($"{who} output holds {output.Records} records (checksum {output.Checksum:x16}), the input {input.Records} ({input.Checksum:x16}).", 1);
        }
    }

    private static async Task CompareStreamsAsync(string who, Stream actual, Stream expected, CancellationToken ct)
    {
        var a = new byte[1 << 20];
        var b = new byte[1 << 20];
        long at = 0;
        while (true)
        {
            var read = await ReadFullAsync(actual, a, ct);
            var expectedRead = await ReadFullAsync(expected, b, ct);
            var same = a.AsSpan(0, read).CommonPrefixLength(b.AsSpan(0, expectedRead));
            if (same < Math.Max(read, expectedRead))
            {
                throw new CliException($"{who} output differs from GNU sort's at byte {at + same}.", 1);
            }
            if (read == 0)
            {
                return;
            }
            at += read;
        }
    }

    private static async Task<int> ReadFullAsync(Stream stream, byte[] buffer, CancellationToken ct)
    {
        var total = 0;
        int read;
        while (total < buffer.Length && (read = await stream.ReadAsync(buffer.AsMemory(total), ct)) > 0)
        {
            total += read;
        }
        return total;
    }

    /// <summary>Seconds to write <paramref name="bytes"/> sequentially (dd with fdatasync, at most 1 GB, scaled).</summary>
    private static async Task<double> DiskWriteSecondsAsync(string folder, long bytes, CancellationToken ct)
    {
        var megabytes = (int)Math.Min(1000, Math.Max(1, bytes / 1_000_000));
        var target = Path.Combine(folder, "dd.tmp");
        var (exit, _, error) = await RunMeasuredAsync("dd", ["if=/dev/zero", $"of={target}", "bs=1M", $"count={megabytes}", "conv=fdatasync"], ct);
        File.Delete(target);
        var match = DdSeconds().Match(error);
        if (exit != 0 || !match.Success)
        {
            throw new CliException($"dd failed: {error}", 1);
        }
        var seconds = double.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture);
        return seconds * bytes / (megabytes * 1048576.0);
    }

    [GeneratedRegex(@"copied, ([0-9.]+) s")]
    private static partial Regex DdSeconds();

    /// <summary>Runs a program under <c>/usr/bin/time</c>; returns its exit code, peak RSS in KiB and stderr.</summary>
    private static async Task<(int Exit, long RssKb, string Error)> RunMeasuredAsync(string program, string[] args, CancellationToken ct)
    {
        var info = new ProcessStartInfo("/usr/bin/time") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        info.ArgumentList.Add("-f");
        info.ArgumentList.Add("maxrss %M");
        info.ArgumentList.Add(program);
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }
        info.Environment["LC_ALL"] = "C";
        using var process = Process.Start(info) ?? throw new CliException($"Could not start {program}.", 1);
        var stderr = process.StandardError.ReadToEndAsync(ct);
        _ = process.StandardOutput.ReadToEndAsync(ct);
        await process.WaitForExitAsync(ct);
        var error = await stderr;
        var rss = Regex.Match(error, @"maxrss (\d+)") is { Success: true } m ? long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) : 0;
        return (process.ExitCode, rss, error);
    }

    /// <summary>Files read one after the other as one stream.</summary>
    private sealed class ConcatenatedStream(List<string> files) : Stream
    {
        private int next;
        private FileStream? current;

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count)
        {
            while (true)
            {
                if (current is null)
                {
                    if (next == files.Count)
                    {
                        return 0;
                    }
                    current = new FileStream(files[next++], FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.SequentialScan);
                }
                var read = current.Read(buffer, offset, count);
                if (read > 0)
                {
                    return read;
                }
                current.Dispose();
                current = null;
            }
        }

        protected override void Dispose(bool disposing)
        {
            current?.Dispose();
            base.Dispose(disposing);
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }

    /// <summary>Hands every byte read through to a summary as well.</summary>
    private sealed class TeeStream(Stream inner, SortRecords.Summary summary) : Stream
    {
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count)
        {
            var read = inner.Read(buffer, offset, count);
            summary.Add(buffer.AsSpan(offset, read));
            return read;
        }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            var read = await inner.ReadAsync(buffer, cancellationToken);
            summary.Add(buffer.Span[..read]);
            return read;
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
