using System.Text;
using Queue.Contracts.Ports;

namespace Queue.Adapters.Etcd;

/// <summary>The coordination store on etcd: ranges are paged, transactions map one-to-one onto etcd's.</summary>
public sealed class EtcdKeyValueStore(EtcdClient client) : IKeyValueStore
{
    private const int PageSize = 500;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, long> leases = new(StringComparer.Ordinal);

    public async Task<KvEntry?> GetAsync(string key, CancellationToken cancellationToken)
    {
        var response = await client.RangeAsync(new RangeRequest { Key = Encoding.UTF8.GetBytes(key) }, cancellationToken);
        return response.Kvs is [var kv, ..] ? ToEntry(kv) : null;
    }

    public async Task<IReadOnlyList<KvEntry>> ListAsync(string prefix, CancellationToken cancellationToken)
    {
        var start = Encoding.UTF8.GetBytes(prefix);
        var end = EtcdClient.PrefixEnd(start);
        var entries = new List<KvEntry>();
        while (true)
        {
            // Pages keep each answer well under etcd's message size limit.
            var response = await client.RangeAsync(new RangeRequest { Key = start, RangeEnd = end, Limit = PageSize }, cancellationToken);
            foreach (var kv in response.Kvs ?? [])
            {
                entries.Add(ToEntry(kv));
            }
            if (!response.More || response.Kvs is null or [])
            {
                return entries;
            }
            start = [.. response.Kvs[^1].Key, 0];
        }
    }

    public async Task<bool> TransactAsync(IReadOnlyList<KvCompare> compares, IReadOnlyList<KvWrite> writes, CancellationToken cancellationToken)
    {
        var txn = new TxnRequest();
        foreach (var compare in compares)
        {
            txn.Compare.Add(compare.Target == KvCompareTarget.CreateRevision
                ? new Compare { Key = Encoding.UTF8.GetBytes(compare.Key), Target = "CREATE", CreateRevision = compare.Revision }
                : new Compare { Key = Encoding.UTF8.GetBytes(compare.Key), Target = "MOD", ModRevision = compare.Revision });
        }
        foreach (var write in writes)
        {
            txn.Success.Add(write.Value is null
                ? new RequestOp { RequestDeleteRange = new DeleteRangeRequest { Key = Encoding.UTF8.GetBytes(write.Key) } }
                : new RequestOp { RequestPut = new PutRequest { Key = Encoding.UTF8.GetBytes(write.Key), Value = write.Value } });
        }
        var response = await client.TxnAsync(txn, cancellationToken);
        return response.Succeeded;
    }

    public async Task PutLeasedAsync(string key, byte[] value, TimeSpan ttl, CancellationToken cancellationToken)
    {
        // One lease per key, kept alive by each write; a lapsed one (the writer stalled past its TTL) is replaced.
        if (!leases.TryGetValue(key, out var lease) || await client.KeepAliveOnceAsync(lease, cancellationToken) <= 0)
        {
            lease = await client.GrantLeaseAsync(ttl, cancellationToken);
            leases[key] = lease;
        }
        var txn = new TxnRequest();
        txn.Success.Add(new RequestOp { RequestPut = new PutRequest { Key = Encoding.UTF8.GetBytes(key), Value = value, Lease = lease } });
        await client.TxnAsync(txn, cancellationToken);
    }

    /// <summary>
    /// Every change under <paramref name="prefix"/> from <paramref name="fromRevision"/> on, in revision
    /// order; survives broken streams and member failures without losing or repeating a change.
    /// </summary>
    public async IAsyncEnumerable<KvChange> WatchAsync(string prefix, long fromRevision, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await foreach (var (revision, change) in client.WatchAsync(Encoding.UTF8.GetBytes(prefix), fromRevision, cancellationToken))
        {
            var key = Encoding.UTF8.GetString(change.Kv?.Key ?? []);
            yield return change.Type == "DELETE" ? new KvChange(key, null, revision) : new KvChange(key, change.Kv?.Value ?? [], revision);
        }
    }

    internal static KvEntry ToEntry(KeyValue kv) =>
        new(Encoding.UTF8.GetString(kv.Key), kv.Value ?? [], kv.CreateRevision, kv.ModRevision);
}

/// <summary>One change seen by a watch: a put (<see cref="Value"/> set) or a delete.</summary>
public sealed record KvChange(string Key, byte[]? Value, long Revision);
