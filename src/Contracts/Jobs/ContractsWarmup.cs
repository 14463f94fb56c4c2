using System.Text.Json.Serialization.Metadata;

namespace Queue.Contracts.Jobs;

/// <summary>
/// Writes and reads back one of each stored and wire record, every optional part filled in. The
/// first job of a process otherwise spends about half its JIT time on code that first use of JSON
/// needs — each type's metadata, converters and property accessors, about 500 methods — on the job's
/// critical path: planning, task messages, task events, status writes. Run once at start instead.
/// Each record must read back as it was written, so this is also a check of the contracts.
/// </summary>
public static class ContractsWarmup
{
    public static void Run()
    {
        var at = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
        var split = new InputSplit("warmup.txt", 0, 1);
        var counters = new TaskCounters
        {
            InputBytes = 1, InputRecords = 1, OutputRecords = 1, OutputBytes = 1, CombineInputRecords = 1, CombineOutputRecords = 1,
            SpilledRecords = 1, InputGroups = 1, SkippedRecords = 1, SkippedSamples = ["line"], User = new() { ["counter"] = 1 },
        };
        var spec = new JobSpec
        {
            Id = "warmup", App = "wordcount", InputContainer = "warmup", MapTasks = 1, SplitSizeBytes = 1, ReduceTasks = 1,
            Args = new() { ["pattern"] = "x" }, SubmittedAt = at, Mapper = "m.py", Reducer = "r.py", Combiner = "c.py", MapJob = "warmup",
        };
        var status = new JobStatus
        {
            Id = "warmup", State = JobState.Succeeded, SubmittedAt = at, StartedAt = at, MapFinishedAt = at, FinishedAt = at,
            MapCounters = counters, ReduceCounters = counters, Error = "none", Outputs = ["part-00000"], OutputContainer = "out", Epoch = 1,
        };
        RoundTrip(spec, QueueJsonContext.Default.JobSpec);
        RoundTrip(status, QueueJsonContext.Default.JobStatus);
        RoundTrip(new JobView(spec, status), QueueJsonContext.Default.JobView);
        RoundTrip(new TaskRecord
        {
            Phase = TaskPhase.Map, Index = 0, State = TaskState.Done, Attempts = 1, WinningAttempt = "a", LastAttempt = "a", Status = "ok",
            DeadLetterReason = "none", Worker = "w", LastError = "none", Split = split, Splits = [split], Counters = counters,
            QueuedAt = at, StartedAt = at, FinishedAt = at, BackupAt = at, RecordedAt = at,
        }, QueueJsonContext.Default.TaskRecord);
        RoundTrip(new TaskMessage
        {
            JobId = "warmup", Phase = TaskPhase.Map, Index = 0, Epoch = 1, App = "wordcount", Args = new() { ["pattern"] = "x" }, MapTasks = 1,
            ReduceTasks = 1, MaxAttempts = 1, TaskTimeout = TimeSpan.FromMinutes(1), InputContainer = "warmup", Split = split, Splits = [split],
            FileName = "warmup.txt", IntermediatesOf = "warmup", Mapper = "m.py", Reducer = "r.py", Combiner = "c.py",
        }, QueueJsonContext.Default.TaskMessage);
        RoundTrip(new TaskEvent
        {
            Kind = TaskEventKind.Succeeded, JobId = "warmup", Phase = TaskPhase.Map, Index = 0, AttemptId = "a", DeliveryCount = 1, Epoch = 1,
            WorkerId = "w", At = at, Error = "none", Counters = counters, Status = "ok",
        }, QueueJsonContext.Default.TaskEvent);
        RoundTrip(new MapManifest("warmup", ["a"]), QueueJsonContext.Default.MapManifest);
        RoundTrip(new WorkerHeartbeat("w", "h", "v", 1, 0, ["warmup/m-00000"], at, at, 1, 1), QueueJsonContext.Default.WorkerHeartbeat);
    }

    /// <summary>Writes, reads and writes again: the two writes must agree, or a field is lost on the way (a setter the reader cannot reach, say).</summary>
    private static void RoundTrip<T>(T value, JsonTypeInfo<T> type)
    {
        var written = JobStore.Serialize(value, type);
        var again = JobStore.Serialize(JobStore.Deserialize(written, type), type);
        if (!written.AsSpan().SequenceEqual(again))
        {
            throw new InvalidDataException($"{typeof(T).Name} does not survive a JSON round trip: {System.Text.Encoding.UTF8.GetString(written)} came back as {System.Text.Encoding.UTF8.GetString(again)}.");
        }
    }
}
