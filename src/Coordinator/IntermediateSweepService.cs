using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Queue.Contracts;
using Queue.Contracts.Jobs;
using Queue.Contracts.Ports;

namespace Queue.Coordinator;

/// <summary>
/// While this coordinator leads: finds intermediates no job will read and hands their jobs to
/// <see cref="IntermediateCleanup"/>. A job's intermediates are deleted when it ends, but that hand-over
/// lives in the leader's memory: a leader that dies between a job's end and its deletes, a delete the
/// store refused, or a frozen worker that wakes after its job ended and commits its map output, each
/// left blobs behind for good. The sweep lists the blobs first and reads their jobs after, so a blob
/// it sees was written after its job's record was created: a job that is missing (forgotten by
/// retention) or ended is not reading them — except a succeeded map-only job, whose intermediates are
/// the input of the reduce-only job that follows (kept until the job is forgotten).
/// </summary>
public sealed class IntermediateSweepService(
    JobStore jobs,
    IBlobStore blobs,
    IntermediateCleanup cleanup,
    LeadershipState leadership,
    IOptions<StorageOptions> storage,
    IOptions<CoordinatorOptions> options,
    TimeProvider time,
    ILogger<IntermediateSweepService> logger) : LeaderPassService(leadership, time)
{
    // A job that ended this recently (or within one interval, if shorter) is in the leader's own hand-over; sweeping it too would list and delete twice.
    private static readonly TimeSpan EndedGrace = TimeSpan.FromMinutes(1);

    protected override TimeSpan Interval => options.Value.IntermediateSweepInterval;

    // Kept on purpose (to inspect them): nothing is left behind by accident.
    protected override bool Enabled => storage.Value.DeleteIntermediates;

    protected override void OnFailed(Exception error) => Log.SweepFailed(logger, error.Message);

    protected override async Task PassAsync(CancellationToken cancellationToken)
    {
        // Names are listed in order, so one job's blobs come together: its id is taken once.
        var ids = new List<string>();
        string? last = null;
        await foreach (var blob in blobs.ListAsync(storage.Value.IntermediateContainer, "", cancellationToken))
        {
            var slash = blob.Name.IndexOf('/', StringComparison.Ordinal);
            if (slash <= 0 || (last is not null && blob.Name.AsSpan(0, slash).SequenceEqual(last)))
            {
                continue;
            }
            last = blob.Name[..slash];
            if (JobRequestValidator.IsJobId(last))
            {
                ids.Add(last);
            }
        }
        var now = Time.GetUtcNow();
        var interval = options.Value.IntermediateSweepInterval;
        var grace = interval < EndedGrace ? interval : EndedGrace;
        foreach (var id in ids)
        {
            var job = await jobs.GetAsync(id, cancellationToken);
            if (job is null
                || job.Status is { IsTerminal: true } && !IntermediateCleanup.KeptAfter(job.Spec, job.Status.State)
                && (job.Status.FinishedAt is not { } ended || now - ended > grace))
            {
                cleanup.Enqueue(id);
                Log.IntermediatesSwept(logger, id, job is null ? "the job is forgotten" : "the job ended " + job.Status.State);
            }
        }
    }
}
