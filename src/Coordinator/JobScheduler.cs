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
    BackupTasks backups,
    LostTaskRecovery recovery,
    FairAdmission admission,
    IOptions<CoordinatorOptions> options,
    CoordinatorMetrics metrics,
    TimeProvider time,
    ILogger<JobScheduler> logger) : BackgroundService
{
    private readonly CoordinatorOptions options = options.Value;
    private DateTimeOffset nextCount;
    private bool firstSession = true;
    private int scanRequested;
    private CancellationTokenSource? wakeUp;

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
                await handler.StopReceivingAsync();
            }
            catch (LeadershipLostException e)
            {
                Log.SessionEnded(logger, e.Message);
                // What this coordinator was pushed or holds goes back at once, for the leader that can apply it.
                await handler.StopReceivingAsync();
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
                await handler.StopReceivingAsync();
                await Task.Delay(options.RetryDelay, time, stoppingToken);
            }
        }
    }

    private async Task RunSessionAsync(LeaderSession session, CancellationToken cancellationToken)
    {
        nextCount = DateTimeOffset.MinValue;
        using var watching = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        // The watch starts before the first scan, so a job created in between is seen by one or the other.
        var watch = WatchActiveJobsAsync(watching.Token);
        try
        {
            await ScanJobsAsync(session, cancellationToken);
            Log.Reconciled(logger, session.Active.Count);
            await admission.FillAsync(session, cancellationToken);
            var nextScan = time.GetUtcNow() + options.PollInterval;
            var nextDeadLetters = time.GetUtcNow() + options.DeadLetterInterval;
            while (true)
            {
                cancellationToken.ThrowIfCancellationRequested();
                using (var wake = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
                {
                    Volatile.Write(ref wakeUp, wake);
                    if (Volatile.Read(ref scanRequested) == 1)
                    {
                        await wake.CancelAsync();
                    }
                    var due = nextScan < nextDeadLetters ? nextScan : nextDeadLetters;
                    var wait = due - time.GetUtcNow();
                    await handler.HandleBatchAsync(session, wait > TimeSpan.Zero ? wait : TimeSpan.Zero, wake.Token, cancellationToken);
                    Volatile.Write(ref wakeUp, null);
                }
                // A start or an end frees room on the queue; fill it now, not on a timer.
                await admission.FillAsync(session, cancellationToken);
                var now = time.GetUtcNow();
                if (Interlocked.Exchange(ref scanRequested, 0) == 1 || now >= nextScan)
                {
                    await ScanJobsAsync(session, cancellationToken);
                    await admission.FillAsync(session, cancellationToken);
                    if (now >= nextScan)
                    {
                        nextScan = now + options.PollInterval;
                    }
                }
                if (now >= nextDeadLetters)
                {
                    await handler.DrainDeadLettersAsync(session, cancellationToken);
                    await backups.LaunchAsync(session, cancellationToken);
                    await recovery.RecoverAsync(session, cancellationToken);
                    await admission.FillAsync(session, cancellationToken);
                    nextDeadLetters = now + options.DeadLetterInterval;
                }
            }
        }
        finally
        {
            await watching.CancelAsync();
            await watch;
        }
    }

    /// <summary>
    /// Watches the active-job index: a put is a new job or a cancel request (the ingress touches the
    /// marker), so the leader scans at once instead of on a timer. Deletes are jobs this leader ended.
    /// </summary>
    private async Task WatchActiveJobsAsync(CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                await foreach (var change in jobs.Store.WatchAsync(JobStore.ActivePrefix, cancellationToken))
                {
                    if (change.Value is null)
                    {
                        continue;
                    }
                    Volatile.Write(ref scanRequested, 1);
                    try
                    {
                        Volatile.Read(ref wakeUp)?.Cancel();
                    }
                    catch (ObjectDisposedException)
                    {
                        // The loop moved on between the read and the cancel; it sees the request on its next turn.
                    }
                }
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                // The periodic rescan covers the gap; the watch starts again shortly.
                Log.WatchFailed(logger, e.Message);
                try
                {
                    await Task.Delay(options.RetryDelay, time, cancellationToken);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
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
