using System.Buffers;
using System.Runtime.CompilerServices;
using System.Text;
using Azure;
using Azure.Storage.Blobs;
using Azure.Storage.Blobs.Models;
using Azure.Storage.Blobs.Specialized;
using Queue.Contracts.Ports;
using BlobItem = Queue.Contracts.Ports.BlobItem;

namespace Queue.Adapters.Azure;

/// <summary>
/// The blob store on Azure Blob (Azure.Storage.Blobs): writes stage blocks as they fill and publish the
/// blob with one Commit Block List (<c>If-None-Match: *</c> when the first commit must win); reads are
/// ranged streaming downloads; listings page through the service's 5,000-blob pages.
/// </summary>
public sealed class AzureBlobStore(AzureStorageClients clients) : IBlobStore
{
    public Task CreateContainerIfMissingAsync(string container, CancellationToken cancellationToken) =>
        AzureStorageClients.CallAsync($"creating container '{container}'", () => Container(container).CreateIfNotExistsAsync(cancellationToken: cancellationToken), cancellationToken);

    public Task<Stream> OpenReadAsync(string container, string name, long offset, long? length, CancellationToken cancellationToken) =>
        AzureStorageClients.CallAsync<Stream>($"reading '{container}/{name}'", async () =>
        {
            if (length == 0)
            {
                return Stream.Null;
            }
            try
            {
                var download = await Blob(container, name).DownloadStreamingAsync(
                    new BlobDownloadOptions { Range = new HttpRange(offset, length) }, cancellationToken);
                return download.Value.Content;
            }
            catch (RequestFailedException e) when (e.Status == 404)
            {
                throw new BlobNotFoundException(container, name);
            }
            catch (RequestFailedException e) when (e.Status == 416)
            {
                // Reading from (or past) the end of a blob: nothing to read.
                return Stream.Null;
            }
        }, cancellationToken);

    public Task<BlobItem?> GetPropertiesAsync(string container, string name, CancellationToken cancellationToken) =>
        AzureStorageClients.CallAsync<BlobItem?>($"reading the properties of '{container}/{name}'", async () =>
        {
            try
            {
                var properties = await Blob(container, name).GetPropertiesAsync(cancellationToken: cancellationToken);
                return new BlobItem(container, name, properties.Value.ContentLength);
            }
            catch (RequestFailedException e) when (e.Status == 404)
            {
                return null;
            }
        }, cancellationToken);

    public async IAsyncEnumerable<BlobItem> ListAsync(string container, string prefix, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        BlobNames.ValidatePrefix(prefix);
        var pages = Container(container).GetBlobsAsync(BlobTraits.None, BlobStates.None, prefix.Length == 0 ? null : prefix, cancellationToken)
            .AsPages(pageSizeHint: 5000).GetAsyncEnumerator(cancellationToken);
        try
        {
            while (true)
            {
                bool more;
                try
                {
                    more = await pages.MoveNextAsync();
                }
                catch (RequestFailedException e) when (e.Status == 404)
                {
                    yield break; // an absent container lists nothing
                }
                catch (Exception e) when (AzureStorageClients.Translate(e, $"listing '{container}/{prefix}'", cancellationToken) is { } translated)
                {
                    throw translated;
                }
                if (!more)
                {
                    yield break;
                }
                foreach (var blob in pages.Current.Values)
                {
                    yield return new BlobItem(container, blob.Name, blob.Properties.ContentLength ?? 0);
                }
            }
        }
        finally
        {
            await pages.DisposeAsync();
        }
    }

    public Task<bool> DeleteAsync(string container, string name, CancellationToken cancellationToken) =>
        AzureStorageClients.CallAsync($"deleting '{container}/{name}'", async () =>
        {
            try
            {
                return (await Blob(container, name).DeleteIfExistsAsync(cancellationToken: cancellationToken)).Value;
            }
            catch (RequestFailedException e) when (e.Status == 404)
            {
                return false; // the container is gone too
            }
        }, cancellationToken);

    public Task<BlobWriter> OpenWriteAsync(string container, string name, CancellationToken cancellationToken)
    {
        BlobNames.Validate(container, name);
        return Task.FromResult<BlobWriter>(new BlockWriter(this, container, name));
    }

    private AzureStorageOptions Options => clients.Options;

    private BlobContainerClient Container(string container)
    {
        BlobNames.ValidateContainer(container);
        return clients.Blobs.GetBlobContainerClient(container);
    }

    private BlockBlobClient Blob(string container, string name)
    {
        BlobNames.Validate(container, name);
        return clients.Blobs.GetBlobContainerClient(container).GetBlockBlobClient(name);
    }

    /// <summary>Buffers one block at a time (pooled); full blocks are staged as they fill, the block list commits the blob.</summary>
    private sealed class BlockWriter(AzureBlobStore store, string container, string name) : BlobWriter
    {
        // Block ids are unique to this writer, so concurrent attempts on one blob never mix blocks.
        private readonly string writerId = Guid.NewGuid().ToString("N");
        private readonly List<string> blocks = [];
        private readonly BlockBlobClient blob = store.Blob(container, name);
        private readonly int blockSize = store.Options.BlockSizeBytes;
        private byte[]? buffer;
        private int used;
        private bool done;

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> data)
        {
            while (!data.IsEmpty)
            {
                var room = Append(data);
                data = data[room..];
                if (used == blockSize)
                {
                    // Synchronous writers (map output) write to containers the coordinator made beforehand.
                    var id = NextBlockId();
                    AzureStorageClients.CallAsync($"staging a block of '{container}/{name}'", () =>
                    {
                        blob.StageBlock(id, new MemoryStream(buffer!, 0, used, writable: false));
                        return Task.CompletedTask;
                    }, CancellationToken.None).GetAwaiter().GetResult();
                    used = 0;
                }
            }
        }

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default)
        {
            while (!data.IsEmpty)
            {
                var room = Append(data.Span);
                data = data[room..];
                if (used == blockSize)
                {
                    await StageAsync(cancellationToken);
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
                await StageAsync(cancellationToken);
            }
            var options = new CommitBlockListOptions
            {
                // If-None-Match: * makes the commit create-only: the first committed attempt wins.
                Conditions = overwrite ? null : new BlobRequestConditions { IfNoneMatch = ETag.All },
            };
            try
            {
                return await AzureStorageClients.CallAsync($"committing '{container}/{name}'", async () =>
                {
                    try
                    {
                        await blob.CommitBlockListAsync(blocks, options, cancellationToken);
                        return true;
                    }
                    catch (RequestFailedException e) when (!overwrite && e.Status is 409 or 412)
                    {
                        return false;
                    }
                }, cancellationToken);
            }
            finally
            {
                Release();
            }
        }

        protected override void Dispose(bool disposing)
        {
            // Uncommitted blocks are never visible; the service discards them after a week.
            Release();
            base.Dispose(disposing);
        }

        private int Append(ReadOnlySpan<byte> data)
        {
            ObjectDisposedException.ThrowIf(done, this);
            buffer ??= ArrayPool<byte>.Shared.Rent(blockSize);
            var room = Math.Min(data.Length, blockSize - used);
            data[..room].CopyTo(buffer.AsSpan(used));
            used += room;
            return room;
        }

        private async Task StageAsync(CancellationToken cancellationToken)
        {
            var id = NextBlockId();
            await AzureStorageClients.CallAsync($"staging a block of '{container}/{name}'", async () =>
            {
                try
                {
                    await blob.StageBlockAsync(id, new MemoryStream(buffer!, 0, used, writable: false), cancellationToken: cancellationToken);
                }
                catch (RequestFailedException e) when (e.Status == 404)
                {
                    // The container is made on first use, so an upload never needs it made (and left empty) beforehand.
                    await store.Container(container).CreateIfNotExistsAsync(cancellationToken: cancellationToken);
                    await blob.StageBlockAsync(id, new MemoryStream(buffer!, 0, used, writable: false), cancellationToken: cancellationToken);
                }
            }, cancellationToken);
            used = 0;
        }

        private string NextBlockId()
        {
            // Every id of a blob has the same length (a service rule): writer id and a zero-padded counter.
            var id = Convert.ToBase64String(Encoding.ASCII.GetBytes($"{writerId}-{blocks.Count:D6}"));
            blocks.Add(id);
            return id;
        }

        private void Release()
        {
            done = true;
            if (buffer is not null)
            {
                ArrayPool<byte>.Shared.Return(buffer);
                buffer = null;
            }
        }
    }
}
