using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Queue.Adapters.Embedded;
using Queue.Adapters.Etcd;
using Queue.Adapters.RabbitMq;
using Queue.Contracts;
using Queue.Contracts.Jobs;
using Queue.Contracts.Ports;
using Queue.Hosting;

namespace Microsoft.Extensions.Hosting;

public static class QueueHostingExtensions
{
    /// <summary>Reads <c>Queue:Adapters</c> and registers the work queues, blob store and coordination store it names.</summary>
    public static TBuilder AddQueueAdapters<TBuilder>(this TBuilder builder) where TBuilder : IHostApplicationBuilder
    {
        var services = builder.Services;
        var adapters = builder.Configuration.GetSection(AdapterOptions.Section).Get<AdapterOptions>() ?? new AdapterOptions();
        services.AddSingleton(adapters);
        services.TryAddSingleton(TimeProvider.System);
        services.AddOptions<WorkQueueOptions>().BindConfiguration(WorkQueueOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddOptions<StorageOptions>().BindConfiguration(StorageOptions.Section).ValidateDataAnnotations().ValidateOnStart();

        switch (adapters.WorkQueue.ToLowerInvariant())
        {
            case "embedded":
                foreach (var name in new[] { QueueNames.Tasks, QueueNames.Events })
                {
                    services.AddKeyedSingleton<IWorkQueue>(name, (sp, _) =>
                        new EmbeddedWorkQueue(name, sp.GetRequiredService<IOptions<WorkQueueOptions>>().Value, sp.GetRequiredService<TimeProvider>()));
                }
                break;
            case "rabbitmq":
                services.AddOptions<RabbitMqOptions>().BindConfiguration(RabbitMqOptions.Section).ValidateDataAnnotations().ValidateOnStart();
                foreach (var name in new[] { QueueNames.Tasks, QueueNames.Events })
                {
                    services.AddKeyedSingleton<IWorkQueue>(name, (sp, _) => new RabbitMqWorkQueue(name,
                        sp.GetRequiredService<IOptions<RabbitMqOptions>>(), sp.GetRequiredService<IOptions<WorkQueueOptions>>()));
                }
                break;
            default:
                throw new InvalidOperationException($"Unknown work queue adapter '{adapters.WorkQueue}' in {AdapterOptions.Section}:WorkQueue. Known: embedded, rabbitmq.");
        }

        switch (adapters.BlobStore.ToLowerInvariant())
        {
            case "filesystem":
                services.AddSingleton<IBlobStore>(_ => new FileSystemBlobStore(adapters.DataPath));
                break;
            default:
                throw new InvalidOperationException($"Unknown blob store adapter '{adapters.BlobStore}' in {AdapterOptions.Section}:BlobStore. Known: filesystem.");
        }

        switch (adapters.Coordination.ToLowerInvariant())
        {
            case "embedded":
                services.AddSingleton<InMemoryKeyValueStore>();
                services.AddSingleton<IKeyValueStore>(sp => sp.GetRequiredService<InMemoryKeyValueStore>());
                services.AddSingleton<ILeaderElection, EmbeddedLeaderElection>();
                break;
            case "etcd":
                services.AddOptions<EtcdOptions>().BindConfiguration(EtcdOptions.Section).ValidateDataAnnotations().ValidateOnStart();
                services.AddSingleton<EtcdClient>();
                services.AddSingleton<IKeyValueStore, EtcdKeyValueStore>();
                services.AddSingleton<ILeaderElection, EtcdLeaderElection>();
                break;
            default:
                throw new InvalidOperationException($"Unknown coordination adapter '{adapters.Coordination}' in {AdapterOptions.Section}:Coordination. Known: embedded, etcd.");
        }
        services.AddSingleton<JobStore>();
        return builder;
    }

    /// <summary>Health endpoint every service serves.</summary>
    public static IEndpointRouteBuilder MapQueueDefaultEndpoints(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapGet("/healthz", () => Results.Text("ok")).ExcludeFromDescription();
        return endpoints;
    }
}
