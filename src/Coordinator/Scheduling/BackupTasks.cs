using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Queue.Contracts.Jobs;

namespace Queue.Coordinator.Scheduling;

/// <summary>
/// Backup tasks for stragglers (MapReduce §3.6, Hadoop's speculative execution): once a phase has
/// nothing left to queue, an attempt running longer than <see cref="CoordinatorOptions.BackupRatio"/>
/// times the phase's median task time (and at least <see cref="CoordinatorOptions.BackupFloor"/>) gets one
/// backup attempt. Whichever commits first wins; the other is cancelled by its worker and its output,
/// named by attempt, is never read.
/// </summary>
public sealed class BackupTasks(TaskDispatcher dispatcher, IOptions<CoordinatorOptions> options, TimeProvider time, ILogger<BackupTasks> logger)
{
    private readonly CoordinatorOptions options = options.Value;

    public async Task LaunchAsync(LeaderSession session, CancellationToken cancellationToken)
    {
        if (!options.BackupTasks)
        {
            return;
        }
        // A copy: sending a backup replaces the run's records.
        foreach (var run in new List<JobRun>(session.Active.Values))
        {
            if (!run.Spec.Speculative)
            {
                continue;
            }
            var phase = run.CurrentPhase;
            if (phase is { } p && Straggler(run.Tasks(p)) is { } index)
            {
                await dispatcher.SendBackupAsync(session, run, p, index, cancellationToken);
                Log.BackupLaunched(logger, run.Spec.Id, TaskNames.TaskId(p, index));
            }
        }
    }

    /// <summary>The longest-running task past the threshold without a backup yet, if the phase has nothing left to queue.</summary>
    private int? Straggler(TaskRecord[] records)
    {
        var durations = new List<double>();
        foreach (var task in records)
        {
            if (task.State is TaskState.Planned or TaskState.Queued)
            {
                return null; // slots still have first attempts to run
            }
            if (task is { State: TaskState.Done, StartedAt: { } started, FinishedAt: { } finished })
            {
                durations.Add((finished - started).TotalSeconds);
            }
        }
        if (durations.Count == 0)
        {
            return null;
        }
        durations.Sort();
        var threshold = Math.Max(options.BackupFloor.TotalSeconds, options.BackupRatio * durations[durations.Count / 2]);
        var now = time.GetUtcNow();
        int? slowest = null;
        var longest = threshold;
        for (var i = 0; i < records.Length; i++)
        {
            if (records[i] is { State: TaskState.Running, BackupAt: null, StartedAt: { } started } && (now - started).TotalSeconds > longest)
            {
                longest = (now - started).TotalSeconds;
                slowest = i;
            }
        }
        return slowest;
    }
}
