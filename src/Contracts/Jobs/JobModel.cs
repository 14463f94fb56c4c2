using System.Text.Json.Serialization;

namespace Queue.Contracts.Jobs;

[JsonConverter(typeof(JsonStringEnumConverter<JobState>))]
public enum JobState
{
    Pending,
    Mapping,
    Reducing,
    Succeeded,
    Failed,
    Cancelled,
}

[JsonConverter(typeof(JsonStringEnumConverter<TaskPhase>))]
public enum TaskPhase
{
    Map,
    Reduce,
    /// <summary>A range-partitioned job's one sampling task, before its maps: keys drawn from splits across the input.</summary>
    Sample,
}

[JsonConverter(typeof(JsonStringEnumConverter<TaskState>))]
public enum TaskState
{
    /// <summary>Recorded, message not yet sent.</summary>
    Planned,
    Queued,
    Running,
    Done,
    Failed,
}

/// <summary>What a user asked for, validated and normalised. Written once by the ingress.</summary>
public sealed record JobSpec
{
    public required string Id { get; init; }
    public required string App { get; init; }
    /// <summary>Input container.</summary>
    public required string InputContainer { get; init; }
    /// <summary>Blob-name prefix inside the input container ("" for all).</summary>
    public string InputPrefix { get; init; } = "";
    /// <summary>Target number of map tasks; ignored when <see cref="SplitSizeBytes"/> is set.</summary>
    public int? MapTasks { get; init; }
    public long? SplitSizeBytes { get; init; }
    public required int ReduceTasks { get; init; }
    public Dictionary<string, string> Args { get; init; } = [];
    public int MaxAttempts { get; init; } = 4;
    public TimeSpan TaskTimeout { get; init; } = TimeSpan.FromMinutes(10);
    public DateTimeOffset SubmittedAt { get; init; }
    /// <summary>The principal that submitted it (none when the API is not protected): it, and admins, may see and cancel it.</summary>
    public string? Owner { get; init; }
    /// <summary>Streaming jobs (<see cref="App"/> is <c>streaming</c>): the mapper script in the scripts container.</summary>
    public string? Mapper { get; init; }
    /// <summary>Streaming jobs: the reducer script; none means the identity reducer.</summary>
    public string? Reducer { get; init; }
    /// <summary>Streaming jobs: a combiner script run over each map task's sorted output.</summary>
    public string? Combiner { get; init; }
    /// <summary>Skip map records the app throws on (counted and listed) instead of failing the attempt.</summary>
    public bool SkipBadRecords { get; init; }
    /// <summary>Run only the map phase and keep its intermediates for a later reduce-only job.</summary>
    public bool MapOnly { get; init; }
    /// <summary>Run only the reduce phase, over the intermediates of this earlier map-only job.</summary>
    public string? MapJob { get; init; }
    /// <summary>Launch backup attempts for stragglers (Hadoop's <c>mapreduce.{map,reduce}.speculative</c>). Default on.</summary>
    public bool Speculative { get; init; } = true;
    /// <summary><see cref="HashPartitioner"/> (default) or <see cref="RangePartitioner"/> (total order, from a sample of the map output's keys).</summary>
    public string Partitioner { get; init; } = HashPartitioner;

    /// <summary>The W3C trace context of the job's submission: every span of the job hangs under it.</summary>
    public string? TraceParent { get; init; }
    /// <summary><c>high</c>, <c>normal</c>, <c>low</c>, or the weight given as a number.</summary>
    public string Priority { get; init; } = NormalPriority;
    /// <summary>The job's weight in max-min fair sharing of the pool's slots (Hadoop's Fair Scheduler).</summary>
    public double Weight { get; init; } = 1;
    /// <summary>At most this many of the job's tasks queued or running at once; none: no limit but its share.</summary>
    public int? MaxRunningTasks { get; init; }

    public const string HighPriority = "high";
    public const string NormalPriority = "normal";
    public const string LowPriority = "low";

    public const string HashPartitioner = "hash";
    public const string RangePartitioner = "range";

    /// <summary>A range-partitioned job with more than one partition: it samples keys before its maps run.</summary>
    public bool NeedsSample => Partitioner == RangePartitioner && ReduceTasks > 1 && MapJob is null;
}

/// <summary>Task counts of one phase.</summary>
public sealed record PhaseProgress
{
    public int Total { get; init; }
    /// <summary>Held back by the leader until the job's fair share has room for them (not yet on the task queue).</summary>
    public int Pending { get; init; }
    /// <summary>On the task queue (or taken by a worker that has not reported its start yet).</summary>
    public int Queued { get; init; }
    public int Running { get; init; }
    public int Done { get; init; }
    public int Failed { get; init; }
}

/// <summary>Counters of one task attempt, summed per phase for the job.</summary>
public sealed record TaskCounters
{
    public long InputBytes { get; init; }
    public long InputRecords { get; init; }
    public long OutputRecords { get; init; }
    public long OutputBytes { get; init; }
    public long CombineInputRecords { get; init; }
    public long CombineOutputRecords { get; init; }
    public long SpilledRecords { get; init; }
    /// <summary>Distinct keys a reduce task saw.</summary>
    public long InputGroups { get; init; }
    /// <summary>Map records skipped because the app threw on them (with <c>skipBadRecords</c>).</summary>
    public long SkippedRecords { get; init; }
    /// <summary>A few of the skipped records, with the error each raised.</summary>
    public List<string>? SkippedSamples { get; init; }
    /// <summary>User counters (<c>group.name</c>), from streaming scripts' <c>reporter:counter:</c> lines.</summary>
    public Dictionary<string, long>? User { get; init; }

    public static TaskCounters Zero { get; } = new();

    public TaskCounters Add(TaskCounters other) => Plus(other, 1) with
    {
        SkippedSamples = SkippedSamples is null || other.SkippedSamples is null
            ? SkippedSamples ?? other.SkippedSamples
            : [.. SkippedSamples, .. other.SkippedSamples[..Math.Min(other.SkippedSamples.Count, Math.Max(0, 20 - SkippedSamples.Count))]],
    };

    /// <summary>
    /// These counters without <paramref name="other"/>'s (a map whose output was lost: its re-run counts
    /// again). Skipped-record samples stay: they are examples, not a count.
    /// </summary>
    public TaskCounters Subtract(TaskCounters other) => Plus(other, -1);

    /// <summary>Every count plus <paramref name="sign"/> times <paramref name="other"/>'s; the samples are these.</summary>
    private TaskCounters Plus(TaskCounters other, long sign) => this with
    {
        InputBytes = InputBytes + (sign * other.InputBytes),
        InputRecords = InputRecords + (sign * other.InputRecords),
        OutputRecords = OutputRecords + (sign * other.OutputRecords),
        OutputBytes = OutputBytes + (sign * other.OutputBytes),
        CombineInputRecords = CombineInputRecords + (sign * other.CombineInputRecords),
        CombineOutputRecords = CombineOutputRecords + (sign * other.CombineOutputRecords),
        SpilledRecords = SpilledRecords + (sign * other.SpilledRecords),
        InputGroups = InputGroups + (sign * other.InputGroups),
        SkippedRecords = SkippedRecords + (sign * other.SkippedRecords),
        User = MergeUser(User, other.User, sign),
    };

    /// <summary><paramref name="a"/> plus <paramref name="sign"/> times <paramref name="b"/>, by counter name.</summary>
    private static Dictionary<string, long>? MergeUser(Dictionary<string, long>? a, Dictionary<string, long>? b, long sign)
    {
        if (b is null)
        {
            return a;
        }
        if (a is null && sign > 0)
        {
            return b;
        }
        var merged = a is null ? new Dictionary<string, long>(StringComparer.Ordinal) : new Dictionary<string, long>(a, StringComparer.Ordinal);
        foreach (var (name, value) in b)
        {
            merged[name] = merged.GetValueOrDefault(name) + (sign * value);
        }
        return merged;
    }
}

/// <summary>The job's live state, written only by the leading coordinator.</summary>
public sealed record JobStatus
{
    public required string Id { get; init; }
    public JobState State { get; init; }
    public DateTimeOffset SubmittedAt { get; init; }
    public DateTimeOffset? StartedAt { get; init; }
    public DateTimeOffset? MapFinishedAt { get; init; }
    public DateTimeOffset? FinishedAt { get; init; }
    public PhaseProgress Map { get; init; } = new();
    public PhaseProgress Reduce { get; init; } = new();
    /// <summary>Attempts started, over all tasks.</summary>
    public int Attempts { get; init; }
    public int FailedAttempts { get; init; }
    /// <summary>Backup attempts launched for stragglers, and how many of them committed first.</summary>
    public int BackupAttempts { get; init; }
    public int BackupWins { get; init; }
    /// <summary>Tasks the leader sent again because their attempt's report never came (its worker gone, or past its time limit).</summary>
    public int RecoveredAttempts { get; init; }
    /// <summary>
    /// Map tasks run again because a reducer found their committed output missing or damaged (Hadoop's
    /// fetch failures re-executing a map): the job's maps ran once more each time.
    /// </summary>
    public int MapReruns { get; init; }
    public TaskCounters MapCounters { get; init; } = TaskCounters.Zero;
    public TaskCounters ReduceCounters { get; init; } = TaskCounters.Zero;
    public string? Error { get; init; }
    /// <summary>Output blobs (in the output container), in partition order, once the job succeeded.</summary>
    public List<string> Outputs { get; init; } = [];
    public string? OutputContainer { get; init; }
    /// <summary>Epoch of the leader that last wrote this.</summary>
    public long Epoch { get; init; }

    /// <summary>The job's trace (W3C trace id, hex), when the ingress traced its submission.</summary>
    public string? TraceId { get; init; }

    /// <summary>The job's weight in fair sharing (from its priority).</summary>
    public double Weight { get; init; } = 1;

    /// <summary>Slots the job's tasks hold now (their attempts reported running).</summary>
    public int RunningTasks => Map.Running + Reduce.Running;

    /// <summary>
    /// Tasks let in and waiting for a slot, or running but not reported yet (a worker reports a start
    /// only past <c>StartReportDelay</c>): with <see cref="RunningTasks"/>, the job's share of the pool now.
    /// </summary>
    public int QueuedTasks => Map.Queued + Reduce.Queued;

    /// <summary>Tasks of the running phase the leader holds back until the job's share has room.</summary>
    public int PendingTasks => State switch
    {
        JobState.Mapping => Map.Pending,
        JobState.Reducing => Reduce.Pending,
        _ => 0,
    };

    /// <summary>Seconds the map phase took (so far, while it runs).</summary>
    public double? MapSeconds => StartedAt is { } s ? ((MapFinishedAt ?? FinishedAt ?? DateTimeOffset.UtcNow) - s).TotalSeconds : null;

    /// <summary>Seconds the reduce phase took (so far, while it runs).</summary>
    public double? ReduceSeconds => MapFinishedAt is { } m ? ((FinishedAt ?? DateTimeOffset.UtcNow) - m).TotalSeconds : null;

    public bool IsTerminal => State is JobState.Succeeded or JobState.Failed or JobState.Cancelled;

    /// <summary>Attempts that ended neither in success nor in a reported failure: crashed workers, lost leases, cancellations.</summary>
    public int KilledAttempts => Math.Max(0, Attempts - FailedAttempts - Map.Done - Reduce.Done - Map.Running - Reduce.Running);
}

/// <summary>A map split: a byte range of one blob, cut at line boundaries when read.</summary>
public sealed record InputSplit(string Blob, long Offset, long Length);

/// <summary>One task's state, written only by the leading coordinator.</summary>
public sealed record TaskRecord
{
    public required TaskPhase Phase { get; init; }
    public required int Index { get; init; }
    public TaskState State { get; init; }
    public int Attempts { get; init; }
    public int FailedAttempts { get; init; }
    /// <summary>The first committed attempt; later completions are duplicates.</summary>
    public string? WinningAttempt { get; init; }
    /// <summary>The attempt that started last; a failure report from an older attempt does not requeue the task.</summary>
    public string? LastAttempt { get; init; }
    /// <summary>The attempt whose failure was recorded last, so a redelivered copy of that report is not counted again.</summary>
    public string? LastFailedAttempt { get; init; }
    /// <summary>The last status a streaming script reported (<c>reporter:status:</c>).</summary>
    public string? Status { get; init; }
    /// <summary>Why the task's message was dead-lettered, when it was.</summary>
    public string? DeadLetterReason { get; init; }
    public string? Worker { get; init; }
    public string? LastError { get; init; }
    /// <summary>What a map task reads: one blob range, or several small blobs packed together (then <see cref="Split"/> is the first).</summary>
    public InputSplit? Split { get; init; }
    public List<InputSplit>? Splits { get; init; }
    public TaskCounters? Counters { get; init; }
    /// <summary>When the leader last sent the task to the queue (the leader's clock).</summary>
    public DateTimeOffset? QueuedAt { get; init; }
    /// <summary>When the current attempt started and finished (the worker's clock).</summary>
    public DateTimeOffset? StartedAt { get; init; }
    public DateTimeOffset? FinishedAt { get; init; }
    /// <summary>Times the leader sent this task again because an attempt's report never came.</summary>
    public int Recoveries { get; init; }
    /// <summary>Times this map ran again because a reducer found its committed output missing or damaged.</summary>
    public int Reruns { get; init; }
    /// <summary>When the leader sent a backup attempt for this straggler (one per task at most).</summary>
    public DateTimeOffset? BackupAt { get; init; }
    /// <summary>A map task's winning output file's length: the manifest gives it to reducers, who read its index at the end.</summary>
    public long? OutputLength { get; init; }
    /// <summary>When the leader recorded the task's success (the leader's clock): with <see cref="QueuedAt"/>, the task's overhead.</summary>
    public DateTimeOffset? RecordedAt { get; init; }
    /// <summary>Every attempt the leader saw start, oldest first (at most <see cref="AttemptRecord.MaxKept"/>): the job page's timeline.</summary>
    public List<AttemptRecord>? History { get; init; }
}

/// <summary>How an attempt ended, as far as the leader knows.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<AttemptOutcome>))]
public enum AttemptOutcome
{
    Running,
    Succeeded,
    Failed,
    /// <summary>Stopped because another attempt of its task committed first, or its job ended.</summary>
    Killed,
    /// <summary>Its report never came (its worker died or froze past its lease); the leader sent the task again.</summary>
    Lost,
    /// <summary>A map attempt that committed, but whose output a reducer later found missing or damaged: the map ran again.</summary>
    OutputLost,
}

/// <summary>One attempt of a task: where and when it ran and how it ended.</summary>
public sealed record AttemptRecord
{
    public const int MaxKept = 32;

    public required string Id { get; init; }
    public string? Worker { get; init; }
    /// <summary>When the message this attempt took was sent (the leader's clock).</summary>
    public DateTimeOffset? QueuedAt { get; init; }
    /// <summary>The worker's clock, as are <see cref="EndedAt"/>'s reports.</summary>
    public DateTimeOffset StartedAt { get; init; }
    public DateTimeOffset? EndedAt { get; init; }
    public AttemptOutcome Outcome { get; init; }
    /// <summary>A backup attempt of a straggler.</summary>
    public bool Backup { get; init; }
    public long? InputBytes { get; init; }
    public long? InputRecords { get; init; }
    public long? OutputRecords { get; init; }
    /// <summary>The end of the attempt's error, when it failed.</summary>
    public string? Error { get; init; }

    /// <summary><paramref name="history"/> with <paramref name="attempt"/> replaced (by id) or added; the oldest go past <see cref="MaxKept"/>.</summary>
    public static List<AttemptRecord> Put(List<AttemptRecord>? history, AttemptRecord attempt)
    {
        var list = new List<AttemptRecord>((history?.Count ?? 0) + 1);
        var replaced = false;
        foreach (var entry in history ?? [])
        {
            if (entry.Id == attempt.Id)
            {
                list.Add(attempt);
                replaced = true;
            }
            else
            {
                list.Add(entry);
            }
        }
        if (!replaced)
        {
            list.Add(attempt);
        }
        if (list.Count > MaxKept)
        {
            list.RemoveRange(0, list.Count - MaxKept);
        }
        return list;
    }

    /// <summary><paramref name="history"/> with every attempt still running ended at <paramref name="at"/> as <paramref name="outcome"/>.</summary>
    public static List<AttemptRecord>? EndRunning(List<AttemptRecord>? history, AttemptOutcome outcome, DateTimeOffset at)
    {
        if (history is null)
        {
            return null;
        }
        var updated = new List<AttemptRecord>(history.Count);
        foreach (var attempt in history)
        {
            updated.Add(attempt.Outcome == AttemptOutcome.Running ? attempt with { Outcome = outcome, EndedAt = at } : attempt);
        }
        return updated;
    }

    public static AttemptRecord? Find(List<AttemptRecord>? history, string id)
    {
        foreach (var entry in history ?? [])
        {
            if (entry.Id == id)
            {
                return entry;
            }
        }
        return null;
    }
}

/// <summary>The job as the API shows it.</summary>
public sealed record JobView(JobSpec Spec, JobStatus Status);

/// <summary>Names of task keys and blobs, shared by coordinator, workers and ingress.</summary>
public static class TaskNames
{
    public static string TaskId(TaskPhase phase, int index) =>
        (phase switch { TaskPhase.Map => "m-", TaskPhase.Reduce => "r-", _ => "s-" }) + index.ToString("D5", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>
    /// The one intermediate blob of a map attempt: every partition's sorted run, then their index. All
    /// of a job's map outputs sit side by side (one folder on a file system, not one per map).
    /// </summary>
    public static string MapOutput(string jobId, int mapIndex, string attemptId) =>
        $"{jobId}/{TaskId(TaskPhase.Map, mapIndex)}-{attemptId}.out";

    /// <summary>A range-partitioned job's R − 1 cut points, chosen by the leader from the sample task's keys.</summary>
    public static string PartitionCuts(string jobId) => $"{jobId}/partition-cuts";

    /// <summary>The keys a sample attempt drew.</summary>
    public static string SampleKeys(string jobId, string attemptId) => $"{jobId}/s-00000-{attemptId}.keys";

    /// <summary>The manifest naming each map task's winning attempt, read by reduce tasks.</summary>
    public static string MapManifest(string jobId) => $"{jobId}/map-winners.json";

    public static string OutputPart(string jobId, int partition) => $"{jobId}/part-{partition:D5}";
}
