using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Queue.Contracts.Ports;

namespace Queue.Coordinator;

/// <summary>Campaigns for leadership, holds it until it is lost, and resigns on shutdown so another coordinator leads at once.</summary>
public sealed class LeaderElectionService(
    ILeaderElection election,
    LeadershipState state,
    CoordinatorMetrics metrics,
    IOptions<CoordinatorOptions> options,
    ILogger<LeaderElectionService> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var candidate = options.Value.CandidateId;
        while (!stoppingToken.IsCancellationRequested)
        {
            ILeadership leadership;
            try
            {
                Log.Campaigning(logger, candidate);
                leadership = await election.CampaignAsync(candidate, stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (!stoppingToken.IsCancellationRequested)
            {
                // etcd down or slow (a timed-out connect shows as a cancellation too): campaign again shortly.
                Log.CampaignFailed(logger, candidate, e.Message);
                await Task.Delay(options.Value.RetryDelay, stoppingToken);
                continue;
            }
            Log.BecameLeader(logger, candidate, leadership.Epoch);
            state.Set(leadership);
            metrics.BecameLeader();
            try
            {
                using var held = CancellationTokenSource.CreateLinkedTokenSource(leadership.Lost, stoppingToken);
                await Task.Delay(Timeout.Infinite, held.Token);
            }
            catch (OperationCanceledException)
            {
            }
            state.Clear();
            if (stoppingToken.IsCancellationRequested)
            {
                // Resign so another coordinator leads without waiting for the lease to expire.
                await leadership.ResignAsync(CancellationToken.None);
                Log.Resigned(logger, candidate);
                await leadership.DisposeAsync();
                return;
            }
            Log.LostLeadership(logger, candidate, leadership.Epoch);
            await leadership.DisposeAsync();
        }
    }
}
