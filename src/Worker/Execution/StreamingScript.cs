using System.Diagnostics;
using System.Globalization;
using System.Text;
using Queue.Contracts.Apps;
using Queue.Contracts.Ports;

namespace Queue.Worker.Execution;

/// <summary>
/// Runs a Hadoop-streaming script: records go to its stdin as lines, its stdout lines are
/// <c>key&lt;TAB&gt;value</c> (a line without a tab is a key with an empty value). The script runs
/// with an empty environment apart from PATH, HOME, locale and Hadoop's task variables
/// (<c>mapreduce_map_input_file</c>, <c>mapreduce_task_partition</c>), so it never sees the service's
/// secrets; its stderr is kept (the last 8 KiB) for the task's error, and Hadoop's
/// <c>reporter:counter:group,name,amount</c> lines on stderr become user counters. Cancellation
/// kills the whole process tree.
/// </summary>
public sealed class StreamingScript
{
    private const int StderrTailChars = 8 * 1024;
    private static readonly UTF8Encoding Utf8 = new(encoderShouldEmitUTF8Identifier: false);
    // A job's scripts folder unused this long is deleted when another job's first script is fetched here.
    private static readonly TimeSpan IdleScripts = TimeSpan.FromHours(1);
    private readonly string path;
    private readonly string workFolder;
    private readonly StringBuilder stderrTail = new();

    private readonly Action<string>? onStatus;

    private StreamingScript(string name, string path, string workFolder, Action<string>? onStatus)
    {
        Name = name;
        this.path = path;
        this.workFolder = workFolder;
        this.onStatus = onStatus;
    }

    public string Name { get; }

    public Dictionary<string, long> UserCounters { get; } = new(StringComparer.Ordinal);

    public string? Status { get; private set; }

    /// <summary>Downloads the script once per job into <paramref name="scriptsRoot"/> (the worker's <see cref="WorkerScratch.ScriptsFolder"/>).</summary>
    public static async Task<StreamingScript> FetchAsync(IBlobStore blobs, string container, string name, string jobId, string scriptsRoot, string workFolder, Action<string>? onStatus, CancellationToken cancellationToken)
    {
        var folder = Path.Combine(scriptsRoot, jobId);
        if (!Directory.Exists(folder))
        {
            // A job's first script here: the jobs that ran here before and have not used theirs for long are done with them.
            RemoveIdle(scriptsRoot, DateTime.UtcNow - IdleScripts);
        }
        Directory.CreateDirectory(folder);
        Directory.SetLastWriteTimeUtc(folder, DateTime.UtcNow);
        var local = Path.Combine(folder, name.Replace('/', '_'));
        if (!File.Exists(local))
        {
            var temp = local + "." + Guid.NewGuid().ToString("N");
            try
            {
                await using (var source = await blobs.OpenReadAsync(container, name, 0, null, cancellationToken))
                await using (var target = File.Create(temp))
                {
                    await source.CopyToAsync(target, cancellationToken);
                }
                if (!OperatingSystem.IsWindows())
                {
                    File.SetUnixFileMode(temp, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
                }
                File.Move(temp, local, overwrite: false);
            }
            catch (IOException) when (File.Exists(local))
            {
                // Another slot fetched it first.
            }
            finally
            {
                File.Delete(temp);
            }
        }
        Directory.CreateDirectory(workFolder);
        return new StreamingScript(name, local, workFolder, onStatus);
    }

    private static void RemoveIdle(string scriptsRoot, DateTime unusedSince)
    {
        if (!Directory.Exists(scriptsRoot))
        {
            return;
        }
        foreach (var folder in Directory.EnumerateDirectories(scriptsRoot))
        {
            try
            {
                if (Directory.GetLastWriteTimeUtc(folder) < unusedSince)
                {
                    Directory.Delete(folder, recursive: true);
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // In use after all, or gone already: the next look decides.
            }
        }
    }

    /// <summary>Feeds <paramref name="writeInput"/>'s lines to the script and hands each output line to <paramref name="onOutput"/>.</summary>
    public async Task RunAsync(Func<TextWriter, CancellationToken, Task> writeInput, Action<string> onOutput, IReadOnlyDictionary<string, string> environment, CancellationToken cancellationToken)
    {
        using var process = Start(environment);
        try
        {
            await RunProcessAsync(process, writeInput, onOutput, cancellationToken);
        }
        finally
        {
            // However the run ends (cancelled mid-write, a reader that threw), the script is gone before
            // this returns: the attempt reports only after, so a retry never runs beside it.
            if (!HasExited(process))
            {
                KillTree(process);
                await process.WaitForExitAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(5), CancellationToken.None)
                    .ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        }
    }

    private static bool HasExited(Process process)
    {
        try
        {
            return process.HasExited;
        }
        catch (InvalidOperationException)
        {
            return true;
        }
    }

    private async Task RunProcessAsync(Process process, Func<TextWriter, CancellationToken, Task> writeInput, Action<string> onOutput, CancellationToken cancellationToken)
    {
        await using var kill = cancellationToken.Register(() => KillTree(process));
        var stderr = Task.Run(() => ReadStderrAsync(process.StandardError), CancellationToken.None);
        var stdout = Task.Run(async () =>
        {
            string? line;
            while ((line = await process.StandardOutput.ReadLineAsync(CancellationToken.None)) is not null)
            {
                onOutput(line);
            }
        }, CancellationToken.None);
        try
        {
            await writeInput(process.StandardInput, cancellationToken);
            process.StandardInput.Close();
        }
        catch (IOException)
        {
            // The script stopped reading (exited early); its exit code tells whether that was a failure.
        }
        await Task.WhenAll(stdout, stderr);
        await process.WaitForExitAsync(CancellationToken.None);
        cancellationToken.ThrowIfCancellationRequested();
        if (process.ExitCode != 0)
        {
            throw new StreamingScriptException($"Script '{Name}' exited with code {process.ExitCode}. stderr: {StderrTail()}");
        }
    }

    /// <summary>Splits a streaming output line into key and value at the first tab.</summary>
    public static (string Key, string Value) Split(string line)
    {
        var tab = line.IndexOf('\t');
        return tab < 0 ? (line, "") : (line[..tab], line[(tab + 1)..]);
    }

    private Process Start(IReadOnlyDictionary<string, string> environment)
    {
        var info = new ProcessStartInfo
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workFolder,
            StandardInputEncoding = Utf8,
            StandardOutputEncoding = Utf8,
            StandardErrorEncoding = Utf8,
        };
        var interpreter = Interpreter(path);
        if (interpreter is null)
        {
            info.FileName = path;
        }
        else
        {
            info.FileName = interpreter;
            info.ArgumentList.Add(path);
        }
        // Only what a script needs: none of the service's configuration or secrets.
        info.Environment.Clear();
        info.Environment["PATH"] = "/usr/local/bin:/usr/bin:/bin";
        info.Environment["HOME"] = workFolder;
        info.Environment["LANG"] = "C.UTF-8";
        info.Environment["PYTHONIOENCODING"] = "utf-8";
        foreach (var (name, value) in environment)
        {
            info.Environment[name] = value;
        }
        return Process.Start(info) ?? throw new StreamingScriptException($"Script '{Name}' could not be started.");
    }

    /// <summary>By extension first (python3 for .py, as Hadoop users expect), else the script's own shebang.</summary>
    private static string? Interpreter(string script)
    {
        return Path.GetExtension(script).ToLowerInvariant() switch
        {
            ".py" => "python3",
            ".sh" => "bash",
            ".pl" => "perl",
            ".rb" => "ruby",
            _ => null,
        };
    }

    private async Task ReadStderrAsync(StreamReader reader)
    {
        string? line;
        while ((line = await reader.ReadLineAsync()) is not null)
        {
            if (line.StartsWith("reporter:counter:", StringComparison.Ordinal))
            {
                var parts = line["reporter:counter:".Length..].Split(',');
                if (parts.Length == 3 && long.TryParse(parts[2], NumberStyles.Integer, CultureInfo.InvariantCulture, out var amount))
                {
                    lock (UserCounters)
                    {
                        var name = $"{parts[0]}.{parts[1]}";
                        UserCounters[name] = UserCounters.GetValueOrDefault(name) + amount;
                    }
                }
                continue;
            }
            if (line.StartsWith("reporter:status:", StringComparison.Ordinal))
            {
                Status = line["reporter:status:".Length..];
                onStatus?.Invoke(Status);
                continue;
            }
            lock (stderrTail)
            {
                stderrTail.AppendLine(line);
                if (stderrTail.Length > StderrTailChars)
                {
                    stderrTail.Remove(0, stderrTail.Length - StderrTailChars);
                }
            }
        }
    }

    private string StderrTail()
    {
        lock (stderrTail)
        {
            return stderrTail.Length == 0 ? "(empty)" : stderrTail.ToString().Trim();
        }
    }

    private static void KillTree(Process process)
    {
        try
        {
            process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
            // Already gone.
        }
    }
}

public sealed class StreamingScriptException(string message) : Exception(message);

/// <summary>Stands in for the app of a streaming job inside the map output buffer: no combiner.</summary>
public sealed class StreamingApp : IMapReduceApp
{
    public static StreamingApp Instance { get; } = new();

    public void Map(MapInput input, IMapEmitter emit) => throw new NotSupportedException("Streaming maps run a script.");

    public string Reduce(string key, IEnumerable<string> values) => throw new NotSupportedException("Streaming reduces run a script.");
}
