using System.Diagnostics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Queue.Worker.Execution;

namespace Queue.Worker;

/// <summary>
/// Once, at start and off the slots' threads: runs the data path over a small sample so its optimised
/// code is compiled before the first task (<see cref="DataPathWarmup"/>). Slots do not wait for it: a
/// task that comes first compiles what it needs itself, or waits for the method being compiled here.
/// </summary>
public sealed class DataPathWarmupService(IOptions<WorkerOptions> options, ILogger<DataPathWarmupService> logger) : BackgroundService
{
    protected override Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!options.Value.WarmUp)
        {
            return Task.CompletedTask;
        }
        return Task.Run(() =>
        {
            var jit = System.Runtime.JitInfo.GetCompilationTime(currentThread: true);
            var started = Stopwatch.GetTimestamp();
            try
            {
                DataPathWarmup.Run(stoppingToken);
                Log.DataPathWarmedUp(logger, Stopwatch.GetElapsedTime(started).TotalMilliseconds,
                    (System.Runtime.JitInfo.GetCompilationTime(currentThread: true) - jit).TotalMilliseconds);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
            }
            catch (Exception e)
            {
                // Only a head start: a failure here changes nothing for the tasks, which run the same code.
                Log.DataPathWarmupFailed(logger, e.Message);
            }
        }, stoppingToken);
    }
}
