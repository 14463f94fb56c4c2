using Microsoft.Extensions.DependencyInjection;
using Queue.Contracts.Jobs;
using Queue.Contracts.Ports;

namespace Queue.Ingress;

/// <summary>What the dashboard shows besides jobs: queue depths and the workers alive.</summary>
public static class DashboardApi
{
    /// <summary>The dashboard's files, embedded in this assembly (<c>wwwroot</c>).</summary>
    private static readonly Microsoft.Extensions.FileProviders.EmbeddedFileProvider Files = new(typeof(DashboardApi).Assembly, "Queue.Ingress.wwwroot");

    /// <summary>Serves the dashboard page (embedded <c>wwwroot</c>) at <c>/</c>.</summary>
    public static IApplicationBuilder UseDashboard(this IApplicationBuilder app)
    {
        app.UseDefaultFiles(new DefaultFilesOptions { FileProvider = Files });
        app.UseStaticFiles(new StaticFileOptions { FileProvider = Files });
        return app;
    }

    public static IEndpointRouteBuilder MapDashboardApi(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapGet("/queues", async ([FromKeyedServices(QueueNames.Tasks)] IWorkQueue tasks, [FromKeyedServices(QueueNames.Events)] IWorkQueue events, JobStore jobs, CancellationToken ct) =>
            Results.Ok(new List<QueueDepth> { await tasks.GetDepthOrCountAsync(jobs, ct), await events.GetDepthOrCountAsync(jobs, ct) }))
            .RequireAuthorization(Queue.Hosting.Security.QueuePolicies.Read);
        endpoints.MapGet("/workers", WorkersAsync).RequireAuthorization(Queue.Hosting.Security.QueuePolicies.Read);
        // A job's page: the page itself holds no data (it asks for it with the user's credential), as the dashboard.
        endpoints.MapGet("/ui/jobs/{id}", () => Results.Stream(Files.GetFileInfo("job.html").CreateReadStream(), "text/html; charset=utf-8"))
            .AllowAnonymous().ExcludeFromDescription();
        return endpoints;
    }

    /// <summary>The workers alive now, from their heartbeat keys: one small read per worker, however many jobs there are.</summary>
    private static async Task<IResult> WorkersAsync(JobStore jobs, CancellationToken ct)
    {
        var workers = await jobs.ListWorkersAsync(ct);
        workers.Sort(static (a, b) => string.CompareOrdinal(a.Worker, b.Worker));
        return Results.Ok(workers);
    }
}
