using System.Globalization;

namespace Queue.Cli;

/// <summary>Peak resident memory (the kernel's VmHWM) of processes on this machine, read from /proc.</summary>
internal static class PeakMemory
{
    /// <summary>This process's peak RSS in MiB, or NaN where /proc cannot tell.</summary>
    public static double SelfMiB() => PeakKiB("self") is { } kib ? kib / 1024.0 : double.NaN;

    /// <summary>
    /// The largest peak RSS in KiB among a process and its descendants: a wrapper script's own peak says
    /// nothing of the server it started (rabbitmq-server runs beam.smp as a child). Null when it has ended.
    /// </summary>
    public static long? LargestInTreeKiB(int pid)
    {
        var family = new HashSet<int> { pid };
        var parents = new Dictionary<int, int>();
        foreach (var folder in Directory.EnumerateDirectories("/proc"))
        {
            if (int.TryParse(Path.GetFileName(folder), NumberStyles.None, CultureInfo.InvariantCulture, out var child) && ParentOf(child) is { } parent)
            {
                parents[child] = parent;
            }
        }
        // Bounded: each round adds at least one process or stops.
        for (var grew = true; grew;)
        {
            grew = false;
            foreach (var (child, parent) in parents)
            {
                if (family.Contains(parent) && family.Add(child))
                {
                    grew = true;
                }
            }
        }
        long? largest = null;
        foreach (var member in family)
        {
            if (PeakKiB(member.ToString(CultureInfo.InvariantCulture)) is { } kib && (largest is null || kib > largest))
            {
                largest = kib;
            }
        }
        return largest;
    }

    /// <summary>The "name pid" lines <c>scripts/cluster.sh</c> writes to <c>.cluster/pids</c>.</summary>
    public static List<(string Name, int Pid)> ReadPidsFile(string path)
    {
        var processes = new List<(string, int)>();
        foreach (var line in File.ReadLines(path))
        {
            var fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length == 2 && int.TryParse(fields[1], NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
            {
                processes.Add((fields[0], pid));
            }
        }
        return processes;
    }

    private static long? PeakKiB(string process)
    {
        try
        {
            foreach (var line in File.ReadLines($"/proc/{process}/status"))
            {
                if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                {
                    return long.Parse(line.AsSpan(6).Trim().TrimEnd("kB").Trim(), CultureInfo.InvariantCulture);
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // It ended meanwhile, or is not ours to read.
        }
        return null;
    }

    private static int? ParentOf(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so read after the last ')'.
            var fields = stat.AsSpan(stat.LastIndexOf(')') + 1).Trim();
            var afterState = fields[(fields.IndexOf(' ') + 1)..];
            var end = afterState.IndexOf(' ');
            return int.TryParse(end < 0 ? afterState : afterState[..end], NumberStyles.None, CultureInfo.InvariantCulture, out var parent) ? parent : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
