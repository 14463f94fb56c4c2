using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Queue.Adapters.Etcd;
using Queue.Contracts.Ports;

namespace Queue.Hosting;

/// <summary>
/// At start, proves this process may use etcd (credentials, permission on <c>/queue/</c>, TLS). A
/// refusal stops the service at once with a clear message and exit code 78 (a configuration error),
/// rather than a loop of failing calls; etcd not answering yet is waited out, as a fresh cluster's is.
/// </summary>
public sealed partial class EtcdAccessCheck(EtcdConnection etcd, IHostApplicationLifetime lifetime, ILogger<EtcdAccessCheck> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            string? refused;
            try
            {
                refused = await etcd.CheckAccessAsync(stoppingToken);
            }
            catch (BrokerUnavailableException e)
            {
                LogWaiting(logger, e.Message);
                await Task.Delay(TimeSpan.FromSeconds(1), stoppingToken);
                continue;
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            if (refused is not null)
            {
                LogRefused(logger, refused);
                Environment.ExitCode = 78;
                lifetime.StopApplication();
            }
            return;
        }
    }

    [LoggerMessage(110, LogLevel.Critical, "Cannot use etcd: {Problem} Stopping.")]
    private static partial void LogRefused(ILogger logger, string problem);

    [LoggerMessage(111, LogLevel.Information, "Waiting for etcd: {Error}")]
    private static partial void LogWaiting(ILogger logger, string error);
}
