using Queue.Contracts.Jobs;

namespace Queue.Worker.Execution;

/// <summary>
/// Runs one attempt of a task: a built-in map (<see cref="MapRunner"/>), a streaming map with its
/// combiner (<see cref="StreamingMapRunner"/>) or a reduce (<see cref="ReduceRunner"/>). Each attempt
/// owns a folder of its own in the worker's <see cref="WorkerScratch"/> for spills, merge runs and a
/// script's scratch files, and removes it when it ends, however it ends (a killed worker's are removed
/// by the next worker to start).
/// </summary>
public sealed class TaskRunner(MapRunner maps, StreamingMapRunner streamingMaps, ReduceRunner reduces, SampleRunner samples, WorkerScratch scratch)
{
    /// <param name="onStatus">Receives streaming scripts' <c>reporter:status:</c> lines as they come.</param>
    public async Task<TaskResult> RunAsync(TaskMessage task, string attemptId, Action<string>? onStatus, CancellationToken cancellationToken)
    {
        var folder = scratch.AttemptFolder(attemptId);
        try
        {
            return task.Phase switch
            {
                TaskPhase.Map when task.App == JobRequestValidator.StreamingApp => await streamingMaps.RunAsync(task, attemptId, folder, onStatus, cancellationToken),
                TaskPhase.Map => await maps.RunAsync(task, attemptId, folder, cancellationToken),
                TaskPhase.Sample => await samples.RunAsync(task, attemptId, folder, onStatus, cancellationToken),
                _ => await reduces.RunAsync(task, folder, onStatus, cancellationToken),
            };
        }
        finally
        {
            DeleteFolder(folder);
        }
    }

    private static void DeleteFolder(string folder)
    {
        try
        {
            if (Directory.Exists(folder))
            {
                Directory.Delete(folder, recursive: true);
            }
        }
        catch (IOException)
        {
            // A file still held by a script that ignores its kill; nothing else ever writes to the folder.
        }
    }
}

/// <summary>What an attempt produced: its counters, and for a map the length of its output file (for the manifest).</summary>
public sealed record TaskResult(TaskCounters Counters, long? MapOutputLength = null);

/// <summary>Small things every runner needs from a task message.</summary>
internal static class TaskMessageParts
{
    /// <summary>What a map task reads: its one split, or the small blobs packed into it.</summary>
    public static List<InputSplit> Pieces(this TaskMessage task) =>
        task.Splits is { Count: > 0 } many ? many : [task.Split ?? throw new InvalidDataException("A map task needs a split.")];

    /// <summary>The job's arguments, plus what the app may know of its attempt (<c>attempt.backup</c>).</summary>
    public static Dictionary<string, string> AppArgs(this TaskMessage task) =>
        task.Backup ? new Dictionary<string, string>(task.Args, StringComparer.Ordinal) { [JobRequestValidator.BackupArg] = "true" } : task.Args;
}
