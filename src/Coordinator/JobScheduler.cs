using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Queue.Contracts.Jobs;
using Queue.Contracts.Ports;
using Queue.Coordinator.Scheduling;

namespace Queue.Coordinator;

/// <summary>
/// The leader's loop. While this coordinator leads it picks up new jobs and cancel requests
/// (<see cref="JobPlanner"/>), applies task events and dead letters (<see cref="TaskEventHandler"/>)
/// and ends jobs (<see cref="JobFinisher"/>); every write is fenced by the leadership
/// (<see cref="LeaderSession"/>). On gaining leadership it reconciles every active job from the store.
/// </summary>
public sealed class JobScheduler(
    LeadershipState leadership,
    JobStore jobs,
    JobPlanner planner,
    TaskDispatcher dispatcher,
    TaskEventHandler handler,
    JobFinisher finisher,
    IOptions<CoordinatorOptions> options,
    CoordinatorMetrics metrics,
    TimeProvider time,
    ILogger<JobScheduler> logger) : BackgroundService
{
    private readonly CoordinatorOptions options = options.Value;
    private DateTimeOffset nextCount;
    private bool firstSession = true;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            ILeadership lead;
            try
            {
                lead = await leadership.WaitAsync(stoppingToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            // A queue that died with the last process lost the messages of every unfinished task: send them again, once.
            var session = new LeaderSession(lead, jobs, resendUnfinished: firstSession && !dispatcher.QueueIsDurable);
            firstSession = false;
            using var running = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken, lead.Lost);
            try
            {
                await RunSessionAsync(session, running.Token);
            }
            catch (OperationCanceledException) when (running.IsCancellationRequested)
            {
                Log.SessionEnded(logger, stoppingToken.IsCancellationRequested ? "shutting down" : "leadership lost");
            }
            catch (LeadershipLostException e)
            {
                Log.SessionEnded(logger, e.Message);
                // The election notices the lost lease on its own; wait for it rather than spin.
                await Task.Delay(options.RetryDelay, time, CancellationToken.None);
                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(10), time, lead.Lost);
                }
                catch (OperationCanceledException)
                {
                }
            }
            catch (Exception e) when (!stoppingToken.IsCancellationRequested)
            {
                // A store or broker failure: start over from the stored state after a pause.
                Log.SessionEnded(logger, $"{e.GetType().Name}: {e.Message}");
                await Task.Delay(options.RetryDelay, time, stoppingToken);
            }
        }
    }

    private async Task RunSessionAsync(LeaderSession session, CancellationToken cancellationToken)
    {
        nextCount = DateTimeOffset.MinValue;
        await ScanJobsAsync(session, cancellationToken);
        Log.Reconciled(logger, session.Active.Count);
        var nextScan = time.GetUtcNow() + options.PollInterval;
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var wait = nextScan - time.GetUtcNow();
            await handler.HandleBatchAsync(session, wait > TimeSpan.Zero ? wait : TimeSpan.Zero, cancellationToken);
            if (time.GetUtcNow() >= nextScan)
            {
                await ScanJobsAsync(session, cancellationToken);
                await handler.DrainDeadLettersAsync(session, cancellationToken);
                nextScan = time.GetUtcNow() + options.PollInterval;
            }
        }
    }

    /// <summary>Picks up new jobs, cancel requests, and (on the first scan) every active job's stored state.</summary>
    private async Task ScanJobsAsync(LeaderSession session, CancellationToken cancellationToken)
    {
        if (time.GetUtcNow() >= nextCount)
        {
            // Counting every job reads them all: only for the jobs-by-state gauge, and seldom.
            var counts = new Dictionary<JobState, int>();
            foreach (var job in await jobs.ListEntriesAsync(cancellationToken))
            {
                counts[job.Status.State] = counts.GetValueOrDefault(job.Status.State) + 1;
            }
            metrics.SetJobCounts(counts);
            nextCount = time.GetUtcNow() + TimeSpan.FromSeconds(10);
        }
        foreach (var entry in await jobs.ListActiveEntriesAsync(cancellationToken))
        {
            var id = entry.Spec.Id;
            if (entry.Status.IsTerminal || session.Finished.Contains(id))
            {
                continue;
            }
            if (!session.Active.TryGetValue(id, out var run))
            {
                run = await planner.LoadAsync(entry, cancellationToken);
                session.Active[id] = run;
                if (!entry.CancelRequested)
                {
                    await planner.ResumeAsync(session, run, cancellationToken);
                }
            }
            if (entry.CancelRequested && session.Active.ContainsKey(id))
            {
                await finisher.EndAsync(session, run, JobState.Cancelled, "Cancelled by request.", cancellationToken);
            }
        }
    }
}
