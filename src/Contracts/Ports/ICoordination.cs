namespace Queue.Contracts.Ports;

/// <summary>
/// A small, strongly consistent key-value store with revisions and multi-key transactions
/// (etcd's model). Values are small documents; no input or output data lives here.
/// </summary>
public interface IKeyValueStore
{
    Task<KvEntry?> GetAsync(string key, CancellationToken cancellationToken);

    /// <summary>All entries whose keys start with <paramref name="prefix"/>, in key order.</summary>
    Task<IReadOnlyList<KvEntry>> ListAsync(string prefix, CancellationToken cancellationToken);

    /// <summary>
    /// Applies <paramref name="writes"/> atomically if every compare holds; returns false (and writes
    /// nothing) otherwise. Leader-fenced writes pass <see cref="ILeadership.Fence"/> as one compare.
    /// </summary>
    Task<bool> TransactAsync(IReadOnlyList<KvCompare> compares, IReadOnlyList<KvWrite> writes, CancellationToken cancellationToken);

    /// <summary>
    /// Writes a key tied to a lease of <paramref name="ttl"/>: unless written again within that time
    /// (a heartbeat), the key disappears, as it does when its writer dies.
    /// </summary>
    Task PutLeasedAsync(string key, byte[] value, TimeSpan ttl, CancellationToken cancellationToken);

    /// <summary>
    /// Every change under <paramref name="prefix"/> from now on, in revision order, until cancelled. A
    /// broken connection is resumed from the last change seen, so none is lost; callers still resync
    /// now and then, as a watch is a hint to look, not the state itself.
    /// </summary>
    IAsyncEnumerable<KvChange> WatchAsync(string prefix, CancellationToken cancellationToken);

    /// <summary>The store's current revision: every committed write moves it on.</summary>
    Task<long> RevisionAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Forgets the values superseded or deleted before <paramref name="revision"/> (etcd's compaction), so
    /// that the store's space holds the live keys and recent history only; a watch resumed from before
    /// it fails (callers start a new one and resync). Compacting again to the same or an earlier revision
    /// does nothing. A store that keeps no history (the embedded one's log compacts itself) does nothing.
    /// </summary>
    Task CompactAsync(long revision, CancellationToken cancellationToken);
}

/// <summary>One change seen by a watch: a put (<see cref="Value"/> set) or a delete.</summary>
public sealed record KvChange(string Key, byte[]? Value, long Revision);

/// <summary>A stored value with etcd-style revisions.</summary>
public sealed record KvEntry(string Key, byte[] Value, long CreateRevision, long ModRevision);

/// <summary>
/// A transaction guard. <see cref="CreateRevision"/> or <see cref="ModRevision"/> must equal the
/// stored one; 0 means "the key must not exist".
/// </summary>
public sealed record KvCompare(string Key, KvCompareTarget Target, long Revision)
{
    public static KvCompare Absent(string key) => new(key, KvCompareTarget.CreateRevision, 0);

    public static KvCompare Unchanged(KvEntry entry) => new(entry.Key, KvCompareTarget.ModRevision, entry.ModRevision);
}

public enum KvCompareTarget
{
    CreateRevision,
    ModRevision,
}

/// <summary>A put (<see cref="Value"/> set) or a delete (<see cref="Value"/> null) inside a transaction.</summary>
public sealed record KvWrite(string Key, byte[]? Value)
{
    public static KvWrite Delete(string key) => new(key, null);
}

/// <summary>Leader election among coordinators.</summary>
public interface ILeaderElection
{
    /// <summary>Blocks until this candidate leads, then returns its leadership.</summary>
    Task<ILeadership> CampaignAsync(string candidateId, CancellationToken cancellationToken);

    /// <summary>The current leader's candidate id, if any.</summary>
    Task<string?> GetLeaderAsync(CancellationToken cancellationToken);
}

/// <summary>
/// Held while this process leads. Its <see cref="Fence"/> guards every state write, so a leader that
/// lost its lease (even one that does not know it yet) cannot change state.
/// </summary>
public interface ILeadership : IAsyncDisposable
{
    string CandidateId { get; }

    /// <summary>The fencing token: the revision at which this leadership began. Task messages carry it as their epoch.</summary>
    long Epoch { get; }

    /// <summary>The compare that holds only while this leadership is current.</summary>
    KvCompare Fence { get; }

    /// <summary>Cancelled as soon as leadership is known to be lost.</summary>
    CancellationToken Lost { get; }

    /// <summary>
    /// False once this leadership may be gone without this process knowing yet: the store has not
    /// confirmed it for most of its lease (a frozen process, a GC pause, a partition). A leader stops
    /// taking work it might not be able to apply as soon as this turns false, before <see cref="Lost"/>.
    /// </summary>
    bool IsConfirmed => !Lost.IsCancellationRequested;

    /// <summary>Gives leadership up so another candidate can lead at once.</summary>
    Task ResignAsync(CancellationToken cancellationToken);
}
