using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Queue.Worker.Execution;

/// <summary>
/// This worker process's local scratch: a folder of its own under <see cref="WorkerOptions.TempPath"/>
/// (attempts' spills and merge runs, fetched streaming scripts), held with an exclusive lock on a file
/// beside it for as long as the process lives. Every attempt removes its folder however it ends, but a
/// killed process (an OOM kill, <c>kill -9</c>, a node's container restarted in the same pod, whose
/// emptyDir survives) cannot: its spills, gigabytes of them in a large sort, stayed for good. On start
/// the worker deletes the folders whose lock no process holds — their owner is gone. Several workers may
/// share a temp path (one machine, <c>scripts/cluster.sh</c>); a live one's lock, frozen or not, is held,
/// so only dead owners' folders go.
/// </summary>
public sealed class WorkerScratch : IDisposable
{
    private const string LockSuffix = ".lock";
    private readonly FileStream held;

    public WorkerScratch(IOptions<WorkerOptions> options, ILogger<WorkerScratch> logger)
    {
        var root = options.Value.TempPath;
        Directory.CreateDirectory(root);
        // The lock first, then the folder: a folder without a held lock is always a dead owner's.
        for (var tries = 1; ; tries++)
        {
            Folder = Path.Combine(root, $"w{Environment.ProcessId}-{Guid.NewGuid():N}"[..24]);
            try
            {
                held = new FileStream(Folder + LockSuffix, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None);
                break;
            }
            catch (IOException) when (tries < 10)
            {
                // Another sweeper took the new lock between its create and its flock: take another name.
            }
        }
        Directory.CreateDirectory(Folder);
        var removed = SweepDead(root, Folder);
        if (removed > 0)
        {
            Log.ScratchSwept(logger, removed, root);
        }
    }

    /// <summary>This process's folder.</summary>
    public string Folder { get; }

    /// <summary>The folder only this attempt writes to (attempt ids are unique); made when first needed.</summary>
    public string AttemptFolder(string attemptId) => Path.Combine(Folder, "attempts", attemptId);

    /// <summary>Where a job's streaming scripts are kept while the job's tasks run here.</summary>
    public string ScriptsFolder => Path.Combine(Folder, "scripts");

    /// <summary>
    /// Deletes the scratch folders under <paramref name="root"/>, other than <paramref name="own"/>, whose owner is gone; returns how many.
    /// Only what a worker made is considered — a lock file named as <see cref="WorkerScratch"/> names
    /// them, and the folder beside it — so a temp path shared with anything else loses nothing else.
    /// </summary>
    private static int SweepDead(string root, string own)
    {
        var removed = 0;
        foreach (var lockFile in Directory.EnumerateFiles(root, "w*" + LockSuffix))
        {
            var folder = lockFile[..^LockSuffix.Length];
            if (folder != own && IsScratchName(Path.GetFileName(folder)) && TryRemove(folder))
            {
                removed++;
            }
        }
        return removed;
    }

    /// <summary><c>w</c>, the process id, <c>-</c>, then hex digits: 24 characters.</summary>
    private static bool IsScratchName(string name)
    {
        var dash = name.IndexOf('-', StringComparison.Ordinal);
        return name.Length == 24 && name[0] == 'w' && dash > 1
            && !name.AsSpan(1, dash - 1).ContainsAnyExceptInRange('0', '9')
            && !name.AsSpan(dash + 1).ContainsAnyExcept("0123456789abcdef");
    }

    /// <summary>Takes the folder's lock if no one holds it, then deletes the folder and the lock; false while its owner lives.</summary>
    private static bool TryRemove(string folder)
    {
        FileStream probe;
        try
        {
            probe = new FileStream(folder + LockSuffix, FileMode.Open, FileAccess.ReadWrite, FileShare.None);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false; // Held: its owner lives (or another sweeper got there first), or it is not ours to touch.
        }
        using (probe)
        {
            try
            {
                if (Directory.Exists(folder))
                {
                    Directory.Delete(folder, recursive: true);
                }
                File.Delete(folder + LockSuffix);
                return true;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                return false; // Not ours to force; the next start tries again.
            }
        }
    }

    public void Dispose()
    {
        try
        {
            if (Directory.Exists(Folder))
            {
                Directory.Delete(Folder, recursive: true);
            }
            File.Delete(Folder + LockSuffix);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A script that ignores its kill still holds a file: the next worker's start removes the rest.
        }
        held.Dispose();
    }

}
