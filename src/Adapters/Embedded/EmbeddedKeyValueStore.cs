using Queue.Contracts.Ports;

namespace Queue.Adapters.Embedded;

/// <summary>An in-process key-value store with etcd's revision model: one global revision, bumped per transaction.</summary>
public sealed class InMemoryKeyValueStore : IKeyValueStore
{
    private readonly Lock gate = new();
    private readonly SortedDictionary<string, KvEntry> entries = new(StringComparer.Ordinal);
    private long revision;

    /// <summary>Raised after every applied transaction, outside the lock.</summary>
    public event Action? Changed;

    public Task<KvEntry?> GetAsync(string key, CancellationToken cancellationToken)
    {
        lock (gate)
        {
            return Task.FromResult(entries.GetValueOrDefault(key));
        }
    }

    public Task<IReadOnlyList<KvEntry>> ListAsync(string prefix, CancellationToken cancellationToken)
    {
        var found = new List<KvEntry>();
        lock (gate)
        {
            foreach (var (key, entry) in entries)
            {
                if (key.StartsWith(prefix, StringComparison.Ordinal))
                {
                    found.Add(entry);
                }
                else if (string.CompareOrdinal(key, prefix) > 0)
                {
                    break;
                }
            }
        }
        return Task.FromResult<IReadOnlyList<KvEntry>>(found);
    }

    public Task<bool> TransactAsync(IReadOnlyList<KvCompare> compares, IReadOnlyList<KvWrite> writes, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        lock (gate)
        {
            foreach (var compare in compares)
            {
                entries.TryGetValue(compare.Key, out var current);
                var actual = current is null ? 0 : compare.Target == KvCompareTarget.CreateRevision ? current.CreateRevision : current.ModRevision;
                if (actual != compare.Revision)
                {
                    return Task.FromResult(false);
                }
            }
            revision++;
            foreach (var write in writes)
            {
                if (write.Value is null)
                {
                    entries.Remove(write.Key);
                }
                else
                {
                    var created = entries.TryGetValue(write.Key, out var current) ? current.CreateRevision : revision;
                    entries[write.Key] = new KvEntry(write.Key, write.Value, created, revision);
                }
            }
        }
        Changed?.Invoke();
        return Task.FromResult(true);
    }
}
