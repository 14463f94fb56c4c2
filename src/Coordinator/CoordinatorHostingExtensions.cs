using Microsoft.Extensions.DependencyInjection;
using Queue.Coordinator;
using Queue.Coordinator.Scheduling;

namespace Microsoft.Extensions.Hosting;

public static class CoordinatorHostingExtensions
{
    /// <summary>The coordinator: leader election and, while leading, the job scheduler.</summary>
    public static TBuilder AddCoordinator<TBuilder>(this TBuilder builder) where TBuilder : IHostApplicationBuilder
    {
        builder.Services.AddOptions<CoordinatorOptions>().BindConfiguration(CoordinatorOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddSingleton<LeadershipState>();
        builder.Services.AddSingleton<CoordinatorMetrics>();
        builder.Services.AddHostedService<QueueDepthSampler>();
        builder.Services.AddHostedService<LeaderElectionService>();
        builder.Services.AddSingleton<TaskDispatcher>();
        builder.Services.AddSingleton<FairAdmission>();
        builder.Services.AddSingleton<JobFinisher>();
        builder.Services.AddSingleton<IntermediateCleanup>();
        builder.Services.AddHostedService<IntermediateCleanupService>();
        builder.Services.AddHostedService<IntermediateSweepService>();
        builder.Services.AddHostedService<JobRetentionService>();
        builder.Services.AddHostedService<HistoryCompactionService>();
        builder.Services.AddSingleton<JobPlanner>();
        builder.Services.AddSingleton<TaskEventHandler>();
        builder.Services.AddSingleton<BackupTasks>();
        builder.Services.AddSingleton<LostTaskRecovery>();
        builder.Services.AddHostedService<JobScheduler>();
        return builder;
    }
}
