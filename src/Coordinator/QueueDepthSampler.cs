using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Queue.Contracts.Ports;

namespace Queue.Coordinator;

/// <summary>Samples the depth of the tasks and events queues every few seconds while this coordinator leads (KEDA reads the broker directly; this is for dashboards).</summary>
public sealed class QueueDepthSampler(
    [FromKeyedServices(QueueNames.Tasks)] IWorkQueue tasks,
    [FromKeyedServices(QueueNames.Events)] IWorkQueue events,
    LeadershipState leadership,
    CoordinatorMetrics metrics,
    TimeProvider time) : BackgroundService
{
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(2);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Interval, time);
        do
        {
            if (leadership.Current is null)
            {
                metrics.SetQueueDepths([]);
                continue;
            }
            try
            {
                metrics.SetQueueDepths([await tasks.GetDepthAsync(stoppingToken), await events.GetDepthAsync(stoppingToken)]);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                // A broker hiccup: keep the last sample; the next tick tries again.
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }
}
