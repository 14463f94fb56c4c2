using System.Reflection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Queue.Contracts.Jobs;
using Queue.Contracts.Ports;

namespace Queue.Worker;

/// <summary>
/// Writes this worker's heartbeat (slots, busy slots, running tasks, version) to a leased key every
/// <see cref="WorkerOptions.HeartbeatInterval"/>, so <c>GET /workers</c> reads one small key per worker;
/// removes it on a clean stop, and a crash lets the lease lapse.
/// </summary>
public sealed class WorkerHeartbeatService(
    TaskProcessor processor,
    CoordinationReach reach,
    JobStore jobs,
    IOptions<WorkerOptions> options,
    TimeProvider time,
    ILogger<WorkerHeartbeatService> logger) : BackgroundService
{
    private static readonly string Version =
        typeof(WorkerHeartbeatService).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "unknown";

    private readonly WorkerOptions options = options.Value;
    private readonly DateTimeOffset startedAt = time.GetUtcNow();

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // A lease of three beats survives one late beat.
        var ttl = options.HeartbeatInterval * 3;
        // A slot taking or finishing a task beats early (at most every quarter interval), so leases are seen soon.
        var changed = System.Threading.Channels.Channel.CreateBounded<bool>(new System.Threading.Channels.BoundedChannelOptions(1)
        {
            FullMode = System.Threading.Channels.BoundedChannelFullMode.DropWrite,
        });
        void OnBusyChanged() => changed.Writer.TryWrite(true);
        processor.BusyChanged += OnBusyChanged;
        try
        {
            var minGap = options.HeartbeatInterval / 4;
            var wasLost = false;
            while (!stoppingToken.IsCancellationRequested)
            {
                var beatAt = time.GetTimestamp();
                try
                {
                    var beat = new WorkerHeartbeat(options.WorkerId, Environment.MachineName, Version, options.Slots, processor.BusySlots,
                        processor.RunningTasks(), startedAt, time.GetUtcNow(), processor.TasksCompleted, processor.BytesProcessed);
                    await jobs.HeartbeatAsync(beat, ttl, stoppingToken);
                    if (reach.Report(reachable: true) && wasLost)
                    {
                        Log.StoreReachable(logger, options.WorkerId);
                    }
                    wasLost = false;
                }
                catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
                {
                    return;
                }
                catch (Exception e)
                {
                    // Whatever the store said (unreachable, a lease it no longer knows, a refusal), a missed
                    // beat must not end the worker: the next beat tries again with a fresh lease.
                    Log.HeartbeatFailed(logger, $"{e.GetType().Name}: {e.Message}");
                    if (!wasLost)
                    {
                        // Until a beat lands, the slots take no task (the first beat decides at start).
                        reach.Report(reachable: false);
                        Log.StoreUnreachable(logger, options.WorkerId);
                        wasLost = true;
                    }
                }
                try
                {
                    using var wait = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
                    wait.CancelAfter(options.HeartbeatInterval);
                    try
                    {
                        await changed.Reader.ReadAsync(wait.Token);
                    }
                    catch (OperationCanceledException) when (!stoppingToken.IsCancellationRequested)
                    {
                        // The interval passed without a change: the regular beat.
                    }
                    var early = minGap - time.GetElapsedTime(beatAt);
                    if (early > TimeSpan.Zero)
                    {
                        await Task.Delay(early, time, stoppingToken);
                    }
                }
                catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
                {
                    return;
                }
            }
        }
        finally
        {
            processor.BusyChanged -= OnBusyChanged;
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken);
        try
        {
            await jobs.RemoveWorkerAsync(options.WorkerId, cancellationToken);
        }
        catch (BrokerUnavailableException e)
        {
            Log.HeartbeatFailed(logger, e.Message); // the lease lapses on its own
        }
    }
}
