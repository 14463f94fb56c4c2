using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Queue.Contracts.Jobs;

namespace Queue.Coordinator;

/// <summary>
/// While this coordinator leads: every <see cref="CoordinatorOptions.HistoryCompactionInterval"/>,
/// compacts the coordination store's history to the revision read one pass before, as kube-apiserver
/// does for its etcd. Each batch of task records is a revision etcd keeps, deletes included, until it is
/// compacted: the database grew by about 5 MB per 2,000-task job, and past its space quota etcd refuses
/// every write (the engine stops). Only history older than an interval goes, so watches a moment behind
/// resume; one further behind starts again and the leader rescans. A deposed leader's pass compacts to
/// a revision older than the new leader's: no harm done.
/// </summary>
public sealed class HistoryCompactionService(
    JobStore jobs,
    LeadershipState leadership,
    IOptions<CoordinatorOptions> options,
    TimeProvider time,
    ILogger<HistoryCompactionService> logger) : LeaderPassService(leadership, time)
{
    private long previous;

    protected override TimeSpan Interval => options.Value.HistoryCompactionInterval;

    protected override bool Enabled => options.Value.HistoryCompactionInterval > TimeSpan.Zero;

    protected override async Task PassAsync(CancellationToken cancellationToken)
    {
        var now = await jobs.Store.RevisionAsync(cancellationToken);
        if (previous > 0 && previous < now)
        {
            await jobs.Store.CompactAsync(previous, cancellationToken);
            Log.HistoryCompacted(logger, previous);
        }
        previous = now;
    }

    protected override void OnFailed(Exception error) => Log.CompactionFailed(logger, error.Message);
}
