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
        using var timer = new PeriodicTimer(options.HeartbeatInterval, time);
        do
        {
            try
            {
                var beat = new WorkerHeartbeat(options.WorkerId, Environment.MachineName, Version, options.Slots, processor.BusySlots,
                    processor.RunningTasks(), startedAt, time.GetUtcNow());
                await jobs.HeartbeatAsync(beat, ttl, stoppingToken);
            }
            catch (BrokerUnavailableException e)
            {
                Log.HeartbeatFailed(logger, e.Message);
            }
        }
        while (await WaitAsync(timer, stoppingToken));
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

    private static async Task<bool> WaitAsync(PeriodicTimer timer, CancellationToken stoppingToken)
    {
        try
        {
            return await timer.WaitForNextTickAsync(stoppingToken);
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }
}
