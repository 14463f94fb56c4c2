using Microsoft.Extensions.DependencyInjection;
using Queue.Contracts.Jobs;
using Queue.Contracts.Ports;

namespace Queue.Ingress;

/// <summary>What the dashboard shows besides jobs: queue depths and the workers seen recently.</summary>
public static class DashboardApi
{
    /// <summary>Serves the dashboard page (embedded <c>wwwroot</c>) at <c>/</c>.</summary>
    public static IApplicationBuilder UseDashboard(this IApplicationBuilder app)
    {
        var files = new Microsoft.Extensions.FileProviders.EmbeddedFileProvider(typeof(DashboardApi).Assembly, "Queue.Ingress.wwwroot");
        app.UseDefaultFiles(new DefaultFilesOptions { FileProvider = files });
        app.UseStaticFiles(new StaticFileOptions { FileProvider = files });
        return app;
    }

    public static IEndpointRouteBuilder MapDashboardApi(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapGet("/queues", async ([FromKeyedServices(QueueNames.Tasks)] IWorkQueue tasks, [FromKeyedServices(QueueNames.Events)] IWorkQueue events, CancellationToken ct) =>
            Results.Ok(new List<QueueDepth> { await tasks.GetDepthAsync(ct), await events.GetDepthAsync(ct) }));
        endpoints.MapGet("/workers", WorkersAsync);
        return endpoints;
    }

    /// <summary>Workers that ran a task of one of the 20 newest jobs, with when they were last seen and how many attempts they ran.</summary>
    private static async Task<IResult> WorkersAsync(JobStore jobs, CancellationToken ct)
    {
        var seen = new Dictionary<string, WorkerSeen>(StringComparer.Ordinal);
        var views = await jobs.ListAsync(ct);
        for (var i = 0; i < Math.Min(20, views.Count); i++)
        {
            foreach (var task in await jobs.GetTasksAsync(views[i].Spec.Id, ct))
            {
                if (task.Worker is null)
                {
                    continue;
                }
                var last = task.FinishedAt ?? task.StartedAt ?? DateTimeOffset.MinValue;
                seen[task.Worker] = seen.TryGetValue(task.Worker, out var known)
                    ? known with { LastSeen = last > known.LastSeen ? last : known.LastSeen, Tasks = known.Tasks + 1, Running = known.Running + (task.State == TaskState.Running ? 1 : 0) }
                    : new WorkerSeen(task.Worker, last, 1, task.State == TaskState.Running ? 1 : 0);
            }
        }
        var list = seen.Values.ToList();
        list.Sort((a, b) => b.LastSeen.CompareTo(a.LastSeen));
        return Results.Ok(list);
    }
}
