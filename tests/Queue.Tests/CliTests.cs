using System.Diagnostics;
using Queue.Tests.Infrastructure;
using Queue.Worker.Apps;

namespace Queue.Tests;

/// <summary>The <c>queue</c> CLI as a process against a running ingress.</summary>
public sealed class CliTests(EmbeddedEngineFixture engine) : IClassFixture<EmbeddedEngineFixture>
{
    private static async Task<(int Exit, string Out, string Err)> RunAsync(string url, params string[] args)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(RepoPaths.ServiceDll("Queue.Cli").Replace("Queue.Cli.dll", "queue.dll", StringComparison.Ordinal));
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }
        info.Environment["QUEUE_URL"] = url;
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        await process.WaitForExitAsync(timeout.Token);
        return (process.ExitCode, await stdout, await stderr);
    }

    private Task<(int Exit, string Out, string Err)> Cli(params string[] args) => RunAsync(engine.Ingress.BaseAddress.ToString(), args);

    [Fact]
    public async Task GenerateSortAndValidateTheSortBenchmarkThroughTheCli()
    {
        var generated = await Cli("gen", "sort", "--mb", "3", "--seed", "5", "--container", "cli-sortin");
        Assert.True(generated.Exit == 0, generated.Err);
        var submit = await Cli("submit", "--app", "sort", "--input", "cli-sortin", "--maps", "3", "--reduces", "4", "--partitioner", "range", "--wait");
        Assert.True(submit.Exit == 0, submit.Err + submit.Out);
        var id = submit.Out.Split('\n')[0].Trim();
        var valid = await Cli("validate", "sort", id);
        Assert.True(valid.Exit == 0, valid.Err + valid.Out);
        Assert.Contains("input:  30000 records", valid.Out, StringComparison.Ordinal);
        Assert.Contains("valid: globally sorted", valid.Out, StringComparison.Ordinal);

        // The hash partitioner's parts are sorted one by one, not as one output: validate says so and fails.
        var hashed = await Cli("submit", "--app", "sort", "--input", "cli-sortin", "--maps", "3", "--reduces", "4", "--wait");
        Assert.True(hashed.Exit == 0, hashed.Err + hashed.Out);
        var invalid = await Cli("validate", "sort", hashed.Out.Split('\n')[0].Trim());
        Assert.Equal(1, invalid.Exit);
        Assert.Contains("out of order", invalid.Err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task UploadSubmitWatchOutputAndDownloadThroughTheCli()
    {
        var upload = await Cli("upload", RepoPaths.Gutenberg, "--container", "cli-books");
        Assert.True(upload.Exit == 0, upload.Err);
        Assert.Contains("8 files", upload.Out, StringComparison.Ordinal);

        var submit = await Cli("submit", "--app", "wordcount", "--input", "cli-books", "--maps", "6", "--reduces", "2", "--wait");
        Assert.True(submit.Exit == 0, submit.Err + submit.Out);
        var id = submit.Out.Split('\n')[0].Trim();
        Assert.Contains("Succeeded", submit.Out, StringComparison.Ordinal);

        var output = await Cli("output", id);
        Assert.Equal(0, output.Exit);
        var reference = SequentialReference.Run(new WordCountApp(), SequentialReference.ReadFolder(RepoPaths.Gutenberg));
        Assert.Equal(reference, SequentialReference.SortByKey(output.Out.Split('\n')));

        var status = await Cli("status", id);
        Assert.Equal(0, status.Exit);
        Assert.Contains("Succeeded", status.Out, StringComparison.Ordinal);
        Assert.Contains("output: dfs-dest/" + id + "/part-00000", status.Out, StringComparison.Ordinal);

        var list = await Cli("list");
        Assert.Contains(id, list.Out, StringComparison.Ordinal);

        var folder = Path.Combine(engine.Folder, "downloads");
        var download = await Cli("download", id, "--to", folder);
        Assert.True(download.Exit == 0, download.Err);
        var lines = Directory.GetFiles(folder, "part-*", SearchOption.AllDirectories).SelectMany(File.ReadAllLines);
        Assert.Equal(reference, SequentialReference.SortByKey(lines));

        var cancel = await Cli("cancel", id);
        Assert.Equal(1, cancel.Exit);
        Assert.Contains("409", cancel.Err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ADemoOnAFolderAnotherEngineHoldsIsRefusedWithAMessage()
    {
        // The fixture's ingress runs the embedded engine on its data folder and holds the folder's lock.
        var before = Directory.GetFileSystemEntries(engine.DataPath).Length;
        var demo = await Cli("demo", "--mb", "1", "--data", engine.DataPath);
        Assert.Equal(1, demo.Exit);
        Assert.Contains("error: ", demo.Err, StringComparison.Ordinal);
        Assert.Contains("in use by another process", demo.Err, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", demo.Err, StringComparison.Ordinal);
        Assert.False(Directory.Exists(Path.Combine(engine.DataPath, "sample")), "The refused demo wrote its sample anyway.");
        Assert.Equal(before, Directory.GetFileSystemEntries(engine.DataPath).Length);
    }

    [Fact]
    public async Task BadInputGetsTheServersMessageAndANonZeroExit()
    {
        var bad = await Cli("submit", "--app", "wordcount", "--input", "cli-books", "--maps", "0");
        Assert.Equal(1, bad.Exit);
        Assert.Contains("'mapTasks' must be between 1 and 10000", bad.Err, StringComparison.Ordinal);

        var unknown = await Cli("status", "nosuchjob");
        Assert.Equal(1, unknown.Exit);
        Assert.Contains("404", unknown.Err, StringComparison.Ordinal);

        var usage = await Cli("submit", "--app", "wordcount");
        Assert.NotEqual(0, usage.Exit);
    }

    [Fact]
    public async Task TheBenchPrintsEveryRunBesideItsBaselinesWithOutputsChecked()
    {
        // Small sizes, every kind of row: the bench exits non-zero when any engine or all-core count differs from the single pass.
        var dir = Path.Combine(Path.GetTempPath(), "queue-tests", Guid.NewGuid().ToString("N"));
        try
        {
            var bench = await Cli("bench", "--mb", "3", "--copies", "2", "--repeat", "2", "--dir", dir, "--books", RepoPaths.Gutenberg);
            Assert.True(bench.Exit == 0, bench.Out + bench.Err);
            foreach (var corpus in new[] { "generated, 1 file", "books x2, 8 large files", "books x2, 16 small files" })
            {
                foreach (var run in new[] { "C# all cores (baseline, median of 2)", "C# single pass", "tr | sort | uniq -c", "C# all cores, engine's tokeniser + table, median of 2", "engine, first job", "engine, again, median of 2" })
                {
                    var row = bench.Out.Split('\n').SingleOrDefault(l => l.StartsWith(corpus, StringComparison.Ordinal) && l.Contains(run, StringComparison.Ordinal) && (run != "engine, first job" || !l.Contains("again", StringComparison.Ordinal)));
                    Assert.True(row is not null, $"No '{run}' row for '{corpus}' in:\n{bench.Out}");
                    // seconds, MB/s and the ratio to the all-core baseline end every row.
                    var numbers = row.Split(' ', StringSplitOptions.RemoveEmptyEntries)[^3..];
                    Assert.True(double.Parse(numbers[0], System.Globalization.CultureInfo.InvariantCulture) > 0, row);
                    Assert.EndsWith("x", numbers[2], StringComparison.Ordinal);
                }
            }
            Assert.Contains("peak RSS of this process", bench.Out, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task AnUnreachableIngressIsReportedClearly()
    {
        var result = await RunAsync($"http://127.0.0.1:{ServiceProcess.FreePort()}", "list");
        Assert.Equal(2, result.Exit);
        Assert.Contains("Cannot reach the ingress at http://127.0.0.1:", result.Err, StringComparison.Ordinal);
    }
}
