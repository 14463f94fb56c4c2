using System.Text.Json.Serialization;

namespace Queue.Contracts.Jobs;

/// <summary>A unit of work on the tasks queue. Small: it references blobs, never carries data.</summary>
public sealed record TaskMessage
{
    public required string JobId { get; init; }
    public required TaskPhase Phase { get; init; }
    public required int Index { get; init; }
    /// <summary>The fencing token of the leader that enqueued it.</summary>
    public required long Epoch { get; init; }
    /// <summary>The job's W3C trace context: the attempt's span hangs under it.</summary>
    public string? TraceParent { get; init; }
    public required string App { get; init; }
    public Dictionary<string, string> Args { get; init; } = [];
    public required int MapTasks { get; init; }
    public required int ReduceTasks { get; init; }
    public required int MaxAttempts { get; init; }
    public required TimeSpan TaskTimeout { get; init; }
    public required string InputContainer { get; init; }
    /// <summary>Map only: the split to read.</summary>
    public InputSplit? Split { get; init; }
    /// <summary>Map only: several splits (small blobs packed into one task), read in turn; <see cref="Split"/> is the first.</summary>
    public List<InputSplit>? Splits { get; init; }
    /// <summary>Map only: the document name the app sees (blob name relative to the input container).</summary>
    public string? FileName { get; init; }
    /// <summary>Reduce only: the job whose map outputs to read (itself, or the map-only job a reduce-only job continues).</summary>
    public string? IntermediatesOf { get; init; }
    /// <summary>Streaming jobs: the scripts, in the scripts container.</summary>
    public string? Mapper { get; init; }
    public string? Reducer { get; init; }
    public string? Combiner { get; init; }
    public bool SkipBadRecords { get; init; }
    /// <summary>A backup attempt for a straggler: the first of the two attempts to commit wins.</summary>
    public bool Backup { get; init; }
    /// <summary>Range-partitioned jobs' maps: the blob (in the intermediates container) holding the R − 1 cut points.</summary>
    public string? PartitionCuts { get; init; }
    /// <summary>A map-only job's map: its output is kept for a later reduce-only job, which cannot have a lost one run again.</summary>
    public bool MapOnly { get; init; }
}

[JsonConverter(typeof(JsonStringEnumConverter<TaskEventKind>))]
public enum TaskEventKind
{
    Started,
    Succeeded,
    Failed,
    /// <summary>A running attempt's new status (a streaming script's <c>reporter:status:</c>).</summary>
    Progress,
}

/// <summary>What a worker reports about one attempt, on the events queue.</summary>
public sealed record TaskEvent
{
    public required TaskEventKind Kind { get; init; }
    public required string JobId { get; init; }
    public required TaskPhase Phase { get; init; }
    public required int Index { get; init; }
    public required string AttemptId { get; init; }
    public required int DeliveryCount { get; init; }
    public required long Epoch { get; init; }
    public required string WorkerId { get; init; }
    public required DateTimeOffset At { get; init; }
    /// <summary>The attempt's span (W3C trace context): the leader records the result under it.</summary>
    public string? TraceParent { get; init; }
    public string? Error { get; init; }
    public TaskCounters? Counters { get; init; }
    /// <summary>The last <c>reporter:status:</c> line of a streaming script.</summary>
    public string? Status { get; init; }
    /// <summary>The attempt ran a backup message.</summary>
    public bool Backup { get; init; }
    /// <summary>Succeeded maps: the length of the attempt's output file.</summary>
    public long? OutputLength { get; init; }
    /// <summary>
    /// On an end report whose attempt never reported its start (it ended within the worker's
    /// <c>StartReportDelay</c>): when it started. The leader counts the attempt's start from it.
    /// </summary>
    public DateTimeOffset? StartedAt { get; init; }
    /// <summary>
    /// A failed reduce whose input from this map (of its own job) was missing or damaged: the leader runs
    /// the map again and sends the reduce once more (its message was completed, not retried).
    /// </summary>
    public int? LostMap { get; init; }
    /// <summary>The map attempt whose output was lost, so a report about an output already replaced changes no map.</summary>
    public string? LostMapAttempt { get; init; }
}

/// <summary>
/// The winning attempt of every map task and the length of its output file, by map index; written
/// before reduce tasks are sent.
/// </summary>
public sealed record MapManifest(string JobId, List<string> Attempts, List<long>? Lengths = null);
