using System.Runtime.CompilerServices;
using Etcdserverpb;
using Google.Protobuf;
using Queue.Contracts.Ports;

namespace Queue.Adapters.Etcd;

/// <summary>The coordination store on etcd: ranges are paged, transactions map one-to-one onto etcd's, leased keys keep one lease each.</summary>
public sealed class EtcdKeyValueStore(EtcdConnection etcd) : IKeyValueStore
{
    private const int PageSize = 500;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, long> leases = new(StringComparer.Ordinal);

    public async Task<KvEntry?> GetAsync(string key, CancellationToken cancellationToken)
    {
        var response = await etcd.RangeAsync(new RangeRequest { Key = ByteString.CopyFromUtf8(key) }, cancellationToken);
        return response.Kvs.Count > 0 ? ToEntry(response.Kvs[0]) : null;
    }

    public async Task<IReadOnlyList<KvEntry>> ListAsync(string prefix, CancellationToken cancellationToken)
    {
        var start = ByteString.CopyFromUtf8(prefix);
        var end = EtcdConnection.PrefixEnd(start);
        var entries = new List<KvEntry>();
        long revision = 0;
        while (true)
        {
            // Pages keep each answer well under etcd's message size limit; every page reads the first page's revision, so the list is one snapshot.
            var response = await etcd.RangeAsync(new RangeRequest { Key = start, RangeEnd = end, Limit = PageSize, Revision = revision }, cancellationToken);
            revision = response.Header.Revision;
            foreach (var kv in response.Kvs)
            {
                entries.Add(ToEntry(kv));
            }
            if (!response.More || response.Kvs.Count == 0)
            {
                return entries;
            }
            start = ByteString.CopyFrom([.. response.Kvs[^1].Key.Span, 0]);
        }
    }

    public async Task<bool> TransactAsync(IReadOnlyList<KvCompare> compares, IReadOnlyList<KvWrite> writes, CancellationToken cancellationToken)
    {
        var txn = new TxnRequest();
        foreach (var compare in compares)
        {
            txn.Compare.Add(compare.Target == KvCompareTarget.CreateRevision
                ? new Compare { Key = ByteString.CopyFromUtf8(compare.Key), Target = Compare.Types.CompareTarget.Create, Result = Compare.Types.CompareResult.Equal, CreateRevision = compare.Revision }
                : new Compare { Key = ByteString.CopyFromUtf8(compare.Key), Target = Compare.Types.CompareTarget.Mod, Result = Compare.Types.CompareResult.Equal, ModRevision = compare.Revision });
        }
        foreach (var write in writes)
        {
            txn.Success.Add(write.Value is null
                ? new RequestOp { RequestDeleteRange = new DeleteRangeRequest { Key = ByteString.CopyFromUtf8(write.Key) } }
                : new RequestOp { RequestPut = new PutRequest { Key = ByteString.CopyFromUtf8(write.Key), Value = ByteString.CopyFrom(write.Value) } });
        }
        return (await etcd.TxnAsync(txn, cancellationToken)).Succeeded;
    }

    public async Task PutLeasedAsync(string key, byte[] value, TimeSpan ttl, CancellationToken cancellationToken)
    {
        // One lease per key, kept alive by each write; a lapsed one (the writer stalled past its TTL) is replaced.
        if (!leases.TryGetValue(key, out var lease) || await etcd.KeepAliveOnceAsync(lease, cancellationToken) <= 0)
        {
            lease = await etcd.GrantLeaseAsync(ttl, cancellationToken);
            leases[key] = lease;
        }
        try
        {
            await PutWithLeaseAsync(key, value, lease, cancellationToken);
        }
        catch (EtcdException e) when (e.Code == Grpc.Core.StatusCode.NotFound)
        {
            // The lease lapsed between its keep-alive and the put (a slow beat): take a new one, once.
            leases.Remove(key, out _);
            lease = await etcd.GrantLeaseAsync(ttl, cancellationToken);
            leases[key] = lease;
            await PutWithLeaseAsync(key, value, lease, cancellationToken);
        }
    }

    private async Task PutWithLeaseAsync(string key, byte[] value, long lease, CancellationToken cancellationToken)
    {
        var txn = new TxnRequest();
        txn.Success.Add(new RequestOp { RequestPut = new PutRequest { Key = ByteString.CopyFromUtf8(key), Value = ByteString.CopyFrom(value), Lease = lease } });
        await etcd.TxnAsync(txn, cancellationToken);
    }

    public async IAsyncEnumerable<KvChange> WatchAsync(string prefix, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        // "From now" is the store's current revision, fixed before the watch starts, so a resumed stream has no gap.
        await foreach (var change in WatchAsync(prefix, await RevisionAsync(cancellationToken) + 1, cancellationToken))
        {
            yield return change;
        }
    }

    /// <summary>
    /// Every change under <paramref name="prefix"/> from <paramref name="fromRevision"/> on, in revision
    /// order; survives broken streams and member failures without losing or repeating a change.
    /// </summary>
    public async IAsyncEnumerable<KvChange> WatchAsync(string prefix, long fromRevision, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await foreach (var (revision, change) in etcd.WatchAsync(ByteString.CopyFromUtf8(prefix), fromRevision, cancellationToken))
        {
            var key = change.Kv.Key.ToStringUtf8();
            yield return change.Type == Mvccpb.Event.Types.EventType.Delete ? new KvChange(key, null, revision) : new KvChange(key, change.Kv.Value.ToByteArray(), revision);
        }
    }

    public async Task<long> RevisionAsync(CancellationToken cancellationToken) =>
        (await etcd.RangeAsync(new RangeRequest { Key = ByteString.CopyFromUtf8("/"), Limit = 1, KeysOnly = true }, cancellationToken)).Header.Revision;

    public async Task CompactAsync(long revision, CancellationToken cancellationToken)
    {
        try
        {
            await etcd.CompactAsync(revision, cancellationToken);
        }
        catch (EtcdException e) when (e.Code == Grpc.Core.StatusCode.OutOfRange)
        {
            // "required revision has been compacted": another coordinator (or etcd's own auto-compaction) got there first.
        }
    }

    internal static KvEntry ToEntry(Mvccpb.KeyValue kv) =>
        new(kv.Key.ToStringUtf8(), kv.Value.ToByteArray(), kv.CreateRevision, kv.ModRevision);
}
