using System.Diagnostics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Queue.Contracts.Jobs;

namespace Queue.Hosting;

/// <summary>
/// Once, at start and in the background: writes and reads each record the services exchange
/// (<see cref="ContractsWarmup"/>), so the JSON code the first job needs is compiled before it comes.
/// Nothing waits for it; a job that comes first compiles what it needs itself.
/// </summary>
internal sealed partial class ContractsWarmupService(ILogger<ContractsWarmupService> logger) : BackgroundService
{
    protected override Task ExecuteAsync(CancellationToken stoppingToken) => Task.Run(() =>
    {
        var jit = System.Runtime.JitInfo.GetCompilationTime(currentThread: true);
        var started = Stopwatch.GetTimestamp();
        try
        {
            ContractsWarmup.Run();
            LogWarmedUp(logger, Stopwatch.GetElapsedTime(started).TotalMilliseconds,
                (System.Runtime.JitInfo.GetCompilationTime(currentThread: true) - jit).TotalMilliseconds);
        }
        catch (Exception e)
        {
            // Only a head start: the services run the same code when they need it, and ContractTests
            // fails the build on what would fail here.
            LogFailed(logger, $"{e.GetType().Name}: {e.Message}");
        }
    }, stoppingToken);

    [LoggerMessage(101, LogLevel.Debug, "Contracts' JSON code compiled ahead of the first job in {ElapsedMs:0} ms ({JitMs:0} ms in the JIT)")]
    private static partial void LogWarmedUp(ILogger logger, double elapsedMs, double jitMs);

    [LoggerMessage(102, LogLevel.Warning, "Warming up the contracts' JSON failed (jobs are not affected): {Error}")]
    private static partial void LogFailed(ILogger logger, string error);
}
