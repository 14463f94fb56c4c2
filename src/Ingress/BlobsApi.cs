using Queue.Contracts;
using Queue.Contracts.Jobs;
using Queue.Contracts.Ports;

namespace Queue.Ingress;

/// <summary>
/// Data in and out through the ingress, whatever the blob adapter: upload input and scripts, list a
/// container, download outputs. Uploads stream to the store and become visible only when complete.
/// </summary>
public static class BlobsApi
{
    public static IEndpointRouteBuilder MapBlobsApi(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapPut("/blobs/{container}/{**name}", UploadAsync).AddEndpointFilter<ApiKeyFilter>()
            .WithMetadata(new Microsoft.AspNetCore.Mvc.DisableRequestSizeLimitAttribute());
        endpoints.MapGet("/blobs/{container}", ListAsync);
        endpoints.MapGet("/blobs/{container}/{**name}", DownloadAsync);
        return endpoints;
    }

    private static async Task<IResult> UploadAsync(string container, string name, HttpRequest http, IBlobStore blobs, CancellationToken ct)
    {
        if (Invalid(container, name) is { } invalid)
        {
            return invalid;
        }
        await blobs.CreateContainerIfMissingAsync(container, ct);
        await using var writer = await blobs.OpenWriteAsync(container, name, ct);
        await http.Body.CopyToAsync(writer, ct);
        await writer.CommitAsync(overwrite: true, ct);
        return Results.Created($"/blobs/{container}/{name}", new BlobItem(container, name, http.ContentLength ?? 0));
    }

    private static async Task<IResult> ListAsync(string container, string? prefix, IBlobStore blobs, CancellationToken ct)
    {
        if ((InvalidContainer(container) ?? (string.IsNullOrEmpty(prefix) ? null : InvalidName(prefix))) is { } invalid)
        {
            return invalid;
        }
        var items = new List<BlobItem>();
        await foreach (var item in blobs.ListAsync(container, prefix ?? "", ct))
        {
            items.Add(item);
        }
        return Results.Ok(items);
    }

    private static async Task<IResult> DownloadAsync(string container, string name, IBlobStore blobs, CancellationToken ct)
    {
        if (Invalid(container, name) is { } invalid)
        {
            return invalid;
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

    private static IResult? Invalid(string container, string name) => InvalidContainer(container) ?? InvalidName(name);

    private static IResult? InvalidContainer(string container) =>
        JobRequestValidator.IsContainerName(container)
            ? null
            : Results.Problem(statusCode: 400, title: "Invalid container", detail: "Use 1-63 lowercase letters, digits and '-'.");

    private static IResult? InvalidName(string name) =>
        name.Length > 0 && JobRequestValidator.IsSafeBlobPath(name)
            ? null
            : Results.Problem(statusCode: 400, title: "Invalid blob name", detail: "Blob names are relative paths without '..', '\\\\' or control characters.");
}
