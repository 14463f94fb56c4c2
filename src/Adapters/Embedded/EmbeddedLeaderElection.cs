using System.Text;
using Queue.Contracts.Ports;

namespace Queue.Adapters.Embedded;

/// <summary>
/// Leader election over the in-process store, with etcd's recipe: each candidate writes a key under
/// the election prefix and the one with the lowest create revision leads. The fence is that key's
/// create revision, so a deleted (expired) key makes every later fenced write fail.
/// </summary>
public sealed class EmbeddedLeaderElection(EmbeddedKeyValueStore store) : ILeaderElection
{
    public const string Prefix = "/queue/election/";

    public async Task<ILeadership> CampaignAsync(string candidateId, CancellationToken cancellationToken)
    {
        var key = Prefix + Guid.NewGuid().ToString("N");
        // A candidate lives as long as this process, and not in the durable log: after a restart nobody leads.
        await store.PutLeasedAsync(key, Encoding.UTF8.GetBytes(candidateId), Timeout.InfiniteTimeSpan, cancellationToken);
        var mine = await store.GetAsync(key, cancellationToken) ?? throw new InvalidOperationException("Candidate key vanished.");
        try
        {
            while (true)
            {
                var changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                void OnChanged() => changed.TrySetResult();
                store.Changed += OnChanged;
                try
                {
                    var candidates = await store.ListAsync(Prefix, cancellationToken);
                    var lowest = candidates.MinBy(static c => c.CreateRevision);
                    if (lowest?.Key == key)
                    {
                        return new Leadership(store, candidateId, mine);
                    }
                    await changed.Task.WaitAsync(cancellationToken);
                }
                finally
                {
                    store.Changed -= OnChanged;
                }
            }
        }
        catch (OperationCanceledException)
        {
            await store.TransactAsync([], [KvWrite.Delete(key)], CancellationToken.None);
            throw;
        }
    }

    public async Task<string?> GetLeaderAsync(CancellationToken cancellationToken)
    {
        var candidates = await store.ListAsync(Prefix, cancellationToken);
        var lowest = candidates.MinBy(static c => c.CreateRevision);
        return lowest is null ? null : Encoding.UTF8.GetString(lowest.Value);
    }

    /// <summary>Deletes a leader's key as if its lease had expired (the embedded engine has no leases to lose).</summary>
    public async Task ExpireAsync(ILeadership leadership, CancellationToken cancellationToken) =>
        await store.TransactAsync([], [KvWrite.Delete(leadership.Fence.Key)], cancellationToken);

    private sealed class Leadership : ILeadership
    {
        private readonly EmbeddedKeyValueStore store;
        private readonly CancellationTokenSource lost = new();

        public Leadership(EmbeddedKeyValueStore store, string candidateId, KvEntry key)
        {
            this.store = store;
            CandidateId = candidateId;
            Epoch = key.CreateRevision;
            Fence = new KvCompare(key.Key, KvCompareTarget.CreateRevision, key.CreateRevision);
            store.Changed += OnChanged;
            OnChanged();
        }

        public string CandidateId { get; }
        public long Epoch { get; }
        public KvCompare Fence { get; }
        public CancellationToken Lost => lost.Token;

        public async Task ResignAsync(CancellationToken cancellationToken)
        {
            await store.TransactAsync([Fence], [KvWrite.Delete(Fence.Key)], cancellationToken);
            OnChanged();
        }

        public async ValueTask DisposeAsync()
        {
            await ResignAsync(CancellationToken.None);
            store.Changed -= OnChanged;
            lost.Dispose();
        }

        private void OnChanged()
        {
            if (lost.IsCancellationRequested)
            {
                return;
            }
            var current = store.GetAsync(Fence.Key, CancellationToken.None).Result;
            if (current is null || current.CreateRevision != Fence.Revision)
            {
                lost.Cancel();
            }
        }
    }
}
