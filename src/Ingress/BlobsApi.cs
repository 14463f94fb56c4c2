using System.Buffers;
using System.Security.Claims;
using Microsoft.Extensions.Options;
using Queue.Hosting.Security;
using Queue.Contracts.Ports;

namespace Queue.Ingress;

/// <summary>
/// Data in and out through the ingress, whatever the blob adapter: upload input and scripts, list a
/// container, download outputs. Uploads stream to the store and become visible only when complete;
/// a rejected or failed upload leaves nothing behind.
/// </summary>
public static class BlobsApi
{
    public static IEndpointRouteBuilder MapBlobsApi(this IEndpointRouteBuilder endpoints)
    {
        // The ingress counts the body itself (Queue:Ingress:MaxBlobBytes), so Kestrel's 30 MB default is lifted here.
        endpoints.MapPut("/blobs/{container}/{**name}", UploadAsync).RequireAuthorization(QueuePolicies.Submit)
            .WithMetadata(new Microsoft.AspNetCore.Mvc.DisableRequestSizeLimitAttribute());
        endpoints.MapGet("/blobs/{container}", ListAsync).RequireAuthorization(QueuePolicies.Read);
        endpoints.MapGet("/blobs/{container}/{**name}", DownloadAsync).RequireAuthorization(QueuePolicies.Read);
        return endpoints;
    }

    private static async Task<IResult> UploadAsync(string container, string name, HttpRequest http, ClaimsPrincipal user, QueueAccess access,
        IBlobStore blobs, IOptions<IngressOptions> options, CancellationToken ct)
    {
        if (Invalid(container, name) is { } invalid)
        {
            return invalid;
        }
        if (!access.MayWrite(user, container))
        {
            return NotPermitted(container);
        }
        var limit = options.Value.MaxBlobBytes;
        if (http.ContentLength > limit)
        {
            return TooLarge(limit);
        }
        BlobWriter writer;
        try
        {
            writer = await blobs.OpenWriteAsync(container, name, ct);
        }
        catch (BlobConflictException e)
        {
            return Results.Problem(statusCode: 409, title: "Blob name taken", detail: e.Message);
        }
        await using (writer)
        {
            var total = 0L;
            var buffer = ArrayPool<byte>.Shared.Rent(1 << 16);
            try
            {
                int read;
                while ((read = await http.Body.ReadAsync(buffer, ct)) > 0)
                {
                    total += read;
                    if (total > limit)
                    {
                        // Disposing the uncommitted writer discards what was written.
                        return TooLarge(limit);
                    }
                    await writer.WriteAsync(buffer.AsMemory(0, read), ct);
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
            await blobs.CreateContainerIfMissingAsync(container, ct);
            try
            {
                await writer.CommitAsync(overwrite: true, ct);
            }
            catch (BlobConflictException e)
            {
                return Results.Problem(statusCode: 409, title: "Blob name taken", detail: e.Message);
            }
            return Results.Created($"/blobs/{container}/{BlobNames.Escape(name)}", new BlobItem(container, name, total));
        }
    }

    private static async Task<IResult> ListAsync(string container, string? prefix, ClaimsPrincipal user, QueueAccess access, IBlobStore blobs, CancellationToken ct)
    {
        if (InvalidContainer(container) is { } invalid)
        {
            return invalid;
        }
        if (!access.MayRead(user, container))
        {
            return NotPermitted(container);
        }
        if (BlobNames.CheckPrefix(prefix ?? "") is { } problem)
        {
            return Results.Problem(statusCode: 400, title: "Invalid prefix", detail: problem);
        }
        var items = new List<BlobItem>();
        await foreach (var item in blobs.ListAsync(container, prefix ?? "", ct))
        {
            items.Add(item);
        }
        return Results.Ok(items);
    }

    private static async Task<IResult> DownloadAsync(string container, string name, ClaimsPrincipal user, QueueAccess access, IBlobStore blobs, CancellationToken ct)
    {
        if (Invalid(container, name) is { } invalid)
        {
            return invalid;
        }
        if (!access.MayRead(user, container))
        {
            return NotPermitted(container);
        }
        if (await blobs.GetPropertiesAsync(container, name, ct) is null)
        {
            return Results.Problem(statusCode: 404, title: "Blob not found", detail: $"There is no blob '{name}' in '{container}'.");
        }
        return Results.Stream(async body =>
        {
            await using var stream = await blobs.OpenReadAsync(container, name, 0, null, ct);
            await stream.CopyToAsync(body, ct);
        }, "application/octet-stream");
    }

    private static IResult? Invalid(string container, string name) =>
        InvalidContainer(container)
        ?? (BlobNames.CheckName(name) is { } problem ? Results.Problem(statusCode: 400, title: "Invalid blob name", detail: problem) : null);

    private static IResult? InvalidContainer(string container) =>
        BlobNames.IsContainerName(container) ? null : Results.Problem(statusCode: 400, title: "Invalid container", detail: BlobNames.ContainerRule);

    private static IResult NotPermitted(string container) =>
        Results.Problem(statusCode: 403, title: "Not permitted", detail: $"This identity may not use the container '{container}'.");

    private static IResult TooLarge(long limit) =>
        Results.Problem(statusCode: 413, title: "Blob too large", detail: $"Uploads may be at most {limit} bytes (Queue:Ingress:MaxBlobBytes).");
}
