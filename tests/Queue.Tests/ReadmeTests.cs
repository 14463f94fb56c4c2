using System.Diagnostics;
using System.Text.RegularExpressions;
using Queue.Tests.Infrastructure;
using Queue.Worker.Apps;

namespace Queue.Tests;

/// <summary>
/// The README's own commands, taken from the README and run verbatim by bash from the repository root
/// as a newcomer would: the demo, then the ingress quick start (start, copy the books, submit with curl,
/// read the output), checked against the sequential reference.
/// </summary>
[Collection("readme")]
public sealed partial class ReadmeTests : IAsyncLifetime
{
    private static readonly string Readme = File.ReadAllText(Path.Combine(RepoPaths.Root, "README.md"));
    private readonly string data = Path.Combine(RepoPaths.Root, "data");
    private readonly string aside = Path.Combine(RepoPaths.Root, ".readme-test-data-" + Guid.NewGuid().ToString("N")[..8]);

    public Task InitializeAsync()
    {
        // The commands write ./data in the repository; a user's own data is put back afterwards.
        if (Directory.Exists(data))
        {
            Directory.Move(data, aside);
        }
        return Task.CompletedTask;
    }

    public Task DisposeAsync()
    {
        if (Directory.Exists(data))
        {
            Directory.Delete(data, recursive: true);
        }
        if (Directory.Exists(aside))
        {
            Directory.Move(aside, data);
        }
        return Task.CompletedTask;
    }

    [Fact]
    public async Task TheQuickStartWorksVerbatimFromTheRepositoryRoot()
    {
        // The first command of the README's first block runs a real job on the embedded engine.
        var demo = FirstBlock().Split('\n')[0].Split('#')[0].Trim();
        Assert.Equal("dotnet run --project src/Cli -- demo", demo);
        var (exit, output) = await BashAsync(demo, TimeSpan.FromMinutes(4));
        Assert.True(exit == 0, output);
        Assert.Matches(@"Job \S+ succeeded", output);
        Assert.Contains($"Output: {data}/dfs-dest/", output, StringComparison.Ordinal);

        // The ingress exactly as the README starts it, from the repository root.
        var start = StartCommand().Match(Readme);
        Assert.True(start.Success, "The README no longer says how to start the ingress.");
        var log = new BoundedLog();
        using var ingress = StartBash(start.Groups[1].Value, log);
        try
        {
            await WaitHealthyAsync(ingress, new Uri("http://127.0.0.1:5000"), TimeSpan.FromMinutes(4));
            // ./data is the folder the command ran in, and the ingress says so.
            Assert.Contains($"data folder {data}", log.ToString(), StringComparison.Ordinal);

            // The quick start block: copy the books, submit, then read status and output with the id filled in.
            var block = QuickStartBlock().Match(Readme);
            Assert.True(block.Success, "The README no longer has the curl quick start.");
            var lines = JoinContinuations(block.Groups[1].Value);
            Assert.StartsWith("mkdir -p data/books && cp ../shared/data/gutenberg/*.txt data/books/", lines[0], StringComparison.Ordinal);
            var copy = await BashAsync(lines[0], TimeSpan.FromSeconds(30));
            Assert.True(copy.Exit == 0, copy.Output);
            var submit = await BashAsync(lines[1], TimeSpan.FromSeconds(30));
            Assert.True(submit.Exit == 0, submit.Output);
            Assert.Contains("HTTP/1.1 202", submit.Output, StringComparison.Ordinal);
            var id = Regex.Match(submit.Output, @"Location: /jobs/(\S+)").Groups[1].Value;
            Assert.NotEmpty(id);

            var status = lines[2].Split('#')[0].Replace("<id>", id, StringComparison.Ordinal);
            var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(2);
            string state;
            do
            {
                await Task.Delay(200);
                state = (await BashAsync(status, TimeSpan.FromSeconds(30))).Output;
            }
            while (!state.Contains("\"Succeeded\"", StringComparison.Ordinal) && !state.Contains("\"Failed\"", StringComparison.Ordinal) && DateTime.UtcNow < deadline);
            Assert.Contains("\"state\":\"Succeeded\"", state, StringComparison.Ordinal);

            var fetch = await BashAsync(lines[3].Split('#')[0].Replace("<id>", id, StringComparison.Ordinal), TimeSpan.FromSeconds(30));
            var reference = SequentialReference.Run(new WordCountApp(), SequentialReference.ReadFolder(RepoPaths.Gutenberg));
            Assert.Equal(reference, SequentialReference.SortByKey(fetch.Output.Split('\n')));
        }
        finally
        {
            // dotnet run starts the ingress as its child: end the tree we started, by PID.
            ingress.Kill(entireProcessTree: true);
            await ingress.WaitForExitAsync();
        }
    }

    private static string FirstBlock() => Regex.Match(Readme, "```bash\n(.*?)```", RegexOptions.Singleline).Groups[1].Value;

    /// <summary>Folds shell line continuations so each entry is one command.</summary>
    private static List<string> JoinContinuations(string block)
    {
        var commands = new List<string>();
        var current = "";
        foreach (var line in block.Split('\n'))
        {
            current += line.TrimEnd().TrimEnd('\\') + " ";
            if (!line.TrimEnd().EndsWith('\\'))
            {
                if (current.Trim().Length > 0)
                {
                    commands.Add(current.Trim());
                }
                current = "";
            }
        }
        return commands;
    }

    private static ProcessStartInfo Bash(string command)
    {
        var info = new ProcessStartInfo("bash") { WorkingDirectory = RepoPaths.Root, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add(command);
        return info;
    }

    private static Task<(int Exit, string Output)> BashAsync(string command, TimeSpan timeout) =>
        OsProcess.BashAsync(command, RepoPaths.Root, timeout);

    private static Process StartBash(string command, BoundedLog log)
    {
        var process = Process.Start(Bash("exec " + command))!;
        process.OutputDataReceived += (_, e) => log.Append(e.Data);
        process.ErrorDataReceived += (_, e) => log.Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    private static async Task WaitHealthyAsync(Process process, Uri address, TimeSpan timeout)
    {
        using var http = new HttpClient { BaseAddress = address, Timeout = TimeSpan.FromSeconds(2) };
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline && !process.HasExited)
        {
            try
            {
                if ((await http.GetAsync("/healthz")).IsSuccessStatusCode)
                {
                    return;
                }
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
            }
            await Task.Delay(250);
        }
        throw new TimeoutException($"The ingress did not answer on {address} (exited: {process.HasExited}).");
    }

    [GeneratedRegex("`(dotnet run --project src/Ingress -- --urls http://127.0.0.1:5000)`")]
    private static partial Regex StartCommand();

    [GeneratedRegex("```bash\n(mkdir -p data/books.*?)```", RegexOptions.Singleline)]
    private static partial Regex QuickStartBlock();
}
