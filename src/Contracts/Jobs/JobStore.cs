using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Queue.Contracts.Ports;

namespace Queue.Contracts.Jobs;

/// <summary>
/// Job state in the key-value store. Key layout:
/// <list type="bullet">
/// <item><c>/queue/jobs/{id}/spec</c> — <see cref="JobSpec"/>, written once by the ingress.</item>
/// <item><c>/queue/jobs/{id}/status</c> — <see cref="JobStatus"/>, written by the leader (fenced).</item>
/// <item><c>/queue/jobs/{id}/cancel</c> — present when a user asked to cancel.</item>
/// <item><c>/queue/tasks/{id}/{m-00000|r-00000}</c> — <see cref="TaskRecord"/>, written by the leader (fenced).</item>
/// <item><c>/queue/active/{id}</c> — present while the job has not ended, so the leader's scans read active jobs only.</item>
/// <item><c>/queue/workers/{worker}</c> — <see cref="WorkerHeartbeat"/>, leased: gone when the worker is.</item>
/// </list>
/// Tasks live under their own prefix so listing jobs never reads thousands of task records.
/// </summary>
public sealed class JobStore(IKeyValueStore kv)
{
    public const string JobsPrefix = "/queue/jobs/";
    public const string TasksPrefix = "/queue/tasks/";
    public const string ActivePrefix = "/queue/active/";
    public const string WorkersPrefix = "/queue/workers/";

    /// <summary>Writes per transaction; etcd refuses more than 128 operations in one by default.</summary>
    public const int MaxWritesPerTransaction = 100;

    public IKeyValueStore Store => kv;

    public static string SpecKey(string jobId) => $"{JobsPrefix}{jobId}/spec";
    public static string StatusKey(string jobId) => $"{JobsPrefix}{jobId}/status";
    public static string CancelKey(string jobId) => $"{JobsPrefix}{jobId}/cancel";
    public static string ActiveKey(string jobId) => $"{ActivePrefix}{jobId}";
    public static string WorkerKey(string workerId) => $"{WorkersPrefix}{workerId}";
    public static string TaskKey(string jobId, TaskPhase phase, int index) => $"{TasksPrefix}{jobId}/{TaskNames.TaskId(phase, index)}";

    public static byte[] Serialize<T>(T value, JsonTypeInfo<T> type) => JsonSerializer.SerializeToUtf8Bytes(value, type);

    public static T Deserialize<T>(byte[] value, JsonTypeInfo<T> type) =>
        JsonSerializer.Deserialize(value, type) ?? throw new InvalidDataException($"Stored {typeof(T).Name} is null.");

    /// <summary>Stores a new job as Pending. Returns false if the id is taken.</summary>
    public Task<bool> CreateAsync(JobSpec spec, CancellationToken cancellationToken)
    {
        var status = new JobStatus { Id = spec.Id, State = JobState.Pending, SubmittedAt = spec.SubmittedAt, Weight = spec.Weight, TraceId = QueueTracing.TraceId(spec.TraceParent) };
        return kv.TransactAsync(
            [KvCompare.Absent(SpecKey(spec.Id))],
            [
                new KvWrite(SpecKey(spec.Id), Serialize(spec, QueueJsonContext.Default.JobSpec)),
                new KvWrite(StatusKey(spec.Id), Serialize(status, QueueJsonContext.Default.JobStatus)),
                new KvWrite(ActiveKey(spec.Id), []),
            ],
            cancellationToken);
    }

    /// <summary>Records a cancel request; the leader acts on it. Returns false for an unknown job.</summary>
    public async Task<bool> RequestCancelAsync(string jobId, CancellationToken cancellationToken)
    {
        if (await kv.GetAsync(SpecKey(jobId), cancellationToken) is null)
        {
            return false;
        }
        // Touching the job's active marker (while it has one) wakes the leader's watch on the active prefix.
        while (await kv.GetAsync(ActiveKey(jobId), cancellationToken) is { } active)
        {
            if (await kv.TransactAsync([KvCompare.Unchanged(active)], [new KvWrite(CancelKey(jobId), [1]), new KvWrite(ActiveKey(jobId), active.Value)], cancellationToken))
            {
                return true;
            }
        }
        await kv.TransactAsync([KvCompare.Absent(CancelKey(jobId))], [new KvWrite(CancelKey(jobId), [1])], cancellationToken);
        return true;
    }

    public async Task<bool> IsCancelRequestedAsync(string jobId, CancellationToken cancellationToken) =>
        await kv.GetAsync(CancelKey(jobId), cancellationToken) is not null;

    public async Task<JobView?> GetAsync(string jobId, CancellationToken cancellationToken)
    {
        var entries = ToEntries(await kv.ListAsync($"{JobsPrefix}{jobId}/", cancellationToken));
        return entries.Count == 0 ? null : new JobView(entries[0].Spec, entries[0].Status);
    }

    /// <summary>Every job, newest first.</summary>
    public async Task<List<JobView>> ListAsync(CancellationToken cancellationToken)
    {
        var entries = await ListEntriesAsync(cancellationToken);
        var views = new List<JobView>(entries.Count);
        for (var i = entries.Count - 1; i >= 0; i--)
        {
            views.Add(new JobView(entries[i].Spec, entries[i].Status));
        }
        return views;
    }

    /// <summary>The jobs that have not ended, with whether a cancel was requested: a read per active job, none for finished ones.</summary>
    public async Task<List<JobEntry>> ListActiveEntriesAsync(CancellationToken cancellationToken)
    {
        var entries = new List<JobEntry>();
        foreach (var marker in await kv.ListAsync(ActivePrefix, cancellationToken))
        {
            entries.AddRange(ToEntries(await kv.ListAsync($"{JobsPrefix}{marker.Key[ActivePrefix.Length..]}/", cancellationToken)));
        }
        return entries;
    }

    /// <summary>Every job with whether a cancel was requested, oldest first.</summary>
    public async Task<List<JobEntry>> ListEntriesAsync(CancellationToken cancellationToken) =>
        ToEntries(await kv.ListAsync(JobsPrefix, cancellationToken));

    public async Task<TaskRecord?> GetTaskAsync(string jobId, TaskPhase phase, int index, CancellationToken cancellationToken) =>
        await kv.GetAsync(TaskKey(jobId, phase, index), cancellationToken) is { } entry ? Deserialize(entry.Value, QueueJsonContext.Default.TaskRecord) : null;

    public async Task<List<TaskRecord>> GetTasksAsync(string jobId, CancellationToken cancellationToken)
    {
        var entries = await kv.ListAsync($"{TasksPrefix}{jobId}/", cancellationToken);
        var tasks = new List<TaskRecord>(entries.Count);
        foreach (var entry in entries)
        {
            tasks.Add(Deserialize(entry.Value, QueueJsonContext.Default.TaskRecord));
        }
        return tasks;
    }

    /// <summary>Deletes a job's task records, <see cref="MaxWritesPerTransaction"/> to a transaction; returns how many there were.</summary>
    public async Task<int> DeleteTasksAsync(string jobId, CancellationToken cancellationToken)
    {
        var entries = await kv.ListAsync($"{TasksPrefix}{jobId}/", cancellationToken);
        for (var start = 0; start < entries.Count; start += MaxWritesPerTransaction)
        {
            var writes = new List<KvWrite>(Math.Min(MaxWritesPerTransaction, entries.Count - start));
            for (var i = start; i < entries.Count && i < start + MaxWritesPerTransaction; i++)
            {
                writes.Add(KvWrite.Delete(entries[i].Key));
            }
            await kv.TransactAsync([], writes, cancellationToken);
        }
        return entries.Count;
    }

    /// <summary>Deletes an ended job's records: its tasks, then its spec, status and cancel marker (the job is unknown after).</summary>
    public async Task DeleteJobAsync(string jobId, CancellationToken cancellationToken)
    {
        await DeleteTasksAsync(jobId, cancellationToken);
        await kv.TransactAsync([], [KvWrite.Delete(CancelKey(jobId)), KvWrite.Delete(StatusKey(jobId)), KvWrite.Delete(SpecKey(jobId))], cancellationToken);
    }

    /// <summary>Writes a worker's heartbeat; it lapses unless written again within <paramref name="ttl"/>.</summary>
    public Task HeartbeatAsync(WorkerHeartbeat heartbeat, TimeSpan ttl, CancellationToken cancellationToken) =>
        kv.PutLeasedAsync(WorkerKey(heartbeat.Worker), Serialize(heartbeat, QueueJsonContext.Default.WorkerHeartbeat), ttl, cancellationToken);

    public Task RemoveWorkerAsync(string workerId, CancellationToken cancellationToken) =>
        kv.TransactAsync([], [KvWrite.Delete(WorkerKey(workerId))], cancellationToken);

    /// <summary>The workers alive now (their heartbeat leases have not lapsed), by name.</summary>
    public async Task<List<WorkerHeartbeat>> ListWorkersAsync(CancellationToken cancellationToken)
    {
        var entries = await kv.ListAsync(WorkersPrefix, cancellationToken);
        var workers = new List<WorkerHeartbeat>(entries.Count);
        foreach (var entry in entries)
        {
            workers.Add(Deserialize(entry.Value, QueueJsonContext.Default.WorkerHeartbeat));
        }
        return workers;
    }

    private static List<JobEntry> ToEntries(IReadOnlyList<KvEntry> entries)
    {
        // Entries arrive in key order, so a job's cancel, spec and status keys are adjacent.
        var views = new List<JobEntry>();
        JobSpec? spec = null;
        string? cancelled = null;
        foreach (var entry in entries)
        {
            if (entry.Key.EndsWith("/cancel", StringComparison.Ordinal))
            {
                cancelled = entry.Key;
            }
            else if (entry.Key.EndsWith("/spec", StringComparison.Ordinal))
            {
                spec = Deserialize(entry.Value, QueueJsonContext.Default.JobSpec);
            }
            else if (entry.Key.EndsWith("/status", StringComparison.Ordinal) && spec is not null)
            {
                var status = Deserialize(entry.Value, QueueJsonContext.Default.JobStatus);
                if (status.Id == spec.Id)
                {
                    views.Add(new JobEntry(spec, status, cancelled == CancelKey(spec.Id)));
                }
                spec = null;
                cancelled = null;
            }
        }
        return views;
    }
}

/// <summary>A job as the leader scans it.</summary>
public sealed record JobEntry(JobSpec Spec, JobStatus Status, bool CancelRequested);
