using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Options;

namespace Queue.Ingress;

/// <summary>Guards mutating endpoints with the configured API key (constant-time comparison).</summary>
public sealed class ApiKeyFilter(IOptions<IngressOptions> options) : IEndpointFilter
{
    public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var expected = options.Value.ApiKey;
        if (string.IsNullOrEmpty(expected))
        {
            return await next(context);
        }
        var request = context.HttpContext.Request;
        string? given = request.Headers["X-Api-Key"];
        var authorization = request.Headers.Authorization.ToString();
        if (string.IsNullOrEmpty(given) && authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            given = authorization["Bearer ".Length..].Trim();
        }
        if (string.IsNullOrEmpty(given))
        {
            return Results.Problem(statusCode: 401, title: "API key required", detail: "Send the API key in the X-Api-Key header or as a Bearer token.");
        }
        if (!CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(given), Encoding.UTF8.GetBytes(expected)))
        {
            return Results.Problem(statusCode: 403, title: "Wrong API key", detail: "The API key is not valid for this ingress.");
        }
        return await next(context);
    }
}
