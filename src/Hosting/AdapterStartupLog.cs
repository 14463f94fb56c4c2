using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Queue.Hosting;

/// <summary>Says at start which adapters this process uses and, for the embedded ones, the absolute folder they keep data in.</summary>
internal sealed partial class AdapterStartupLog(AdapterOptions adapters, ILogger<AdapterStartupLog> logger) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        var local = string.Equals(adapters.BlobStore, "filesystem", StringComparison.OrdinalIgnoreCase)
            || string.Equals(adapters.Coordination, "embedded", StringComparison.OrdinalIgnoreCase);
        LogAdapters(logger, adapters.WorkQueue, adapters.BlobStore, adapters.Coordination, local ? Path.GetFullPath(adapters.DataPath) : "(none)");
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    [LoggerMessage(100, LogLevel.Information, "Adapters: work queue {WorkQueue}, blob store {BlobStore}, coordination {Coordination}; data folder {DataPath}")]
    private static partial void LogAdapters(ILogger logger, string workQueue, string blobStore, string coordination, string dataPath);
}
