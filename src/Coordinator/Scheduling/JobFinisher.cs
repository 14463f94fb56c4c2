using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Queue.Contracts;
using Queue.Contracts.Jobs;
using Queue.Contracts.Ports;

namespace Queue.Coordinator.Scheduling;

/// <summary>The end of a job: its final state (fenced, with the active index entry removed), then its intermediates handed to <see cref="IntermediateCleanup"/>.</summary>
public sealed class JobFinisher(
    IntermediateCleanup cleanup,
    IOptions<StorageOptions> storage,
    CoordinatorMetrics metrics,
    TimeProvider time,
    ILogger<JobFinisher> logger)
{
    private readonly StorageOptions storage = storage.Value;

    public async Task EndAsync(LeaderSession session, JobRun run, JobState state, string? error, CancellationToken cancellationToken, KvWrite? alsoWrite = null)
    {
        var id = run.Spec.Id;
        using var span = QueueTracing.Start(QueueTracing.Coordinator, "job end", run.Spec.TraceParent);
        span?.SetTag("queue.job", id);
        span?.SetTag("queue.state", state.ToString());
        var outputs = new List<string>();
        if (state == JobState.Succeeded && !run.Spec.MapOnly)
        {
            for (var r = 0; r < run.Spec.ReduceTasks; r++)
            {
                outputs.Add(TaskNames.OutputPart(id, r));
            }
        }
        var status = run.Status with
        {
            State = state,
            Error = error,
            FinishedAt = time.GetUtcNow(),
            Outputs = outputs,
            OutputContainer = state == JobState.Succeeded && !run.Spec.MapOnly ? storage.OutputContainer : null,
            Map = JobRun.Progress(run.Maps),
            Reduce = run.Reduces.Length > 0 ? JobRun.Progress(run.Reduces) : run.Status.Reduce,
        };
        var writes = new List<KvWrite> { session.StatusWrite(status), KvWrite.Delete(JobStore.ActiveKey(id)) };
        if (alsoWrite is not null)
        {
            writes.Add(alsoWrite);
        }
        if (state == JobState.Failed)
        {
            // The cancel marker tells workers to drop the job's remaining tasks.
            writes.Add(new KvWrite(JobStore.CancelKey(id), [1]));
        }
        await session.CommitAsync(writes, cancellationToken);
        run.Status = status;
        session.Active.Remove(id);
        session.Finished.Add(id);
        if (error is not null && state == JobState.Failed)
        {
            Log.JobFailed(logger, id, error);
        }
        Log.JobEnded(logger, id, state.ToString());
        metrics.JobEnded(state, status.FinishedAt!.Value - status.SubmittedAt);
        if (storage.DeleteIntermediates && !IntermediateCleanup.KeptAfter(run.Spec, state))
        {
            // Off the leader's loop: thousands of deletes must not hold the other jobs' events.
            cleanup.Enqueue(id);
        }
    }
}
