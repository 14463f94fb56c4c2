using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Options;
using Queue.Coordinator;

namespace Microsoft.Extensions.Hosting;

public static class CoordinatorEndpoints
{
    /// <summary><c>GET /coordinator</c>: this process's candidate id, whether it leads, and its epoch.</summary>
    public static IEndpointRouteBuilder MapCoordinatorEndpoints(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapGet("/coordinator", (LeadershipState state, IOptions<CoordinatorOptions> options) =>
        {
            var current = state.Current;
            return Results.Json(new CoordinatorStatus(options.Value.CandidateId, current is not null && !current.Lost.IsCancellationRequested, current?.Epoch ?? 0, state.Changes),
                CoordinatorJsonContext.Default.CoordinatorStatus);
        }).RequireAuthorization(Queue.Hosting.Security.QueuePolicies.Read);
        return endpoints;
    }
}
