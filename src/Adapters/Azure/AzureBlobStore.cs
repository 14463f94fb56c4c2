using System.Buffers;
using System.Net;
using System.Net.Http.Headers;
using System.Runtime.CompilerServices;
using System.Text;
using System.Xml.Linq;
using Queue.Contracts.IO;
using Queue.Contracts.Ports;

namespace Queue.Adapters.Azure;

/// <summary>
/// Blob storage on Azure Blob: uploads stream in blocks (Put Block) and become visible in one step
/// when the block list is committed (Put Block List, with <c>If-None-Match: *</c> when the first
/// commit must win); reads are ranged and streamed; listings page with continuation markers.
/// </summary>
public sealed class AzureBlobStore(AzureStorageClient client) : IBlobStore
{
    public async Task CreateContainerIfMissingAsync(string container, CancellationToken cancellationToken)
    {
        using var _ = await client.SendAsync(() => new HttpRequestMessage(HttpMethod.Put, ContainerUri(container, "restype=container")), cancellationToken,
            accept: HttpStatusCode.Conflict);
    }

    public async Task<Stream> OpenReadAsync(string container, string name, long offset, long? length, CancellationToken cancellationToken)
    {
        if (length == 0)
        {
            return Stream.Null;
        }
        var response = await client.SendAsync(() =>
        {
            var request = new HttpRequestMessage(HttpMethod.Get, BlobUri(container, name));
            if (offset > 0 || length is not null)
            {
                request.Headers.Add("x-ms-range", length is { } l ? $"bytes={offset}-{offset + l - 1}" : $"bytes={offset}-");
            }
            return request;
        }, cancellationToken, HttpCompletionOption.ResponseHeadersRead, HttpStatusCode.NotFound, HttpStatusCode.RequestedRangeNotSatisfiable);
        if (response.StatusCode == HttpStatusCode.NotFound)
        {
            response.Dispose();
            throw new BlobNotFoundException(container, name);
        }
        if (response.StatusCode == HttpStatusCode.RequestedRangeNotSatisfiable)
        {
            // Reading from (or past) the end of a blob: nothing to read.
            response.Dispose();
            return Stream.Null;
        }
        return new ResponseStream(response, await response.Content.ReadAsStreamAsync(cancellationToken));
    }

    public async Task<BlobItem?> GetPropertiesAsync(string container, string name, CancellationToken cancellationToken)
    {
        using var response = await client.SendAsync(() => new HttpRequestMessage(HttpMethod.Head, BlobUri(container, name)), cancellationToken,
            accept: HttpStatusCode.NotFound);
        return response.StatusCode == HttpStatusCode.NotFound ? null : new BlobItem(container, name, response.Content.Headers.ContentLength ?? 0);
    }

    public async IAsyncEnumerable<BlobItem> ListAsync(string container, string prefix, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        if (BlobNames.CheckPrefix(prefix) is { } problem)
        {
            throw new InvalidBlobNameException(problem);
        }
        string? marker = null;
        do
        {
            var query = $"restype=container&comp=list&maxresults=5000&prefix={Uri.EscapeDataString(prefix)}" + (marker is null ? "" : $"&marker={Uri.EscapeDataString(marker)}");
            XDocument page;
            using (var response = await client.SendAsync(() => new HttpRequestMessage(HttpMethod.Get, ContainerUri(container, query)), cancellationToken, accept: HttpStatusCode.NotFound))
            {
                if (response.StatusCode == HttpStatusCode.NotFound)
                {
                    yield break;
                }
                page = XDocument.Parse(await response.Content.ReadAsStringAsync(cancellationToken));
            }
            foreach (var blob in page.Root!.Element("Blobs")?.Elements("Blob") ?? [])
            {
                var length = long.Parse(blob.Element("Properties")?.Element("Content-Length")?.Value ?? "0", System.Globalization.CultureInfo.InvariantCulture);
                yield return new BlobItem(container, blob.Element("Name")!.Value, length);
            }
            marker = page.Root.Element("NextMarker")?.Value;
        }
        while (!string.IsNullOrEmpty(marker));
    }

    public async Task<bool> DeleteAsync(string container, string name, CancellationToken cancellationToken)
    {
        using var response = await client.SendAsync(() => new HttpRequestMessage(HttpMethod.Delete, BlobUri(container, name)), cancellationToken,
            accept: HttpStatusCode.NotFound);
        return response.StatusCode != HttpStatusCode.NotFound;
    }

    public Task<BlobWriter> OpenWriteAsync(string container, string name, CancellationToken cancellationToken)
    {
        BlobNames.Validate(container, name);
        return Task.FromResult<BlobWriter>(new BlockBlobWriter(this, container, name));
    }

    internal AzureStorageClient Client => client;

    internal Uri ContainerUri(string container, string query) =>
        BlobNames.IsContainerName(container)
            ? new(client.Account.BlobEndpoint, $"{container}?{query}")
            : throw new InvalidBlobNameException($"'{container}' is not a container name. {BlobNames.ContainerRule}");

    internal Uri BlobUri(string container, string name, string? query = null)
    {
        BlobNames.Validate(container, name);
        return new(client.Account.BlobEndpoint, $"{container}/{BlobNames.Escape(name)}{(query is null ? "" : "?" + query)}");
    }


    /// <summary>Buffers one block at a time; full blocks upload as they fill, the block list commits the blob.</summary>
    private sealed class BlockBlobWriter(AzureBlobStore store, string container, string name) : BlobWriter
    {
        // Block ids are unique to this writer, so concurrent attempts on one blob never mix blocks.
        private readonly byte[] writerId = Guid.NewGuid().ToByteArray();
        private readonly List<string> blocks = [];
        private byte[] buffer = ArrayPool<byte>.Shared.Rent(store.Client.Options.BlockSizeBytes);
        private int used;
        private bool done;

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> data)
        {
            while (!data.IsEmpty)
            {
                var room = Math.Min(data.Length, store.Client.Options.BlockSizeBytes - used);
                data[..room].CopyTo(buffer.AsSpan(used));
                used += room;
                data = data[room..];
                if (used == store.Client.Options.BlockSizeBytes)
                {
                    // Synchronous writers (map output) write to containers the coordinator made beforehand.
                    var id = NextBlockId();
                    using var _ = store.Client.Send(() => PutBlock(id));
                    used = 0;
                }
            }
        }

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default)
        {
            while (!data.IsEmpty)
            {
                var room = Math.Min(data.Length, store.Client.Options.BlockSizeBytes - used);
                data[..room].Span.CopyTo(buffer.AsSpan(used));
                used += room;
                data = data[room..];
                if (used == store.Client.Options.BlockSizeBytes)
                {
                    await FlushBlockAsync(cancellationToken);
                }
            }
        }

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override void Flush()
        {
        }

        public override async Task<bool> CommitAsync(bool overwrite, CancellationToken cancellationToken)
        {
            ObjectDisposedException.ThrowIf(done, this);
            if (used > 0)
            {
                await FlushBlockAsync(cancellationToken);
            }
            var list = new StringBuilder("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
            foreach (var id in blocks)
            {
                list.Append("<Latest>").Append(id).Append("</Latest>");
            }
            list.Append("</BlockList>");
            var body = Encoding.UTF8.GetBytes(list.ToString());
            using var response = await store.Client.SendAsync(() =>
            {
                var request = new HttpRequestMessage(HttpMethod.Put, store.BlobUri(container, name, "comp=blocklist")) { Content = new ByteArrayContent(body) };
                request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/xml");
                if (!overwrite)
                {
                    request.Headers.IfNoneMatch.Add(EntityTagHeaderValue.Any);
                }
                return request;
            }, cancellationToken, accept: [HttpStatusCode.Conflict, HttpStatusCode.PreconditionFailed]);
            done = true;
            Release();
            // Another writer committed first: the first committed attempt wins.
            return response.IsSuccessStatusCode;
        }

        protected override void Dispose(bool disposing)
        {
            // Uncommitted blocks are never visible; the service discards them after a week.
            done = true;
            Release();
            base.Dispose(disposing);
        }

        private async Task FlushBlockAsync(CancellationToken cancellationToken)
        {
            var id = NextBlockId();
            using var response = await store.Client.SendAsync(() => PutBlock(id), cancellationToken, accept: HttpStatusCode.NotFound);
            if (response.StatusCode == HttpStatusCode.NotFound)
            {
                // The container is made on first use, so a writer never needs it made (and left empty) beforehand.
                await store.CreateContainerIfMissingAsync(container, cancellationToken);
                using var _ = await store.Client.SendAsync(() => PutBlock(id), cancellationToken);
            }
            used = 0;
        }

        private string NextBlockId()
        {
            Span<byte> id = stackalloc byte[20];
            writerId.CopyTo(id);
            BitConverter.TryWriteBytes(id[16..], blocks.Count);
            var text = Convert.ToBase64String(id);
            blocks.Add(text);
            return text;
        }

        private HttpRequestMessage PutBlock(string id)
        {
            var request = new HttpRequestMessage(HttpMethod.Put, store.BlobUri(container, name, $"comp=block&blockid={Uri.EscapeDataString(id)}"))
            {
                Content = new ReadOnlyMemoryContent(buffer.AsMemory(0, used)),
            };
            request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
            return request;
        }

        private void Release()
        {
            if (buffer.Length > 0)
            {
                ArrayPool<byte>.Shared.Return(buffer);
                buffer = [];
            }
        }
    }

    /// <summary>A response body that disposes its response with it.</summary>
    private sealed class ResponseStream(HttpResponseMessage response, Stream inner) : ReadOnlyWrapperStream(inner)
    {
        protected override void Dispose(bool disposing)
        {
            base.Dispose(disposing);
            if (disposing)
            {
                response.Dispose();
            }
        }

        public override async ValueTask DisposeAsync()
        {
            await base.DisposeAsync();
            response.Dispose();
        }
    }
}
