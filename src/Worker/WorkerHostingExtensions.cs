using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Queue.Contracts.Apps;
using Queue.Contracts.Jobs;
using Queue.Hosting;
using Queue.Worker;
using Queue.Worker.Apps;
using Queue.Worker.Execution;

namespace Microsoft.Extensions.Hosting;

public static class WorkerHostingExtensions
{
    /// <summary>The built-in apps, and job submission that checks requests against them.</summary>
    public static IServiceCollection AddBuiltInApps(this IServiceCollection services)
    {
        services.TryAddSingleton<IAppCatalog, BuiltInAppCatalog>();
        services.TryAddSingleton<JobSubmission>();
        return services;
    }

    /// <summary>A worker: task slots that pull from the tasks queue and report on the events queue.</summary>
    public static TBuilder AddWorker<TBuilder>(this TBuilder builder) where TBuilder : IHostApplicationBuilder
    {
        builder.Services.AddOptions<WorkerOptions>().BindConfiguration(WorkerOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddBuiltInApps();
        builder.Services.AddSingleton<WorkerScratch>();
        builder.Services.AddSingleton<TaskRunner>();
        builder.Services.AddSingleton<MapRunner>();
        builder.Services.AddSingleton<StreamingMapRunner>();
        builder.Services.AddSingleton<ReduceRunner>();
        builder.Services.AddSingleton<ShuffleFetcher>();
        builder.Services.AddSingleton<SampleRunner>();
        builder.Services.AddSingleton<PartitionerCache>();
        builder.Services.AddSingleton<WorkerMetrics>();
        builder.Services.AddSingleton<CoordinationReach>();
        builder.Services.AddSingleton<TaskProcessor>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<TaskProcessor>());
        builder.Services.AddHostedService<WorkerHeartbeatService>();
        builder.Services.AddSingleton<IHostedService>(sp => new StartupWarmupService("the data path",
            sp.GetRequiredService<IOptions<WorkerOptions>>().Value.WarmUp ? DataPathWarmup.Run : null,
            sp.GetRequiredService<Microsoft.Extensions.Logging.ILogger<StartupWarmupService>>()));
        // Shutdown waits for the drain: running tasks finish or are abandoned before the host stops.
        builder.Services.AddOptions<HostOptions>().Configure<IOptions<WorkerOptions>>((host, worker) =>
            host.ShutdownTimeout = worker.Value.DrainTimeout + TimeSpan.FromSeconds(5));
        return builder;
    }
}
