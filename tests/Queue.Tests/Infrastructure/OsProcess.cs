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
