using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Queue.Adapters.ServiceBus;
using Queue.Contracts.Ports;

namespace Queue.Hosting;

/// <summary>
/// At start, reads the Service Bus queues' settings (lock duration, max delivery count) and stops the
/// service with a clear message and exit code 78 (a configuration error) when they cannot serve the
/// engine or the queues do not exist; a namespace not answering yet is waited out.
/// </summary>
public sealed partial class ServiceBusEntityCheck(
    [FromKeyedServices(QueueNames.Tasks)] IWorkQueue tasks,
    [FromKeyedServices(QueueNames.Events)] IWorkQueue events,
    IHostApplicationLifetime lifetime,
    ILogger<ServiceBusEntityCheck> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        foreach (var queue in new[] { (ServiceBusWorkQueue)tasks, (ServiceBusWorkQueue)events })
        {
            while (true)
            {
                EntityCheck check;
                try
                {
                    check = await queue.CheckEntityAsync(stoppingToken);
                }
                catch (BrokerUnavailableException e)
                {
                    LogWaiting(logger, e.Message);
                    await Task.Delay(TimeSpan.FromSeconds(1), stoppingToken);
                    continue;
                }
                catch (ServiceBusRefusedException e)
                {
                    check = new EntityCheck(e.Message, null);
                }
                catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
                {
                    return;
                }
                if (check.Problem is not null)
                {
                    LogRefused(logger, check.Problem);
                    Environment.ExitCode = 78;
                    lifetime.StopApplication();
                    return;
                }
                LogSettings(logger, queue.Entity, check.Settings ?? "");
                break;
            }
        }
    }

    [LoggerMessage(120, LogLevel.Critical, "Cannot use Service Bus: {Problem} Stopping.")]
    private static partial void LogRefused(ILogger logger, string problem);

    [LoggerMessage(121, LogLevel.Information, "Waiting for Service Bus: {Error}")]
    private static partial void LogWaiting(ILogger logger, string error);

    [LoggerMessage(122, LogLevel.Information, "Service Bus queue {Entity}: {Settings}")]
    private static partial void LogSettings(ILogger logger, string entity, string settings);
}
