using System.Globalization;
using System.Text;
using Microsoft.Extensions.Logging;
using Queue.Contracts.Ports;

namespace Queue.Adapters.Etcd;

/// <summary>
/// Leader election with etcd's recipe (as in its concurrency package): each candidate holds a lease
/// and writes <c>{prefix}{leaseId:x}</c> attached to it; the key with the lowest create revision
/// leads. The fence is that key's create revision, so once the lease expires — even while the
/// old leader is paused and does not know — every fenced write of the old leader fails.
/// </summary>
public sealed partial class EtcdLeaderElection(EtcdClient client, ILogger<EtcdLeaderElection> logger) : ILeaderElection
{
    public const string Prefix = "/queue/election/";

    public async Task<ILeadership> CampaignAsync(string candidateId, CancellationToken cancellationToken)
    {
        var options = client.Options;
        var leaseId = await client.GrantLeaseAsync(options.LeaseTtl, cancellationToken);
        var leadership = new Leadership(client, logger, candidateId, leaseId, Prefix + leaseId.ToString("x", CultureInfo.InvariantCulture));
        try
        {
            var key = Encoding.UTF8.GetBytes(leadership.Key);
            await client.TxnAsync(new TxnRequest
            {
                Compare = [new Compare { Key = key, Target = "CREATE", CreateRevision = 0 }],
                Success = [new RequestOp { RequestPut = new PutRequest { Key = key, Value = Encoding.UTF8.GetBytes(candidateId), Lease = leaseId } }],
            }, cancellationToken);
            var mine = await client.RangeAsync(new RangeRequest { Key = key }, cancellationToken);
            if (mine.Kvs is not [var kv, ..])
            {
                throw new EtcdException("The candidate key vanished right after it was written (lease expired?).", 5);
            }
            leadership.Start(kv.CreateRevision);
            while (true)
            {
                if (leadership.Lost.IsCancellationRequested)
                {
                    throw new EtcdException("The candidate's lease was lost while it waited to lead.", 5);
                }
                var first = await FirstCandidateAsync(cancellationToken);
                if (first is not null && first.CreateRevision == kv.CreateRevision && first.Key.AsSpan().SequenceEqual(key))
                {
                    return leadership;
                }
                await Task.Delay(options.CampaignPollInterval, cancellationToken);
            }
        }
        catch
        {
            await leadership.DisposeAsync();
            throw;
        }
    }

    public async Task<string?> GetLeaderAsync(CancellationToken cancellationToken)
    {
        var first = await FirstCandidateAsync(cancellationToken);
        return first?.Value is { } value ? Encoding.UTF8.GetString(value) : null;
    }

    private async Task<KeyValue?> FirstCandidateAsync(CancellationToken cancellationToken)
    {
        var prefix = Encoding.UTF8.GetBytes(Prefix);
        var response = await client.RangeAsync(new RangeRequest
        {
            Key = prefix,
            RangeEnd = EtcdClient.PrefixEnd(prefix),
            Limit = 1,
            SortTarget = "CREATE",
            SortOrder = "ASCEND",
        }, cancellationToken);
        return response.Kvs is [var first, ..] ? first : null;
    }

    /// <summary>
    /// Keeps the lease alive at a third of its TTL. Leadership counts as lost when etcd says the lease
    /// is gone, or when no renewal has succeeded for a whole TTL since the last one was sent — by
    /// then the lease may have expired on the server and another candidate may lead.
    /// </summary>
    private sealed class Leadership(EtcdClient client, ILogger logger, string candidateId, long leaseId, string key) : ILeadership
    {
        private readonly CancellationTokenSource lost = new();
        private readonly CancellationTokenSource stop = new();
        private Task keepAlive = Task.CompletedTask;

        public string Key { get; } = key;
        public string CandidateId { get; } = candidateId;
        public long Epoch { get; private set; }
        public KvCompare Fence { get; private set; } = null!;
        public CancellationToken Lost => lost.Token;

        public void Start(long createRevision)
        {
            Epoch = createRevision;
            Fence = new KvCompare(Key, KvCompareTarget.CreateRevision, createRevision);
            keepAlive = KeepAliveAsync();
        }

        public async Task ResignAsync(CancellationToken cancellationToken)
        {
            await stop.CancelAsync();
            await lost.CancelAsync();
            await client.RevokeLeaseAsync(leaseId, cancellationToken);
        }

        public async ValueTask DisposeAsync()
        {
            await stop.CancelAsync();
            await lost.CancelAsync();
            try
            {
                await keepAlive;
                await client.RevokeLeaseAsync(leaseId, CancellationToken.None);
            }
            catch (Exception e) when (e is EtcdException or BrokerUnavailableException)
            {
                // etcd unreachable: the lease expires on its own.
            }
        }

        private async Task KeepAliveAsync()
        {
            var ttl = client.Options.LeaseTtl;
            var lastSent = DateTime.UtcNow;
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    await Task.Delay(ttl / 3, stop.Token);
                    var sent = DateTime.UtcNow;
                    using var attempt = CancellationTokenSource.CreateLinkedTokenSource(stop.Token);
                    var budget = lastSent + ttl - sent;
                    attempt.CancelAfter(budget > TimeSpan.FromMilliseconds(1) ? budget : TimeSpan.FromMilliseconds(1));
                    var remaining = await client.KeepAliveOnceAsync(leaseId, attempt.Token);
                    if (remaining <= 0)
                    {
                        LogLeaseGone(logger, CandidateId, leaseId);
                        await lost.CancelAsync();
                        return;
                    }
                    lastSent = sent;
                }
                catch (OperationCanceledException) when (stop.IsCancellationRequested)
                {
                    return;
                }
                catch (Exception e) when (e is EtcdException or BrokerUnavailableException or OperationCanceledException)
                {
                    if (DateTime.UtcNow >= lastSent + ttl)
                    {
                        LogKeepAliveFailed(logger, CandidateId, leaseId, e.Message);
                        await lost.CancelAsync();
                        return;
                    }
                }
            }
        }
    }

    [LoggerMessage(3010, LogLevel.Warning, "Candidate {CandidateId}: lease {LeaseId} is gone; leadership lost")]
    private static partial void LogLeaseGone(ILogger logger, string candidateId, long leaseId);

    [LoggerMessage(3011, LogLevel.Warning, "Candidate {CandidateId}: lease {LeaseId} could not be renewed for a whole TTL ({Error}); leadership lost")]
    private static partial void LogKeepAliveFailed(ILogger logger, string candidateId, long leaseId, string error);
}
