using System.Diagnostics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Queue.Hosting;

/// <summary>
/// Once, at start and off the request and task threads: runs code the first job will need, so the JIT
/// compiles it before that job comes (the contracts' JSON in every service, the data path in a worker).
/// Nothing waits for it; a job that comes first compiles what it needs itself, or waits for the method
/// being compiled here. A failure is only logged: it is a head start, and the services run the same code.
/// </summary>
/// <param name="warmUp">What to run; null when turned off by configuration.</param>
public sealed partial class StartupWarmupService(string what, Action<CancellationToken>? warmUp, ILogger<StartupWarmupService> logger) : BackgroundService
{
    protected override Task ExecuteAsync(CancellationToken stoppingToken) => warmUp is null ? Task.CompletedTask : Task.Run(() =>
    {
        var jit = System.Runtime.JitInfo.GetCompilationTime(currentThread: true);
        var started = Stopwatch.GetTimestamp();
        try
        {
            warmUp(stoppingToken);
            LogWarmedUp(logger, what, Stopwatch.GetElapsedTime(started).TotalMilliseconds,
                (System.Runtime.JitInfo.GetCompilationTime(currentThread: true) - jit).TotalMilliseconds);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            LogFailed(logger, what, $"{e.GetType().Name}: {e.Message}");
        }
    }, stoppingToken);

    [LoggerMessage(101, LogLevel.Debug, "Compiled {What} ahead of the first job in {ElapsedMs:0} ms ({JitMs:0} ms in the JIT)")]
    private static partial void LogWarmedUp(ILogger logger, string what, double elapsedMs, double jitMs);

    [LoggerMessage(102, LogLevel.Warning, "Warming up {What} failed (jobs are not affected): {Error}")]
    private static partial void LogFailed(ILogger logger, string what, string error);
}
