using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;
using Queue.Contracts.Ports;

namespace Queue.Adapters.Embedded;

/// <summary>
/// The embedded key-value store, with etcd's revision model: one global revision, bumped per
/// transaction. Given a log path it is durable: every transaction is appended to the log and
/// fsynced before it is acknowledged, the log is replayed on open (a torn last record from a crash
/// is cut off) and rewritten as a snapshot once mostly dead. Leased keys (heartbeats, election
/// candidates) live in memory only, as etcd's leased keys die with their owner.
/// </summary>
public sealed class EmbeddedKeyValueStore : IKeyValueStore, IDisposable
{
    private const byte OpDelete = 0;
    private const byte OpPut = 1;
    private const byte OpSnapshotPut = 2;
    private const int HeaderBytes = 8;
    private const long CompactAtBytes = 8 << 20;

    private readonly Lock gate = new();
    private readonly Dictionary<string, KvEntry> entries = new(StringComparer.Ordinal);
    // The keys in order, for prefix listings that start at the prefix (O(log n)) instead of scanning from
    // the first key: the store keeps every finished job, and the ingress and the scheduler list often.
    private readonly SortedSet<string> keys = new(StringComparer.Ordinal);
    private readonly Dictionary<string, long> leaseExpiry = new(StringComparer.Ordinal);
    private readonly List<(string Prefix, System.Threading.Channels.Channel<KvChange> Changes)> watchers = [];
    private readonly TimeProvider time;
    private readonly string? logPath;
    private FileStream? log;
    private long liveBytes;
    private long revision;

    /// <summary>An in-memory store (tests, or when no data folder is configured).</summary>
    public EmbeddedKeyValueStore()
        : this(null, TimeProvider.System)
    {
    }

    /// <summary>A store persisted to <paramref name="logPath"/> (created if missing), or in memory when null.</summary>
    public EmbeddedKeyValueStore(string? logPath, TimeProvider time)
    {
        this.time = time;
        if (logPath is null)
        {
            return;
        }
        this.logPath = Path.GetFullPath(logPath);
        Directory.CreateDirectory(Path.GetDirectoryName(this.logPath)!);
        try
        {
            // FileShare.None takes an exclusive lock: two engines on one data folder would interleave their logs.
            log = new FileStream(this.logPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1 << 16);
        }
        catch (IOException e)
        {
            throw new InvalidOperationException($"The coordination log {this.logPath} is in use by another process; one embedded engine per data folder.", e);
        }
        Replay(log);
    }

    /// <summary>Raised after every applied transaction, outside the lock.</summary>
    public event Action? Changed;

    /// <summary>The log file, when the store is durable.</summary>
    public string? LogPath => logPath;

    public Task<long> RevisionAsync(CancellationToken cancellationToken)
    {
        lock (gate)
        {
            return Task.FromResult(revision);
        }
    }

    /// <summary>Nothing to do: only live values are kept, and the log is rewritten from them past its threshold.</summary>
    public Task CompactAsync(long revision, CancellationToken cancellationToken) => Task.CompletedTask;

    public Task<KvEntry?> GetAsync(string key, CancellationToken cancellationToken)
    {
        lock (gate)
        {
            return Task.FromResult(IsLive(key) ? entries.GetValueOrDefault(key) : null);
        }
    }

    public Task<IReadOnlyList<KvEntry>> ListAsync(string prefix, CancellationToken cancellationToken)
    {
        var found = new List<KvEntry>();
        lock (gate)
        {
            if (keys.Count == 0 || string.CompareOrdinal(prefix, keys.Max) > 0)
            {
                return Task.FromResult<IReadOnlyList<KvEntry>>(found);
            }
            List<string>? expired = null;
            foreach (var key in keys.GetViewBetween(prefix, keys.Max!))
            {
                if (!key.StartsWith(prefix, StringComparison.Ordinal))
                {
                    break;
                }
                if (leaseExpiry.TryGetValue(key, out var expiry) && expiry <= time.GetTimestamp())
                {
                    // Dropped after the walk: the set cannot change under its own enumerator.
                    (expired ??= []).Add(key);
                    continue;
                }
                found.Add(entries[key]);
            }
            foreach (var key in expired ?? [])
            {
                IsLive(key);
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
                var current = IsLive(compare.Key) ? entries.GetValueOrDefault(compare.Key) : null;
                var actual = current is null ? 0 : compare.Target == KvCompareTarget.CreateRevision ? current.CreateRevision : current.ModRevision;
                if (actual != compare.Revision)
                {
                    return Task.FromResult(false);
                }
            }
            // Written (and fsynced) before it is applied: an acknowledged transaction survives a crash.
            Append(revision + 1, writes, durable: true);
            revision++;
            foreach (var write in writes)
            {
                leaseExpiry.Remove(write.Key);
                Apply(write.Key, write.Value, revision);
                Notify(write.Key, write.Value, revision);
            }
        }
        Changed?.Invoke();
        return Task.FromResult(true);
    }

    public Task PutLeasedAsync(string key, byte[] value, TimeSpan ttl, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        lock (gate)
        {
            // Only the revision is logged (without fsync), so revisions and epochs stay increasing across restarts.
            Append(revision + 1, [], durable: false);
            revision++;
            IsLive(key);
            Apply(key, value, revision);
            Notify(key, value, revision);
            leaseExpiry[key] = ttl == Timeout.InfiniteTimeSpan ? long.MaxValue : time.GetTimestamp() + (long)(ttl.TotalSeconds * time.TimestampFrequency);
        }
        Changed?.Invoke();
        return Task.CompletedTask;
    }

    public async IAsyncEnumerable<KvChange> WatchAsync(string prefix, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var changes = System.Threading.Channels.Channel.CreateUnbounded<KvChange>(new() { SingleReader = true });
        var watcher = (prefix, changes);
        lock (gate)
        {
            watchers.Add(watcher);
        }
        try
        {
            await foreach (var change in changes.Reader.ReadAllAsync(cancellationToken))
            {
                yield return change;
            }
        }
        finally
        {
            lock (gate)
            {
                watchers.Remove(watcher);
            }
        }
    }

    public void Dispose()
    {
        lock (gate)
        {
            log?.Dispose();
            log = null;
        }
    }

    /// <summary>Hands a change to every watcher of a prefix holding the key (under the lock, so in revision order).</summary>
    private void Notify(string key, byte[]? value, long atRevision)
    {
        foreach (var (prefix, changes) in watchers)
        {
            if (key.StartsWith(prefix, StringComparison.Ordinal))
            {
                changes.Writer.TryWrite(new KvChange(key, value, atRevision));
            }
        }
    }

    /// <summary>False (and the key dropped) when it was leased and its lease has run out.</summary>
    private bool IsLive(string key)
    {
        if (!leaseExpiry.TryGetValue(key, out var expiry) || expiry > time.GetTimestamp())
        {
            return true;
        }
        leaseExpiry.Remove(key);
        Remove(key);
        return false;
    }

    private void Apply(string key, byte[]? value, long atRevision)
    {
        if (value is null)
        {
            if (Remove(key) is { } old)
            {
                liveBytes -= EntryBytes(old);
            }
            return;
        }
        var created = atRevision;
        if (entries.TryGetValue(key, out var current))
        {
            created = current.CreateRevision;
            liveBytes -= EntryBytes(current);
        }
        var entry = new KvEntry(key, value, created, atRevision);
        Put(entry);
        liveBytes += EntryBytes(entry);
    }

    private void Put(KvEntry entry)
    {
        if (entries.TryAdd(entry.Key, entry))
        {
            keys.Add(entry.Key);
        }
        else
        {
            entries[entry.Key] = entry;
        }
    }

    private KvEntry? Remove(string key)
    {
        if (!entries.Remove(key, out var old))
        {
            return null;
        }
        keys.Remove(key);
        return old;
    }

    private static long EntryBytes(KvEntry entry) => entry.Key.Length + entry.Value.Length + 32;

    private void Append(long atRevision, IReadOnlyList<KvWrite> writes, bool durable)
    {
        if (log is null)
        {
            return;
        }
        var payload = new MemoryStream();
        using (var writer = new BinaryWriter(payload, Encoding.UTF8, leaveOpen: true))
        {
            writer.Write(atRevision);
            writer.Write(writes.Count);
            foreach (var write in writes)
            {
                writer.Write(write.Value is null ? OpDelete : OpPut);
                WriteBytes(writer, Encoding.UTF8.GetBytes(write.Key));
                if (write.Value is not null)
                {
                    WriteBytes(writer, write.Value);
                }
            }
        }
        WriteRecord(log, payload);
        if (durable)
        {
            log.Flush(flushToDisk: true);
            if (log.Length > CompactAtBytes && log.Length > 4 * liveBytes)
            {
                Compact();
            }
        }
        else
        {
            log.Flush(flushToDisk: false);
        }
    }

    private static void WriteBytes(BinaryWriter writer, byte[] bytes)
    {
        writer.Write(bytes.Length);
        writer.Write(bytes);
    }

    private static void WriteRecord(Stream stream, MemoryStream payload)
    {
        var body = payload.GetBuffer().AsSpan(0, (int)payload.Length);
        Span<byte> header = stackalloc byte[HeaderBytes];
        BinaryPrimitives.WriteInt32LittleEndian(header, body.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(header[4..], Crc32.HashToUInt32(body));
        stream.Write(header);
        stream.Write(body);
    }

    /// <summary>Rewrites the log as one snapshot record of the live durable entries, then swaps it in.</summary>
    private void Compact()
    {
        var temp = logPath + ".compact";
        using (var snapshot = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16))
        {
            var payload = new MemoryStream();
            using (var writer = new BinaryWriter(payload, Encoding.UTF8, leaveOpen: true))
            {
                var durable = new List<KvEntry>(entries.Count);
                foreach (var (key, entry) in entries)
                {
                    if (!leaseExpiry.ContainsKey(key))
                    {
                        durable.Add(entry);
                    }
                }
                writer.Write(revision);
                writer.Write(durable.Count);
                foreach (var entry in durable)
                {
                    writer.Write(OpSnapshotPut);
                    WriteBytes(writer, Encoding.UTF8.GetBytes(entry.Key));
                    WriteBytes(writer, entry.Value);
                    writer.Write(entry.CreateRevision);
                    writer.Write(entry.ModRevision);
                }
            }
            WriteRecord(snapshot, payload);
            snapshot.Flush(flushToDisk: true);
        }
        log!.Dispose();
        // rename(2) replaces the log atomically: a crash leaves either the old log or the snapshot.
        File.Move(temp, logPath!, overwrite: true);
        log = new FileStream(logPath!, FileMode.Open, FileAccess.ReadWrite, FileShare.None, 1 << 16);
        log.Seek(0, SeekOrigin.End);
    }

    private void Replay(FileStream file)
    {
        var header = new byte[HeaderBytes];
        long good = 0;
        while (true)
        {
            if (file.ReadAtLeast(header, HeaderBytes, throwOnEndOfStream: false) < HeaderBytes)
            {
                break;
            }
            var length = BinaryPrimitives.ReadInt32LittleEndian(header);
            var crc = BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(4));
            if (length < 12 || length > file.Length - good - HeaderBytes)
            {
                break;
            }
            var body = new byte[length];
            if (file.ReadAtLeast(body, length, throwOnEndOfStream: false) < length || Crc32.HashToUInt32(body) != crc)
            {
                break;
            }
            ApplyRecord(body);
            good = file.Position;
        }
        // Whatever follows the last whole record is a write torn by a crash: it was never acknowledged.
        file.SetLength(good);
        file.Seek(good, SeekOrigin.Begin);
    }

    private void ApplyRecord(byte[] body)
    {
        using var reader = new BinaryReader(new MemoryStream(body), Encoding.UTF8);
        var atRevision = reader.ReadInt64();
        var count = reader.ReadInt32();
        for (var i = 0; i < count; i++)
        {
            var op = reader.ReadByte();
            var key = Encoding.UTF8.GetString(reader.ReadBytes(reader.ReadInt32()));
            switch (op)
            {
                case OpDelete:
                    Apply(key, null, atRevision);
                    break;
                case OpPut:
                    Apply(key, reader.ReadBytes(reader.ReadInt32()), atRevision);
                    break;
                case OpSnapshotPut:
                    var value = reader.ReadBytes(reader.ReadInt32());
                    var entry = new KvEntry(key, value, reader.ReadInt64(), reader.ReadInt64());
                    Put(entry);
                    liveBytes += EntryBytes(entry);
                    break;
                default:
                    throw new InvalidDataException($"Unknown operation {op} in the coordination log.");
            }
        }
        revision = Math.Max(revision, atRevision);
    }
}
