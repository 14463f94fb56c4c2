using System.Diagnostics.Metrics;
using Microsoft.Extensions.Options;
using Queue.Contracts;
using Queue.Contracts.Ports;

namespace Queue.Hosting;

/// <summary>
/// Counts this process's calls on the blob store, by operation and by what the container holds
/// (<c>input</c>, <c>intermediate</c>, <c>output</c>, <c>scripts</c>): on Azure Blob each is billed
/// (a read is one ranged GET, a delete one request, a list one request per 5,000 names, a write one
/// request per block staged plus the commit), so a job's shape shows up in what it costs.
/// Exported as <c>queue_blob_operations_total</c>.
/// </summary>
public sealed class BlobOperations
{
    public const string MeterName = "Queue.Blobs";
    private static readonly string[] Operations = Array.ConvertAll(Enum.GetNames<Operation>(), name => name.ToLowerInvariant());
    private static readonly string[] Roles = ["input", "intermediate", "output", "scripts"];
    private readonly long[] counts = new long[Operations.Length * Roles.Length];
    private readonly StorageOptions storage;

    public BlobOperations(IMeterFactory factory, IOptions<StorageOptions> storage)
    {
        this.storage = storage.Value;
        var meter = factory.Create(MeterName);
        meter.CreateObservableCounter("queue.blob.operations", Observe, "{operation}", "Calls on the blob store, by operation and container role.");
    }

    /// <summary>Calls so far, by operation, on containers of one role.</summary>
    public BlobCallCounts Count(string role)
    {
        var r = Array.IndexOf(Roles, role);
        return r < 0 ? default : new BlobCallCounts(Get(Operation.Read, r), Get(Operation.Write, r), Get(Operation.Delete, r), Get(Operation.List, r), Get(Operation.Properties, r));
    }

    internal void Add(Operation operation, string container) =>
        Interlocked.Increment(ref counts[((int)operation * Roles.Length) + RoleOf(container)]);

    private long Get(Operation operation, int role) => Volatile.Read(ref counts[((int)operation * Roles.Length) + role]);

    private int RoleOf(string container) =>
        container == storage.IntermediateContainer ? 1 : container == storage.OutputContainer ? 2 : container == storage.ScriptsContainer ? 3 : 0;

    private IEnumerable<Measurement<long>> Observe()
    {
        for (var o = 0; o < Operations.Length; o++)
        {
            for (var r = 0; r < Roles.Length; r++)
            {
                yield return new Measurement<long>(Get((Operation)o, r), new KeyValuePair<string, object?>("operation", Operations[o]), new KeyValuePair<string, object?>("container", Roles[r]));
            }
        }
    }

    internal enum Operation
    {
        Read,
        Write,
        Delete,
        List,
        Properties,
    }
}

/// <summary>Calls on the blob store by operation, as <see cref="BlobOperations.Count"/> gives them.</summary>
public readonly record struct BlobCallCounts(long Reads, long Writes, long Deletes, long Lists, long Properties);

/// <summary>The configured blob store, its calls counted in <see cref="BlobOperations"/>.</summary>
public sealed class MeteredBlobStore(IBlobStore inner, BlobOperations operations) : IBlobStore
{
    public Task CreateContainerIfMissingAsync(string container, CancellationToken cancellationToken) =>
        inner.CreateContainerIfMissingAsync(container, cancellationToken);

    public Task<Stream> OpenReadAsync(string container, string name, long offset, long? length, CancellationToken cancellationToken)
    {
        operations.Add(BlobOperations.Operation.Read, container);
        return inner.OpenReadAsync(container, name, offset, length, cancellationToken);
    }

    public Task<BlobItem?> GetPropertiesAsync(string container, string name, CancellationToken cancellationToken)
    {
        operations.Add(BlobOperations.Operation.Properties, container);
        return inner.GetPropertiesAsync(container, name, cancellationToken);
    }

    public IAsyncEnumerable<BlobItem> ListAsync(string container, string prefix, CancellationToken cancellationToken)
    {
        operations.Add(BlobOperations.Operation.List, container);
        return inner.ListAsync(container, prefix, cancellationToken);
    }

    public Task<bool> DeleteAsync(string container, string name, CancellationToken cancellationToken)
    {
        operations.Add(BlobOperations.Operation.Delete, container);
        return inner.DeleteAsync(container, name, cancellationToken);
    }

    // Counted when opened: a write abandoned before its commit has usually staged blocks, billed all the same.
    public Task<BlobWriter> OpenWriteAsync(string container, string name, CancellationToken cancellationToken)
    {
        operations.Add(BlobOperations.Operation.Write, container);
        return inner.OpenWriteAsync(container, name, cancellationToken);
    }
}
