using Google.Protobuf;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Queue.Contracts.Ports;
using V3Electionpb;

namespace Queue.Adapters.Etcd;

/// <summary>
/// Leader election through etcd's own election service (Campaign / Leader / Resign): each candidate
/// holds a lease and campaigns with it; etcd writes <c>/queue/election/{lease:x}</c> bound to that lease
/// and answers when every earlier candidate's key is gone. The fence is the leader key's create
/// revision, so once the lease expires — even while the old leader is paused and does not know — every
/// fenced write of the old leader fails.
/// </summary>
public sealed partial class EtcdLeaderElection(EtcdConnection etcd, ILogger<EtcdLeaderElection> logger) : ILeaderElection
{
    public const string Name = "/queue/election";
    public const string Prefix = Name + "/";

    public async Task<ILeadership> CampaignAsync(string candidateId, CancellationToken cancellationToken)
    {
        var options = etcd.Options;
        var leaseId = await etcd.GrantLeaseAsync(options.LeaseTtl, cancellationToken);
        var leadership = new Leadership(etcd, logger, candidateId, leaseId);
        leadership.KeepLeaseAlive();
        try
        {
            var request = new CampaignRequest { Name = ByteString.CopyFromUtf8(Name), Lease = leaseId, Value = ByteString.CopyFromUtf8(candidateId) };
            while (true)
            {
                if (leadership.Lost.IsCancellationRequested)
                {
                    throw new EtcdException("The candidate's lease was lost while it waited to lead.", StatusCode.NotFound);
                }
                try
                {
                    // Campaign blocks until this candidate leads. A bounded wait keeps a paused member from
                    // holding the campaign forever; campaigning again with the same lease resumes it.
                    using var wait = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, leadership.Lost);
                    var response = await etcd.Connection.ElectionClient.CampaignAsync(request,
                        deadline: DateTime.UtcNow + options.LeaseTtl * 2, cancellationToken: wait.Token);
                    leadership.Lead(response.Leader);
                    return leadership;
                }
                catch (RpcException e) when (e.StatusCode is StatusCode.DeadlineExceeded or StatusCode.Unavailable or StatusCode.Internal or StatusCode.Unknown
                    || (e.StatusCode == StatusCode.Cancelled && !cancellationToken.IsCancellationRequested && !leadership.Lost.IsCancellationRequested))
                {
                    await Task.Delay(options.CampaignPollInterval, cancellationToken);
                }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested && !leadership.Lost.IsCancellationRequested)
                {
                    await Task.Delay(options.CampaignPollInterval, cancellationToken);
                }
                catch (RpcException e) when (e.StatusCode == StatusCode.Cancelled)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    throw new EtcdException("The candidate's lease was lost while it waited to lead.", StatusCode.NotFound);
                }
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
        try
        {
            var response = await etcd.CallAsync("election leader", (deadline, ct) =>
                etcd.Connection.ElectionClient.LeaderAsync(new LeaderRequest { Name = ByteString.CopyFromUtf8(Name) }, deadline: deadline, cancellationToken: ct).ResponseAsync, cancellationToken);
            return response.Kv?.Value.ToStringUtf8();
        }
        catch (EtcdException e) when (e.Code == StatusCode.NotFound || e.Message.Contains("no leader", StringComparison.Ordinal))
        {
            return null;
        }
    }

    /// <summary>
    /// Keeps the lease alive at a third of its TTL. Leadership counts as lost when etcd says the lease
    /// is gone, or when no renewal has succeeded for a whole TTL since the last one was sent — by
    /// then the lease may have expired on the server and another candidate may lead.
    /// </summary>
    private sealed class Leadership(EtcdConnection etcd, ILogger logger, string candidateId, long leaseId) : ILeadership
    {
        private readonly CancellationTokenSource lost = new();
        private readonly CancellationTokenSource stop = new();
        private LeaderKey? leader;
        private Task keepAlive = Task.CompletedTask;
        // When the last renewal that etcd confirmed was sent (a monotonic timestamp): the lease lives at least a TTL from then.
        private long confirmedSentAt = System.Diagnostics.Stopwatch.GetTimestamp();

        public string CandidateId { get; } = candidateId;
        public long Epoch { get; private set; }
        public KvCompare Fence { get; private set; } = null!;
        public CancellationToken Lost => lost.Token;

        // Renewals go out every third of the TTL: two missed in a row (or a pause as long) leave too little to be sure.
        public bool IsConfirmed => !lost.IsCancellationRequested
            && System.Diagnostics.Stopwatch.GetElapsedTime(Volatile.Read(ref confirmedSentAt)) < etcd.Options.LeaseTtl * 2 / 3;

        public void KeepLeaseAlive() => keepAlive = KeepAliveAsync();

        public void Lead(LeaderKey key)
        {
            leader = key;
            // Rev is the leader key's create revision: the fencing token.
            Epoch = key.Rev;
            Fence = new KvCompare(key.Key.ToStringUtf8(), KvCompareTarget.CreateRevision, key.Rev);
        }

        public async Task ResignAsync(CancellationToken cancellationToken)
        {
            await stop.CancelAsync();
            await lost.CancelAsync();
            if (leader is not null)
            {
                await etcd.CallAsync("election resign", (deadline, ct) =>
                    etcd.Connection.ElectionClient.ResignAsync(new ResignRequest { Leader = leader }, deadline: deadline, cancellationToken: ct).ResponseAsync, cancellationToken);
            }
            await etcd.RevokeLeaseAsync(leaseId, cancellationToken);
        }

        public async ValueTask DisposeAsync()
        {
            await stop.CancelAsync();
            await lost.CancelAsync();
            try
            {
                await keepAlive;
                await etcd.RevokeLeaseAsync(leaseId, CancellationToken.None);
            }
            catch (Exception e) when (e is EtcdException or BrokerUnavailableException)
            {
                // etcd unreachable: the lease expires on its own.
            }
        }

        private async Task KeepAliveAsync()
        {
            var ttl = etcd.Options.LeaseTtl;
            var lastSent = DateTime.UtcNow;
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    await Task.Delay(ttl / 3, stop.Token);
                    var sent = DateTime.UtcNow;
                    var sentAt = System.Diagnostics.Stopwatch.GetTimestamp();
                    using var attempt = CancellationTokenSource.CreateLinkedTokenSource(stop.Token);
                    var budget = lastSent + ttl - sent;
                    attempt.CancelAfter(budget > TimeSpan.FromMilliseconds(1) ? budget : TimeSpan.FromMilliseconds(1));
                    var remaining = await etcd.KeepAliveOnceAsync(leaseId, attempt.Token);
                    if (remaining <= 0)
                    {
                        LogLeaseGone(logger, CandidateId, leaseId);
                        await lost.CancelAsync();
                        return;
                    }
                    lastSent = sent;
                    Volatile.Write(ref confirmedSentAt, sentAt);
                }
                catch (OperationCanceledException) when (stop.IsCancellationRequested)
                {
                    return;
                }
                catch (Exception e) when (e is EtcdException or BrokerUnavailableException or OperationCanceledException or RpcException)
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
