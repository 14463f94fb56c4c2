using System.ComponentModel.DataAnnotations;
using Microsoft.Extensions.Options;
using Queue.Contracts.Jobs;
using Queue.Contracts.Ports;

namespace Queue.Ingress;

/// <summary>Bounds of the worker count an autoscaler reads from <c>GET /scale</c> (<c>Queue:Scale</c>).</summary>
public sealed class ScaleOptions
{
    public const string Section = "Queue:Scale";

    [Range(0, 10_000)]
    public int MinWorkers { get; set; }

    [Range(1, 10_000)]
    public int MaxWorkers { get; set; } = 10;

    /// <summary>Slots of one worker; default: what the live workers report (else 1).</summary>
    [Range(1, 256)]
    public int? SlotsPerWorker { get; set; }
}

/// <summary>
/// <c>GET /scale</c>: one signal for every autoscaler (KEDA's metrics-api trigger, <c>scripts/cluster.sh up
/// --autoscale</c>): queued tasks from the queue, leased ones from the workers' heartbeats, pending ones the
/// leader holds back (fair admission) from the jobs' statuses, and the desired
/// worker count, which never drops below the workers holding leases, so scale-in only takes idle ones.
/// </summary>
public static class ScaleApi
{
    public static IEndpointRouteBuilder MapScaleApi(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapGet("/scale", SignalAsync).RequireAuthorization(Queue.Hosting.Security.QueuePolicies.Read);
        return endpoints;
    }

    private static async Task<IResult> SignalAsync([Microsoft.Extensions.DependencyInjection.FromKeyedServices(QueueNames.Tasks)] IWorkQueue tasks,
        JobStore jobs, IOptions<ScaleOptions> options, TimeProvider time, CancellationToken ct)
    {
        var depth = await tasks.GetDepthOrCountAsync(jobs, ct);
        var workers = await jobs.ListWorkersAsync(ct);
        long busy = 0, completed = 0, bytes = 0;
        var busyWorkers = 0;
        var reportedSlots = 0;
        foreach (var worker in workers)
        {
            busy += worker.Busy;
            completed += worker.TasksCompleted;
            bytes += worker.BytesProcessed;
            busyWorkers += worker.Busy > 0 ? 1 : 0;
            reportedSlots = Math.Max(reportedSlots, worker.Slots);
        }
        // The leader holds back what the pool has no room for yet (fair admission): count it too, or
        // autoscaling would stop at the queue's shallow depth.
        long pending = 0;
        foreach (var job in await jobs.ListActiveEntriesAsync(ct))
        {
            pending += job.Status.PendingTasks;
        }
        var scale = options.Value;
        var slots = scale.SlotsPerWorker ?? Math.Max(1, reportedSlots);
        // Brokers see only their own process's leases; the workers' heartbeats see all of them.
        var leased = Math.Max(busy, depth.Leased);
        var desired = (int)Math.Min(int.MaxValue, (depth.Active + leased + pending + slots - 1) / slots);
        desired = Math.Clamp(Math.Max(desired, busyWorkers), scale.MinWorkers, Math.Max(scale.MinWorkers, scale.MaxWorkers));
        return Results.Ok(new ScaleSignal(depth.Active, leased, pending, workers.Count, busyWorkers, slots, desired, scale.MinWorkers, scale.MaxWorkers,
            completed, bytes, time.GetUtcNow()));
    }
}
