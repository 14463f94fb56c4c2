using System.Diagnostics;

namespace Queue.Tests.Infrastructure;

public static class OsProcess
{
    /// <summary>Sends a signal to one process we started, by PID.</summary>
    public static void Signal(int pid, string name)
    {
        using var kill = Process.Start("kill", $"-{name} {pid}");
        kill.WaitForExit();
    }

    /// <summary>Sends a signal to a process we started and to every process below it (a server launched by a script).</summary>
    public static void SignalTree(int pid, string name)
    {
        foreach (var member in Tree(pid))
        {
            Signal(member, name);
        }
    }

    /// <summary>The process and its descendants, from each process's parent id in <c>/proc/{pid}/stat</c>.</summary>
    private static List<int> Tree(int root)
    {
        var children = new Dictionary<int, List<int>>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid))
            {
                continue;
            }
            try
            {
                var stat = File.ReadAllText(Path.Combine(dir, "stat"));
                // Fields after the command (which may hold spaces) start after the last ')': state, then the parent id.
                var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                var parent = int.Parse(fields[1], System.Globalization.CultureInfo.InvariantCulture);
                (children.TryGetValue(parent, out var list) ? list : children[parent] = []).Add(pid);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
            {
                // The process ended while we looked.
            }
        }
        var tree = new List<int> { root };
        for (var i = 0; i < tree.Count; i++)
        {
            if (children.TryGetValue(tree[i], out var below))
            {
                tree.AddRange(below);
            }
        }
        return tree;
    }

    /// <summary>
    /// Runs a command line with bash in <paramref name="workingDirectory"/> and returns its exit code and
    /// output (stdout then stderr); past <paramref name="timeout"/> the process tree is killed and the test fails.
    /// </summary>
    public static async Task<(int Exit, string Output)> BashAsync(string command, string workingDirectory, TimeSpan timeout,
        IReadOnlyDictionary<string, string>? environment = null)
    {
        var info = new ProcessStartInfo("bash") { WorkingDirectory = workingDirectory, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add(command);
        foreach (var (key, value) in environment ?? new Dictionary<string, string>())
        {
            info.Environment[key] = value;
        }
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"'{command}' took longer than {timeout}:\n{await stdout}\n{await stderr}");
        }
        return (process.ExitCode, await stdout + await stderr);
    }

    /// <summary>Finds an executable on PATH or in the usual system folders.</summary>
    public static string? Which(string name)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Concat(["/usr/bin", "/usr/sbin", "/usr/local/bin"]))
        {
            var path = Path.Combine(dir, name);
            if (File.Exists(path))
            {
                return path;
            }
        }
        return null;
    }
}
