using Queue.Contracts;
using Queue.Hosting;
using Queue.Ingress;

namespace Microsoft.Extensions.Hosting;

public static class IngressHostingExtensions
{
    /// <summary>The HTTP ingress; in the embedded default it also hosts a coordinator and a worker.</summary>
    public static WebApplicationBuilder AddIngress(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<IngressOptions>().BindConfiguration(IngressOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddOptions<ScaleOptions>().BindConfiguration(ScaleOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddProblemDetails();
        builder.Services.AddExceptionHandler<ClientFaultHandler>();
        builder.Services.AddOpenApi();
        builder.Services.ConfigureHttpJsonOptions(json => json.SerializerOptions.TypeInfoResolverChain.Insert(0, QueueJsonContext.Default));
        builder.Services.AddBuiltInApps();

        var hostEngine = builder.Configuration.GetSection(IngressOptions.Section).GetValue<bool?>(nameof(IngressOptions.HostEngine))
            ?? builder.Configuration.GetSection(AdapterOptions.Section).Get<AdapterOptions>()?.IsEmbeddedQueue
            ?? true;
        if (hostEngine)
        {
            builder.AddCoordinator();
            builder.AddWorker();
        }
        return builder;
    }
}
