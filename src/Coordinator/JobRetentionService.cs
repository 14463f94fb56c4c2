using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Queue.Contracts.Jobs;

namespace Queue.Coordinator;

/// <summary>
/// While this coordinator leads: drops finished jobs' task records past
/// <see cref="CoordinatorOptions.TaskHistoryRetention"/> or once the newer finished jobs' records and
/// its own pass <see cref="CoordinatorOptions.MaxTaskHistory"/>, and forgets finished jobs altogether past
/// <see cref="CoordinatorOptions.FinishedJobRetention"/> or beyond the newest
/// <see cref="CoordinatorOptions.MaxFinishedJobs"/> (YARN's max-completed-applications, the job history
/// server's max-age). Without it every job's records stayed for good: etcd's space quota (1 GiB in
/// deploy/k8s) fills after a few hundred fine-grained jobs, and etcd then refuses every write; the
/// embedded store's log grew to 638 MB here, and a process opening it held 450 MB. Outputs are the
/// users' and stay. Finished jobs are written by no one, so a deposed leader's pass does no harm.
/// </summary>
public sealed class JobRetentionService(
    JobStore jobs,
    LeadershipState leadership,
    IOptions<CoordinatorOptions> options,
    TimeProvider time,
    ILogger<JobRetentionService> logger) : LeaderPassService(leadership, time)
{
    // Jobs whose task records this process has dropped: each is listed once, not on every pass.
    private readonly HashSet<string> dropped = new(StringComparer.Ordinal);

    protected override TimeSpan Interval => options.Value.RetentionInterval;

    protected override Task PassAsync(CancellationToken cancellationToken) => ApplyAsync(cancellationToken);

    protected override void OnFailed(Exception error) => Log.RetentionFailed(logger, error.Message);

    private async Task ApplyAsync(CancellationToken cancellationToken)
    {
        var settings = options.Value;
        var now = Time.GetUtcNow();
        var finished = new List<JobEntry>();
        foreach (var entry in await jobs.ListEntriesAsync(cancellationToken))
        {
            if (entry.Status is { IsTerminal: true, FinishedAt: not null })
            {
                finished.Add(entry);
            }
        }
        // Newest first: the counts keep the most recent jobs.
        finished.Sort(static (a, b) => b.Status.FinishedAt!.Value.CompareTo(a.Status.FinishedAt!.Value));
        long tasks = 0;
        for (var i = 0; i < finished.Count; i++)
        {
            var id = finished[i].Spec.Id;
            var age = now - finished[i].Status.FinishedAt!.Value;
            tasks += finished[i].Status.Map.Total + finished[i].Status.Reduce.Total;
            if (i >= settings.MaxFinishedJobs || age > settings.FinishedJobRetention)
            {
                await jobs.DeleteJobAsync(id, cancellationToken);
                dropped.Remove(id);
                Log.JobForgotten(logger, id);
            }
            else if ((tasks > settings.MaxTaskHistory || age > settings.TaskHistoryRetention) && !dropped.Contains(id))
            {
                var count = await jobs.DeleteTasksAsync(id, cancellationToken);
                dropped.Add(id);
                if (count > 0)
                {
                    Log.TaskHistoryDropped(logger, id, count);
                }
            }
        }
    }
}
