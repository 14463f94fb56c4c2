using System.Diagnostics.Metrics;
using Microsoft.Extensions.Options;
using Queue.Contracts.Jobs;
using Queue.Contracts.Ports;

namespace Queue.Coordinator;

/// <summary>The coordinator's instruments (meter <c>Queue.Coordinator</c>). Job and queue gauges come from the leader only.</summary>
public sealed class CoordinatorMetrics
{
    public const string MeterName = "Queue.Coordinator";

    private readonly Counter<long> leadershipChanges;
    private readonly Histogram<double> jobDuration;
    private volatile IReadOnlyDictionary<JobState, int> jobCounts = new Dictionary<JobState, int>();
    private volatile IReadOnlyList<QueueDepth> depths = [];

    public CoordinatorMetrics(IMeterFactory factory, LeadershipState leadership, IntermediateCleanup cleanup, IOptions<CoordinatorOptions> options)
    {
        var meter = factory.Create(MeterName);
        var candidate = new KeyValuePair<string, object?>("candidate", options.Value.CandidateId);
        meter.CreateObservableGauge("queue.coordinator.leader", () => new Measurement<int>(leadership.Current is { Lost.IsCancellationRequested: false } ? 1 : 0, candidate),
            "{leader}", "1 while this coordinator leads.");
        leadershipChanges = meter.CreateCounter<long>("queue.leadership.changes", "{change}", "Times this coordinator became leader.");
        jobDuration = meter.CreateHistogram<double>("queue.job.duration", "s", "Job run time from submission to its end, by final state.");
        meter.CreateObservableGauge("queue.jobs", ObserveJobs, "{job}", "Jobs by state (reported by the leader).");
        meter.CreateObservableGauge("queue.queue.depth", ObserveDepths, "{message}", "Messages per queue: active, leased, dead_lettered (reported by the leader).");
        meter.CreateObservableGauge("queue.cleanup.pending", () => cleanup.Pending, "{job}", "Ended jobs whose intermediates this coordinator has yet to delete.");
    }

    public void BecameLeader() => leadershipChanges.Add(1);

    public void JobEnded(JobState state, TimeSpan duration) =>
        jobDuration.Record(duration.TotalSeconds, new KeyValuePair<string, object?>("state", state.ToString()));

    public void SetJobCounts(IReadOnlyDictionary<JobState, int> counts) => jobCounts = counts;

    public void SetQueueDepths(IReadOnlyList<QueueDepth> sampled) => depths = sampled;

    private IEnumerable<Measurement<int>> ObserveJobs()
    {
        foreach (var (state, count) in jobCounts)
        {
            yield return new Measurement<int>(count, new KeyValuePair<string, object?>("state", state.ToString()));
        }
    }

    private IEnumerable<Measurement<long>> ObserveDepths()
    {
        foreach (var depth in depths)
        {
            var queue = new KeyValuePair<string, object?>("queue", depth.Queue);
            yield return new Measurement<long>(depth.Active, queue, new("state", "active"));
            yield return new Measurement<long>(depth.Leased, queue, new("state", "leased"));
            yield return new Measurement<long>(depth.DeadLettered, queue, new("state", "dead_lettered"));
        }
    }
}
