using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Queue.Adapters.Azure;
using Queue.Adapters.Embedded;
using Queue.Adapters.Etcd;
using Queue.Adapters.RabbitMq;
using Queue.Adapters.ServiceBus;
using Queue.Contracts;
using Queue.Contracts.Jobs;
using Queue.Contracts.Ports;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using Queue.Hosting;
using Queue.Hosting.Security;

namespace Microsoft.Extensions.Hosting;

public static class QueueHostingExtensions
{
    /// <summary>Reads <c>Queue:Adapters</c> and registers the work queues, blob store and coordination store it names.</summary>
    public static TBuilder AddQueueAdapters<TBuilder>(this TBuilder builder) where TBuilder : IHostApplicationBuilder
    {
        var services = builder.Services;
        var adapters = builder.Configuration.GetSection(AdapterOptions.Section).Get<AdapterOptions>() ?? new AdapterOptions();
        services.AddSingleton(adapters);
        services.AddHostedService<AdapterStartupLog>();
        // ContractTests fails the build on what would fail here.
        services.AddSingleton<IHostedService>(sp => new StartupWarmupService("the contracts' JSON", _ => ContractsWarmup.Run(),
            sp.GetRequiredService<Microsoft.Extensions.Logging.ILogger<StartupWarmupService>>()));
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
            case "azurequeue":
                AddAzureClient(services);
                foreach (var name in new[] { QueueNames.Tasks, QueueNames.Events })
                {
                    services.AddKeyedSingleton<IWorkQueue>(name, (sp, _) => new AzureStorageWorkQueue(name,
                        sp.GetRequiredService<AzureStorageClients>(), sp.GetRequiredService<IOptions<WorkQueueOptions>>()));
                }
                break;
            case "servicebus":
                services.AddOptions<ServiceBusOptions>().BindConfiguration(ServiceBusOptions.Section).ValidateDataAnnotations().ValidateOnStart();
                services.AddSingleton<ServiceBusClients>();
                foreach (var name in new[] { QueueNames.Tasks, QueueNames.Events })
                {
                    services.AddKeyedSingleton<IWorkQueue>(name, (sp, _) => new ServiceBusWorkQueue(name,
                        sp.GetRequiredService<ServiceBusClients>(), sp.GetRequiredService<IOptions<WorkQueueOptions>>()));
                }
                services.AddHostedService<ServiceBusEntityCheck>();
                break;
            default:
                throw new InvalidOperationException($"Unknown work queue adapter '{adapters.WorkQueue}' in {AdapterOptions.Section}:WorkQueue. Known: embedded, rabbitmq, azurequeue, servicebus.");
        }

        services.AddSingleton<BlobOperations>();
        switch (adapters.BlobStore.ToLowerInvariant())
        {
            case "filesystem":
                services.AddSingleton<IBlobStore>(sp => new MeteredBlobStore(
                    new FileSystemBlobStore(adapters.DataPath, sp.GetRequiredService<IOptions<StorageOptions>>().Value.IntermediateContainer),
                    sp.GetRequiredService<BlobOperations>()));
                break;
            case "azureblob":
                AddAzureClient(services);
                services.AddSingleton<AzureBlobStore>();
                services.AddSingleton<IBlobStore>(sp => new MeteredBlobStore(sp.GetRequiredService<AzureBlobStore>(), sp.GetRequiredService<BlobOperations>()));
                break;
            default:
                throw new InvalidOperationException($"Unknown blob store adapter '{adapters.BlobStore}' in {AdapterOptions.Section}:BlobStore. Known: filesystem, azureblob.");
        }

        switch (adapters.Coordination.ToLowerInvariant())
        {
            case "embedded":
                // Jobs survive a restart: the store's log lives in the data folder, beside the blobs (not a container: dot-named).
                services.AddSingleton(sp => new EmbeddedKeyValueStore(
                    adapters.PersistEmbeddedState ? Path.Combine(Path.GetFullPath(adapters.DataPath), ".state", "coordination.log") : null,
                    sp.GetRequiredService<TimeProvider>()));
                services.AddSingleton<IKeyValueStore>(sp => sp.GetRequiredService<EmbeddedKeyValueStore>());
                services.AddSingleton<ILeaderElection, EmbeddedLeaderElection>();
                break;
            case "etcd":
                services.AddOptions<EtcdOptions>().BindConfiguration(EtcdOptions.Section).ValidateDataAnnotations().ValidateOnStart();
                services.AddSingleton<EtcdConnection>();
                services.AddHostedService<EtcdAccessCheck>();
                services.AddSingleton<IKeyValueStore, EtcdKeyValueStore>();
                services.AddSingleton<ILeaderElection, EtcdLeaderElection>();
                break;
            default:
                throw new InvalidOperationException($"Unknown coordination adapter '{adapters.Coordination}' in {AdapterOptions.Section}:Coordination. Known: embedded, etcd.");
        }
        services.AddSingleton<JobStore>();
        return builder;
    }

    private static void AddAzureClient(IServiceCollection services)
    {
        services.AddOptions<AzureStorageOptions>().BindConfiguration(AzureStorageOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.TryAddSingleton<AzureStorageClients>();
    }

    /// <summary>Metrics every service exports: its own meters (<c>Queue.*</c>) and ASP.NET Core's HTTP server metrics.</summary>
    public static TBuilder AddQueueServiceDefaults<TBuilder>(this TBuilder builder) where TBuilder : IHostApplicationBuilder
    {
        // Quiet by default (configuration still wins): the framework's per-request lines carry URLs with
        // query strings (keys, SAS tokens) and a barrage of requests would become a barrage of lines.
        builder.Configuration.Sources.Insert(0, new Microsoft.Extensions.Configuration.Memory.MemoryConfigurationSource
        {
            InitialData = new Dictionary<string, string?>
            {
                ["Logging:LogLevel:Microsoft.AspNetCore"] = "Warning",
                ["Logging:LogLevel:System.Net.Http.HttpClient"] = "Warning",
                // A refused credential is the client's fault; one line per try would let anyone fill the log.
                ["Logging:LogLevel:Queue.Hosting.Security"] = "Warning",
            },
        });
        builder.Services.AddQueueAuth(builder.Configuration);
        builder.Services.AddOpenTelemetry().WithMetrics(metrics => metrics
            // System.Runtime: the runtime's own meter (GC heap and pauses, working set, thread pool), built in since .NET 9.
            .AddMeter("Queue.*", "Microsoft.AspNetCore.Hosting", "System.Runtime")
            // Second-based histograms need second-sized buckets (the SDK's defaults suit milliseconds).
            .AddView(instrument => instrument.Unit == "s"
                ? new ExplicitBucketHistogramConfiguration { Boundaries = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600] }
                : null)
            .AddPrometheusExporter());
        builder.AddQueueTracing();
        return builder;
    }

    /// <summary>
    /// Traces (one per job, <see cref="Queue.Contracts.QueueTracing"/>), exported over OTLP when
    /// <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> (with the standard <c>OTEL_EXPORTER_OTLP_*</c> settings) or
    /// <c>Queue:Telemetry:OtlpEndpoint</c> (and <c>Queue:Telemetry:OtlpProtocol</c>: <c>grpc</c>, the
    /// default, or <c>http/protobuf</c> with the full <c>/v1/traces</c> address) is set. Without an
    /// endpoint nothing listens, so no span is even created.
    /// </summary>
    public static TBuilder AddQueueTracing<TBuilder>(this TBuilder builder) where TBuilder : IHostApplicationBuilder
    {
        var endpoint = builder.Configuration["Queue:Telemetry:OtlpEndpoint"];
        if (string.IsNullOrEmpty(endpoint) && string.IsNullOrEmpty(builder.Configuration["OTEL_EXPORTER_OTLP_ENDPOINT"]))
        {
            return builder;
        }
        builder.Services.AddOpenTelemetry()
            .ConfigureResource(resource => resource.AddService(builder.Environment.ApplicationName))
            .WithTracing(tracing =>
            {
                tracing.AddSource(Queue.Contracts.QueueTracing.Sources);
                if (string.IsNullOrEmpty(endpoint))
                {
                    tracing.AddOtlpExporter();
                    return;
                }
                var protocol = builder.Configuration["Queue:Telemetry:OtlpProtocol"] == "http/protobuf"
                    ? OpenTelemetry.Exporter.OtlpExportProtocol.HttpProtobuf
                    : OpenTelemetry.Exporter.OtlpExportProtocol.Grpc;
                tracing.AddOtlpExporter(otlp =>
                {
                    otlp.Endpoint = new Uri(endpoint);
                    otlp.Protocol = protocol;
                });
            });
        return builder;
    }

    /// <summary><c>/healthz</c> and <c>/metrics</c> (Prometheus text format), served by every service.</summary>
    public static IEndpointRouteBuilder MapQueueDefaultEndpoints(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapGet("/healthz", () => Results.Text("ok")).ExcludeFromDescription().AllowAnonymous();
        // GET (and HEAD) only: routing answers 405 to anything else, as for the other read-only endpoints.
        endpoints.MapPrometheusScrapingEndpoint("/metrics").RequireAuthorization(Queue.Hosting.Security.QueuePolicies.Metrics)
            .WithMetadata(new Microsoft.AspNetCore.Routing.HttpMethodMetadata(["GET", "HEAD"]));
        return endpoints;
    }
}
