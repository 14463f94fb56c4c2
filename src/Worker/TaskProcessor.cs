using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Queue.Contracts;
using Queue.Contracts.Jobs;
using Queue.Contracts.Ports;
using Queue.Worker.Execution;

namespace Queue.Worker;

/// <summary>
/// Pulls tasks with peek-lock leases on <see cref="WorkerOptions.Slots"/> concurrent slots. The policy
/// follows the Service Bus processor: success → report, then complete; failure → report, then abandon
/// (retry) or, on the last allowed attempt, dead-letter; lease lost → do nothing, the broker redelivers.
/// On shutdown it stops receiving, lets running tasks finish within the drain time and abandons the rest.
/// </summary>
public sealed class TaskProcessor(
    [FromKeyedServices(QueueNames.Tasks)] IWorkQueue tasks,
    [FromKeyedServices(QueueNames.Events)] IWorkQueue events,
    TaskRunner runner,
    JobStore jobs,
    CoordinationReach reach,
    WorkerMetrics metrics,
    IOptions<WorkerOptions> options,
    TimeProvider time,
    IHostApplicationLifetime lifetime,
    ILogger<TaskProcessor> logger) : BackgroundService
{
    private static readonly TimeSpan MinBackOff = TimeSpan.FromMilliseconds(500);
    private static readonly TimeSpan MaxBackOff = TimeSpan.FromSeconds(15);

    private readonly WorkerOptions options = options.Value;
    private readonly CancellationTokenSource drain = new();
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, string> running = new(StringComparer.Ordinal);
    // Per job, whether it was cancelled and when the store said so: a task's start reads the store only
    // when the last answer is older than CancelCheckInterval (a running task checks at that pace anyway).
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, (bool Cancelled, long At)> cancelSeen = new(StringComparer.Ordinal);
    private int busySlots;
    // Set once what the broker pushed ahead was given back while the store is out of reach.
    private int handedBack;
    private long tasksCompleted;
    private long bytesProcessed;

    /// <summary>Slots running a task right now.</summary>
    public int BusySlots => Volatile.Read(ref busySlots);

    /// <summary>Raised when a slot takes or finishes a task, so the heartbeat tells the autoscaler soon.</summary>
    public event Action? BusyChanged;

    /// <summary>Attempts this worker completed, and the bytes they read, since it started.</summary>
    public long TasksCompleted => Interlocked.Read(ref tasksCompleted);

    public long BytesProcessed => Interlocked.Read(ref bytesProcessed);

    /// <summary>The attempts running now, as <c>job/task</c>, for the heartbeat.</summary>
    public List<string> RunningTasks() => [.. running.Values];

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // Running tasks get the drain time after shutdown begins, then are cancelled and abandoned.
        await using var registration = stoppingToken.Register(() => drain.CancelAfter(options.DrainTimeout));
        Log.WorkerStarted(logger, options.WorkerId, options.Slots);
        metrics.ObserveSlots(() => BusySlots, options.Slots);
        // Every busy slot holds a pool thread with CPU-bound user code. Without spare threads, lease
        // renewals, reports and (in the embedded engine) the leader's own loop would wait for a task to
        // end before the pool grew: the leader then refills the queue only once a wave of tasks is done.
        ThreadPool.GetMinThreads(out var workerThreads, out var ioThreads);
        ThreadPool.SetMinThreads(Math.Max(workerThreads, options.Slots + Environment.ProcessorCount), ioThreads);
        var slots = new Task[options.Slots];
        for (var i = 0; i < slots.Length; i++)
        {
            slots[i] = RunSlotAsync(stoppingToken);
        }
        await Task.WhenAll(slots);
    }

    public override void Dispose()
    {
        drain.Dispose();
        base.Dispose();
    }

    private async Task RunSlotAsync(CancellationToken stoppingToken)
    {
        await Task.Yield();
        var backOff = MinBackOff;
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                if (!reach.IsReachable)
                {
                    if (!await WaitForStoreAsync(stoppingToken))
                    {
                        return;
                    }
                    continue;
                }
                Volatile.Write(ref handedBack, 0);
                IReadOnlyList<ILeasedMessage> received;
                try
                {
                    received = await tasks.ReceiveAsync(1, options.ReceiveWait, stoppingToken);
                }
                catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
                {
                    return;
                }
                catch (BrokerUnavailableException e)
                {
                    Log.ReceiveFailed(logger, backOff.TotalSeconds, e.Message);
                    backOff = await PauseAsync(backOff, stoppingToken);
                    continue;
                }
                backOff = MinBackOff;
                foreach (var message in received)
                {
                    Interlocked.Increment(ref busySlots);
                    BusyChanged?.Invoke();
                    try
                    {
                        await ProcessAsync(message);
                    }
                    catch (BrokerUnavailableException e)
                    {
                        // The broker or store went away mid-task: the lease is lost with the connection and
                        // the task will be redelivered; this slot carries on once the broker is back.
                        Log.ProcessFailed(logger, backOff.TotalSeconds, e.Message);
                        backOff = await PauseAsync(backOff, stoppingToken);
                    }
                    finally
                    {
                        Interlocked.Decrement(ref busySlots);
                        BusyChanged?.Invoke();
                    }
                }
            }
        }
        catch (BrokerRefusedException e)
        {
            // A configuration error (a credential, a right, a missing queue): restarting cannot help.
            Log.BrokerRefused(logger, options.WorkerId, e.Message);
            Environment.ExitCode = 78;
            lifetime.StopApplication();
            throw;
        }
        catch (Exception e) when (e is not OperationCanceledException || !stoppingToken.IsCancellationRequested)
        {
            // Anything but a broker outage is a bug: carrying on would hide it. Stop, and let the
            // supervisor (Kubernetes, systemd) restart the process; unsettled leases come back.
            Log.SlotCrashed(logger, options.WorkerId, e);
            Environment.ExitCode = 70;
            lifetime.StopApplication();
            throw;
        }
    }

    /// <summary>
    /// While the coordination store is out of reach: once no slot holds a task, gives back what the broker
    /// pushed ahead (it would wait in this process's buffer), then waits for a heartbeat to land, checking
    /// again every second. False when the worker stops meanwhile.
    /// </summary>
    private async Task<bool> WaitForStoreAsync(CancellationToken stoppingToken)
    {
        if (BusySlots == 0 && Interlocked.Exchange(ref handedBack, 1) == 0)
        {
            try
            {
                await tasks.StopReceivingAsync(deadLetters: false, CancellationToken.None);
            }
            catch (BrokerUnavailableException e)
            {
                // The broker is gone too: it takes back what this connection held on its own.
                Log.ReceiveFailed(logger, 1, e.Message);
            }
        }
        try
        {
            await reach.WaitAsync(stoppingToken).WaitAsync(TimeSpan.FromSeconds(1), time, stoppingToken);
        }
        catch (TimeoutException)
        {
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            return false;
        }
        return true;
    }

    /// <summary>Waits <paramref name="delay"/> and returns the next, doubled up to <see cref="MaxBackOff"/>.</summary>
    private static async Task<TimeSpan> PauseAsync(TimeSpan delay, CancellationToken stoppingToken)
    {
        try
        {
            await Task.Delay(delay, stoppingToken);
        }
        catch (OperationCanceledException)
        {
        }
        return delay * 2 < MaxBackOff ? delay * 2 : MaxBackOff;
    }

    private async Task ProcessAsync(ILeasedMessage message)
    {
        // Settlement uses CancellationToken.None so in-flight work can finish during shutdown.
        TaskMessage? task;
        try
        {
            task = JsonSerializer.Deserialize(message.Body.Span, QueueJsonContext.Default.TaskMessage);
        }
        catch (JsonException e)
        {
            task = null;
            Log.MalformedTask(logger, message.MessageId, e.Message);
        }
        if (task is null)
        {
            await message.DeadLetterAsync("MalformedMessage", "The task message is not valid JSON for a TaskMessage.", CancellationToken.None);
            return;
        }
        var taskId = TaskNames.TaskId(task.Phase, task.Index);
        if (message.DeliveryCount > task.MaxAttempts)
        {
            Log.TaskExhausted(logger, task.JobId, taskId, message.DeliveryCount);
            await message.DeadLetterAsync("MaxAttemptsExceeded", $"{task.MaxAttempts} attempts crashed or timed out without reporting.", CancellationToken.None);
            metrics.DeadLettered(task.Phase);
            return;
        }
        if (await IsCancelRequestedAsync(task.JobId))
        {
            await message.CompleteAsync(CancellationToken.None);
            return;
        }
        if (task.Backup && await jobs.GetTaskAsync(task.JobId, task.Phase, task.Index, CancellationToken.None) is { State: TaskState.Done })
        {
            // The straggler finished first after all: the backup has nothing to do.
            await message.CompleteAsync(CancellationToken.None);
            return;
        }

        var attemptId = Guid.NewGuid().ToString("N")[..12];
        running[attemptId] = $"{task.JobId}/{taskId}";
        try
        {
            await RunAttemptAsync(message, task, taskId, attemptId);
        }
        finally
        {
            running.TryRemove(attemptId, out _);
        }
    }

    private async Task RunAttemptAsync(ILeasedMessage message, TaskMessage task, string taskId, string attemptId)
    {
        // The start report goes out only once the task has run for StartReportDelay, while it goes on: a
        // task that ends sooner says when it started in its end report instead, which spares the broker
        // and the leader one message and one state write per small task. It is settled (sent or
        // skipped) before the end report, so the leader sees the two in order.
        var startedAt = time.GetUtcNow();
        // The attempt's span, under the job's trace (carried in the message); its reports carry the span on.
        using var span = QueueTracing.Start(QueueTracing.Worker, $"{taskId} attempt", task.TraceParent, System.Diagnostics.ActivityKind.Consumer);
        span?.SetTag("queue.job", task.JobId);
        span?.SetTag("queue.task", taskId);
        span?.SetTag("queue.attempt", attemptId);
        span?.SetTag("queue.worker", options.WorkerId);
        span?.SetTag("queue.delivery", message.DeliveryCount);
        span?.SetTag("queue.backup", task.Backup);
        using var startGate = new CancellationTokenSource();
        var startReport = ReportStartAfterDelayAsync(task, attemptId, message.DeliveryCount, startedAt, startGate.Token);
        Log.TaskStarted(logger, task.JobId, taskId, attemptId, message.DeliveryCount);
        metrics.Started(task.Phase, message.DeliveryCount);

        using var attempt = CancellationTokenSource.CreateLinkedTokenSource(drain.Token);
        attempt.CancelAfter(task.TaskTimeout);
        var watch = new LeaseWatch();
        var guard = GuardAsync(message, task, attemptId, watch, startReport, attempt);
        var started = time.GetTimestamp();
        var run = Task.Run(() => runner.RunAsync(task, attemptId, status => watch.Status = status, attempt.Token), CancellationToken.None);
        try
        {
            var result = await run.WaitAsync(attempt.Token);
            var counters = result.Counters;
            await attempt.CancelAsync();
            await guard;
            await startGate.CancelAsync();
            var unreportedStart = await startReport ? (DateTimeOffset?)null : startedAt;
            await ReportAsync(task, attemptId, message.DeliveryCount, TaskEventKind.Succeeded, null, counters, watch.Status, result.MapOutputLength, unreportedStart);
            await SettleAsync(message, static (m, c) => m.CompleteAsync(c));
            Log.TaskSucceeded(logger, task.JobId, taskId, attemptId, time.GetElapsedTime(started).TotalMilliseconds);
            metrics.Succeeded(task.Phase, time.GetElapsedTime(started), counters);
            Interlocked.Increment(ref tasksCompleted);
            Interlocked.Add(ref bytesProcessed, counters.InputBytes);
            return;
        }
        catch (Exception e) when (e is not OperationCanceledException || attempt.IsCancellationRequested)
        {
            await attempt.CancelAsync();
            await guard;
            await startGate.CancelAsync();
            var unreportedStart = await startReport ? (DateTimeOffset?)null : startedAt;
            // Give the user code a moment to stop (a script's tree is killed on cancellation) so the
            // report, and any retry it leads to, comes after it; code that ignores cancellation past
            // the grace keeps running in the background and its end is observed.
            await Task.WhenAny(run, Task.Delay(options.StopGrace, time, CancellationToken.None));
            _ = run.ContinueWith(static t => t.Exception, TaskScheduler.Default);
            if (watch.LeaseLost)
            {
                Log.LeaseLost(logger, task.JobId, taskId, attemptId);
                metrics.LeaseLost();
                return;
            }
            if (watch.JobCancelled)
            {
                Log.TaskCancelled(logger, task.JobId, taskId, attemptId);
                await SettleAsync(message, static (m, c) => m.CompleteAsync(c));
                return;
            }
            if (watch.Superseded)
            {
                // Another attempt of this task (a backup, or the straggler it backed up) committed first.
                Log.TaskSuperseded(logger, task.JobId, taskId, attemptId);
                await SettleAsync(message, static (m, c) => m.CompleteAsync(c));
                return;
            }
            if (drain.IsCancellationRequested)
            {
                Log.TaskAbandonedOnShutdown(logger, task.JobId, taskId, attemptId);
                await SettleAsync(message, static (m, c) => m.AbandonAsync(c));
                return;
            }
            if (task.Phase == TaskPhase.Reduce && FindLostMap(e) is { } lost && lost.JobId == task.JobId)
            {
                // The leader runs the map again, then sends this reduce anew: the message is done with, and the
                // failure takes none of the task's attempts. (A reduce-only job's maps cannot run again: a
                // lost output of its map-only job fails it as any other error does.)
                Log.MapOutputLost(logger, task.JobId, taskId, attemptId, lost.Map, lost.Attempt, lost.Message);
                metrics.Failed(task.Phase, time.GetElapsedTime(started));
                metrics.MapOutputLost();
                await ReportAsync(task, attemptId, message.DeliveryCount, TaskEventKind.Failed, $"{nameof(MapOutputLostException)}: {lost.Message}", null, watch.Status,
                    startedAt: unreportedStart, lostMap: lost);
                await SettleAsync(message, static (m, c) => m.CompleteAsync(c));
                return;
            }
            var error = e is OperationCanceledException or TimeoutException
                ? $"Timed out after {task.TaskTimeout.TotalSeconds:0.###} s."
                : $"{e.GetType().Name}: {e.Message}";
            Log.TaskFailed(logger, task.JobId, taskId, attemptId, message.DeliveryCount, error);
            span?.SetStatus(System.Diagnostics.ActivityStatusCode.Error, error);
            metrics.Failed(task.Phase, time.GetElapsedTime(started));
            await ReportAsync(task, attemptId, message.DeliveryCount, TaskEventKind.Failed, error, null, watch.Status, startedAt: unreportedStart);
            if (message.DeliveryCount >= task.MaxAttempts)
            {
                await SettleAsync(message, (m, c) => m.DeadLetterAsync("MaxAttemptsExceeded", $"Attempt {m.DeliveryCount} of {task.MaxAttempts} failed: {error}", c));
                metrics.DeadLettered(task.Phase);
            }
            else
            {
                await SettleAsync(message, static (m, c) => m.AbandonAsync(c));
            }
        }
    }

    /// <summary>Renews the lease at half its remaining time, watches for job cancellation and reports status changes, until the attempt ends.</summary>
    private async Task GuardAsync(ILeasedMessage message, TaskMessage task, string attemptId, LeaseWatch watch, Task<bool> startReport, CancellationTokenSource attempt)
    {
        string? reportedStatus = null;
        var nextCancelCheck = time.GetUtcNow() + options.CancelCheckInterval;
        try
        {
            while (!attempt.IsCancellationRequested)
            {
                var now = time.GetUtcNow();
                var renewAt = now + ((message.LockedUntil - now) / 2);
                var wake = renewAt < nextCancelCheck ? renewAt : nextCancelCheck;
                var delay = wake - now;
                if (delay > TimeSpan.Zero)
                {
                    // Most attempts end during this wait: ending it throws nothing (an exception per task was ~2 % of the CPU).
                    await Task.Delay(delay, time, attempt.Token).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                    if (attempt.IsCancellationRequested)
                    {
                        break;
                    }
                }
                now = time.GetUtcNow();
                try
                {
                    if (now >= renewAt)
                    {
                        await message.RenewLockAsync(attempt.Token);
                        metrics.LeaseRenewed();
                    }
                    if (now >= nextCancelCheck)
                    {
                        nextCancelCheck = now + options.CancelCheckInterval;
                        // A script's status goes out while it runs, at most once per check interval.
                        // After the start report only: the leader ignores progress of an attempt it has not seen start.
                        if (watch.Status is { } current && current != reportedStatus && startReport.IsCompletedSuccessfully && startReport.Result)
                        {
                            reportedStatus = current;
                            await ReportAsync(task, attemptId, message.DeliveryCount, TaskEventKind.Progress, null, null, current);
                        }
                        if (await jobs.IsCancelRequestedAsync(task.JobId, attempt.Token))
                        {
                            watch.JobCancelled = true;
                            await attempt.CancelAsync();
                        }
                        else if (await jobs.GetTaskAsync(task.JobId, task.Phase, task.Index, attempt.Token) is { State: TaskState.Done } record && record.WinningAttempt != attemptId)
                        {
                            watch.Superseded = true;
                            await attempt.CancelAsync();
                        }
                    }
                }
                catch (BrokerUnavailableException e)
                {
                    // The attempt keeps running through a short outage; a lease that ran out meanwhile shows as lost on the next renewal.
                    Log.GuardFailed(logger, task.JobId, TaskNames.TaskId(task.Phase, task.Index), e.Message);
                    await Task.Delay(TimeSpan.FromMilliseconds(250), time, attempt.Token);
                }
            }
        }
        catch (OperationCanceledException) when (attempt.IsCancellationRequested)
        {
        }
        catch (LeaseLostException)
        {
            watch.LeaseLost = true;
            await attempt.CancelAsync();
        }
    }

    /// <summary>Sends the start report once the attempt has run for <see cref="WorkerOptions.StartReportDelay"/>; false when it ended sooner.</summary>
    private async Task<bool> ReportStartAfterDelayAsync(TaskMessage task, string attemptId, int deliveryCount, DateTimeOffset startedAt, CancellationToken ended)
    {
        if (options.StartReportDelay > TimeSpan.Zero)
        {
            // A short task ends within the delay: that is the usual case, so it throws nothing.
            await Task.Delay(options.StartReportDelay, time, ended).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            if (ended.IsCancellationRequested)
            {
                return false;
            }
        }
        await ReportAsync(task, attemptId, deliveryCount, TaskEventKind.Started, null, null, at: startedAt);
        return true;
    }

    private async Task ReportAsync(TaskMessage task, string attemptId, int deliveryCount, TaskEventKind kind, string? error, TaskCounters? counters,
        string? status = null, long? outputLength = null, DateTimeOffset? startedAt = null, DateTimeOffset? at = null, MapOutputLostException? lostMap = null)
    {
        var report = new TaskEvent
        {
            Kind = kind,
            JobId = task.JobId,
            Phase = task.Phase,
            Index = task.Index,
            AttemptId = attemptId,
            DeliveryCount = deliveryCount,
            Epoch = task.Epoch,
            WorkerId = options.WorkerId,
            At = at ?? time.GetUtcNow(),
            TraceParent = QueueTracing.CurrentParent(),
            StartedAt = startedAt,
            Error = error is { Length: > 4000 } ? error[..4000] : error,
            Counters = counters,
            Status = status is { Length: > 500 } ? status[..500] : status,
            Backup = task.Backup,
            OutputLength = outputLength,
            LostMap = lostMap?.Map,
            LostMapAttempt = lostMap?.Attempt,
        };
        await events.SendAsync(JsonSerializer.SerializeToUtf8Bytes(report, QueueJsonContext.Default.TaskEvent), CancellationToken.None);
    }

    /// <summary>
    /// Whether the job was cancelled, as the store said within the last <see cref="WorkerOptions.CancelCheckInterval"/>:
    /// one read per job and interval instead of one per task start (on etcd, a round trip before each of
    /// thousands of small tasks). A cancel is final, so a cancelled answer is kept.
    /// </summary>
    private async Task<bool> IsCancelRequestedAsync(string jobId)
    {
        if (cancelSeen.TryGetValue(jobId, out var seen) && (seen.Cancelled || time.GetElapsedTime(seen.At) < options.CancelCheckInterval))
        {
            return seen.Cancelled;
        }
        var at = time.GetTimestamp();
        var cancelled = await jobs.IsCancelRequestedAsync(jobId, CancellationToken.None);
        if (cancelSeen.Count >= 1024)
        {
            cancelSeen.Clear(); // jobs come and go: a bounded memory, not a list of every job seen
        }
        cancelSeen[jobId] = (cancelled, at);
        return cancelled;
    }

    /// <summary>The lost map output behind a failure, however the runner wrapped it.</summary>
    private static MapOutputLostException? FindLostMap(Exception? e)
    {
        for (var depth = 0; e is not null && depth < 8; depth++)
        {
            switch (e)
            {
                case MapOutputLostException lost:
                    return lost;
                case AggregateException { InnerExceptions: var inner }:
                    foreach (var one in inner)
                    {
                        if (FindLostMap(one) is { } found)
                        {
                            return found;
                        }
                    }
                    return null;
            }
            e = e.InnerException;
        }
        return null;
    }

    private async Task SettleAsync(ILeasedMessage message, Func<ILeasedMessage, CancellationToken, Task> settle)
    {
        try
        {
            await settle(message, CancellationToken.None);
        }
        catch (LeaseLostException e)
        {
            // The broker redelivers; the coordinator ignores the duplicate result.
            Log.SettleLeaseLost(logger, message.MessageId, e.Message);
        }
    }

    private sealed class LeaseWatch
    {
        public volatile bool LeaseLost;
        public volatile bool JobCancelled;
        public volatile bool Superseded;
        public volatile string? Status;
    }
}
