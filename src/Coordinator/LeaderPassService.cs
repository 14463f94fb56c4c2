using Microsoft.Extensions.Hosting;

namespace Queue.Coordinator;

/// <summary>
/// A housekeeping loop that runs a pass every <see cref="Interval"/> while this coordinator leads, the
/// first soon after start so that a restarted coordinator (or an embedded engine run briefly) applies
/// it too. A failed pass is reported and the next one tries again.
/// </summary>
public abstract class LeaderPassService(LeadershipState leadership, TimeProvider time) : BackgroundService
{
    private static readonly TimeSpan FirstPass = TimeSpan.FromSeconds(5);

    protected TimeProvider Time { get; } = time;

    protected abstract TimeSpan Interval { get; }

    /// <summary>False when the pass has nothing to do in this configuration.</summary>
    protected virtual bool Enabled => true;

    protected abstract Task PassAsync(CancellationToken cancellationToken);

    protected abstract void OnFailed(Exception error);

    protected sealed override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!Enabled)
        {
            return;
        }
        var wait = Interval < FirstPass ? Interval : FirstPass;
        while (true)
        {
            await Task.Delay(wait, Time, stoppingToken);
            wait = Interval;
            if (leadership.Current is null)
            {
                continue;
            }
            try
            {
                await PassAsync(stoppingToken);
            }
            catch (Exception e) when (!stoppingToken.IsCancellationRequested)
            {
                OnFailed(e);
            }
        }
    }
}
