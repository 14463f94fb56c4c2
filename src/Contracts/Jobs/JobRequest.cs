using System.Buffers;
using System.Globalization;
using Queue.Contracts.Ports;

namespace Queue.Contracts.Jobs;

/// <summary>The body of <c>POST /jobs</c>.</summary>
public sealed record JobRequest
{
    public string? App { get; init; }
    /// <summary>A container, optionally followed by <c>/prefix</c>.</summary>
    public string? Input { get; init; }
    public int? MapTasks { get; init; }
    public long? SplitSizeBytes { get; init; }
    public int? ReduceTasks { get; init; }
    public Dictionary<string, string>? Args { get; init; }
    public int? MaxAttempts { get; init; }
    public int? TaskTimeoutSeconds { get; init; }
    /// <summary>A Hadoop-streaming mapper script in the scripts container, instead of <see cref="App"/>.</summary>
    public string? Mapper { get; init; }
    /// <summary>The streaming reducer script; omitted means the identity reducer.</summary>
    public string? Reducer { get; init; }
    /// <summary>A streaming combiner script, run over each map task's sorted output.</summary>
    public string? Combiner { get; init; }
    /// <summary>Skip map records the app throws on (counted and listed) instead of failing the attempt.</summary>
    public bool? SkipBadRecords { get; init; }
    /// <summary>Backup attempts for stragglers (default true), as Hadoop's <c>mapreduce.*.speculative</c>.</summary>
    public bool? Speculative { get; init; }
    /// <summary><c>map</c>: run only the map phase and keep its intermediates; <c>reduce</c>: reduce the intermediates of <see cref="MapJob"/>.</summary>
    public string? Phase { get; init; }
    /// <summary>With <c>phase: reduce</c>, the id of the earlier map-only job.</summary>
    public string? MapJob { get; init; }
    /// <summary><c>hash</c> (default) or <c>range</c>: total order, the parts concatenated are one sorted output.</summary>
    public string? Partitioner { get; init; }
    /// <summary>The job's share of the pool beside other jobs: <c>high</c> (2), <c>normal</c> (1, the default), <c>low</c> (0.5), or a weight (a number, 0.01 to 100).</summary>
    public System.Text.Json.JsonElement? Priority { get; init; }
    /// <summary>At most this many of the job's tasks queued or running at once (none: as many as its fair share).</summary>
    public int? MaxRunningTasks { get; init; }
}

/// <summary>The seeds' request: <c>POST /request</c>.</summary>
public sealed record SeedRequest
{
    [System.Text.Json.Serialization.JsonPropertyName("mapper")]
    public string? Mapper { get; init; }
    [System.Text.Json.Serialization.JsonPropertyName("reducer")]
    public string? Reducer { get; init; }
    /// <summary>A container, or a prefix inside the source container.</summary>
    [System.Text.Json.Serialization.JsonPropertyName("data")]
    public string? Data { get; init; }
    [System.Text.Json.Serialization.JsonPropertyName("m_num")]
    public int? MapTasks { get; init; }
    [System.Text.Json.Serialization.JsonPropertyName("r_num")]
    public int? ReduceTasks { get; init; }
    [System.Text.Json.Serialization.JsonPropertyName("phase")]
    public string? Phase { get; init; }
    /// <summary>With <c>phase: reduce</c>, the id of the earlier map run.</summary>
    [System.Text.Json.Serialization.JsonPropertyName("job")]
    public string? Job { get; init; }
}

/// <summary>The answer to an accepted job.</summary>
public sealed record JobCreated(string Id, string Location);

/// <summary>A job with its tasks, for <c>GET /jobs/{id}?tasks=true</c> and the dashboard.</summary>
public sealed record JobDetails(JobSpec Spec, JobStatus Status, List<TaskRecord> Tasks);

/// <summary>A rejected request: the HTTP status it deserves and why.</summary>
public sealed record RequestError(int Status, string Title, string Detail);

/// <summary>Checks a <see cref="JobRequest"/> and turns it into a <see cref="JobSpec"/>.</summary>
public static class JobRequestValidator
{
    public const int MaxTasks = 10_000;

    /// <summary>The app name of Hadoop-streaming jobs (user scripts instead of a built-in app).</summary>
    public const string StreamingApp = "streaming";
    public const long DefaultSplitSizeBytes = 64L * 1024 * 1024;

    /// <summary>Arguments the worker adds for the app about its attempt (<c>attempt.backup</c>); users cannot set them.</summary>
    public const string AttemptArgPrefix = "attempt.";

    /// <summary>"true" for a backup attempt of a straggler.</summary>
    public const string BackupArg = AttemptArgPrefix + "backup";

    private static readonly SearchValues<char> NameChars =
        SearchValues.Create("abcdefghijklmnopqrstuvwxyz0123456789-");

    /// <summary>Validates shape and ranges; the app and input existence are checked by the caller.</summary>
    public static RequestError? TryCreateSpec(JobRequest request, string id, DateTimeOffset now, out JobSpec? spec)
    {
        spec = null;
        if (request.Mapper is { Length: > 0 } || request.Reducer is not null)
        {
            if (request.App is not null && request.App != StreamingApp)
            {
                return Bad("Give either 'app' or streaming scripts ('mapper', 'reducer'), not both.");
            }
            if (string.IsNullOrWhiteSpace(request.Mapper) && request.Phase != "reduce")
            {
                return Bad("A streaming job needs 'mapper'.");
            }
            foreach (var (field, script) in new[] { ("mapper", request.Mapper), ("reducer", request.Reducer) })
            {
                if (script is { Length: > 0 } && BlobNames.CheckName(script) is { } problem)
                {
                    return Bad($"'{field}' is not a script name: {problem}");
                }
            }
            request = request with { App = StreamingApp };
        }
        else if (request.App == StreamingApp && request.Phase != "reduce")
        {
            return Bad("A streaming job needs 'mapper' (and optionally 'reducer' and 'combiner'), scripts in the scripts container.");
        }
        if (request.Phase is not (null or "map" or "reduce"))
        {
            return Bad("'phase' is 'map' (map only, keep intermediates) or 'reduce' (reduce an earlier map-only job's intermediates).");
        }
        if (request.Phase == "reduce" && (request.MapJob is null || !IsJobId(request.MapJob)))
        {
            return Bad("'phase': 'reduce' needs the id of the earlier map-only job ('mapJob', or 'job' in POST /request).");
        }
        if (request.Phase != "reduce" && request.MapJob is not null)
        {
            return Bad("'mapJob' goes with 'phase': 'reduce'.");
        }
        if (request.Partitioner is not (null or JobSpec.HashPartitioner or JobSpec.RangePartitioner))
        {
            return Bad("'partitioner' is 'hash' (the default) or 'range' (total order: the parts concatenated are sorted).");
        }
        if (request.Partitioner is not null && request.Phase == "reduce")
        {
            return Bad("'partitioner' belongs to the map phase: a reduce-only job keeps its map job's.");
        }
        if (request.Combiner is not null && (request.App != StreamingApp || BlobNames.CheckName(request.Combiner) is not null))
        {
            return Bad("'combiner' is a script for streaming jobs (with 'mapper'), a relative path without '..'; built-in apps combine on their own.");
        }
        if (string.IsNullOrWhiteSpace(request.App))
        {
            return Bad("'app' is required (or 'mapper' and 'reducer' for a streaming job).");
        }
        if (!IsSafeName(request.App, 64))
        {
            return Bad("'app' may hold only letters, digits, '-', '_' and '.'.");
        }
        if (request.Phase == "reduce" && string.IsNullOrWhiteSpace(request.Input))
        {
            // A reduce-only job reads the map job's intermediates; its input is taken from that job.
            request = request with { Input = "pending" };
        }
        if (string.IsNullOrWhiteSpace(request.Input))
        {
            return Bad("'input' is required: a container, optionally followed by '/prefix'.");
        }
        if (CheckInput(request.Input, out var container, out var prefix) is { } inputError)
        {
            return inputError;
        }
        if (request.MapTasks is not null && request.SplitSizeBytes is not null)
        {
            return Bad("Give either 'mapTasks' or 'splitSizeBytes', not both.");
        }
        if (request.MapTasks is { } m && m is < 1 or > MaxTasks)
        {
            return Bad($"'mapTasks' must be between 1 and {MaxTasks}.");
        }
        if (request.SplitSizeBytes is { } s && s is < 1024 or > (1L << 40))
        {
            return Bad("'splitSizeBytes' must be between 1024 and 2^40.");
        }
        if (request.ReduceTasks is { } r && r is < 1 or > MaxTasks)
        {
            return Bad($"'reduceTasks' must be between 1 and {MaxTasks}.");
        }
        if (request.MaxAttempts is { } a && a is < 1 or > 100)
        {
            return Bad("'maxAttempts' must be between 1 and 100.");
        }
        if (request.TaskTimeoutSeconds is { } t && t is < 1 or > 86_400)
        {
            return Bad("'taskTimeoutSeconds' must be between 1 and 86400.");
        }
        if (CheckPriority(request.Priority, out var priority, out var weight) is { } priorityError)
        {
            return priorityError;
        }
        if (request.MaxRunningTasks is { } most && most is < 1 or > MaxTasks)
        {
            return Bad($"'maxRunningTasks' must be between 1 and {MaxTasks}.");
        }
        var args = request.Args ?? [];
        if (args.Count > 64)
        {
            return Bad("'args' may hold at most 64 entries.");
        }
        foreach (var (key, value) in args)
        {
            if (key.Length is 0 or > 128 || HasControl(key))
            {
                return Bad("'args' keys must be 1..128 characters without control characters.");
            }
            if (key.StartsWith(AttemptArgPrefix, StringComparison.Ordinal))
            {
                return Bad($"'args.{key}': keys starting with '{AttemptArgPrefix}' are reserved for what the worker tells an app about its attempt.");
            }
            if (value is null)
            {
                return Bad($"'args.{key}' must be a string, not null.");
            }
            if (value.Length > 4096)
            {
                return Bad($"'args.{key}' is longer than 4096 characters.");
            }
        }

        spec = new JobSpec
        {
            Id = id,
            App = request.App,
            InputContainer = container,
            InputPrefix = prefix,
            MapTasks = request.MapTasks,
            SplitSizeBytes = request.MapTasks is null ? request.SplitSizeBytes ?? DefaultSplitSizeBytes : null,
            ReduceTasks = request.ReduceTasks ?? 1,
            Args = new Dictionary<string, string>(args, StringComparer.Ordinal),
            MaxAttempts = request.MaxAttempts ?? 4,
            TaskTimeout = TimeSpan.FromSeconds(request.TaskTimeoutSeconds ?? 600),
            SubmittedAt = now,
            Mapper = string.IsNullOrEmpty(request.Mapper) ? null : request.Mapper,
            Reducer = string.IsNullOrEmpty(request.Reducer) ? null : request.Reducer,
            Combiner = request.Combiner,
            SkipBadRecords = request.SkipBadRecords ?? false,
            Speculative = request.Speculative ?? true,
            MapOnly = request.Phase == "map",
            MapJob = request.MapJob,
            Partitioner = request.Partitioner ?? JobSpec.HashPartitioner,
            Priority = priority,
            Weight = weight,
            MaxRunningTasks = request.MaxRunningTasks,
        };
        return null;
    }

    /// <summary>A named priority or a numeric weight, as the Fair Scheduler's pool weights.</summary>
    private static RequestError? CheckPriority(System.Text.Json.JsonElement? value, out string priority, out double weight)
    {
        priority = JobSpec.NormalPriority;
        weight = 1;
        const string Rule = "'priority' is 'high' (weight 2), 'normal' (1, the default), 'low' (0.5) or a weight between 0.01 and 100.";
        switch (value)
        {
            case null or { ValueKind: System.Text.Json.JsonValueKind.Null }:
                return null;
            case { ValueKind: System.Text.Json.JsonValueKind.String } text:
                (priority, weight) = text.GetString() switch
                {
                    JobSpec.HighPriority => (JobSpec.HighPriority, 2.0),
                    JobSpec.NormalPriority => (JobSpec.NormalPriority, 1.0),
                    JobSpec.LowPriority => (JobSpec.LowPriority, 0.5),
                    _ => ("", 0.0),
                };
                return weight > 0 ? null : Bad(Rule);
            case { ValueKind: System.Text.Json.JsonValueKind.Number } number when number.TryGetDouble(out var w) && w is >= 0.01 and <= 100:
                weight = w;
                priority = w.ToString("0.###", CultureInfo.InvariantCulture);
                return null;
            default:
                return Bad(Rule);
        }
    }

    /// <summary>Splits <c>container/prefix</c> and rejects hostile names (.., absolute paths, control characters).</summary>
    public static RequestError? CheckInput(string input, out string container, out string prefix)
    {
        var slash = input.IndexOf('/');
        container = slash < 0 ? input : input[..slash];
        prefix = slash < 0 ? "" : input[(slash + 1)..];
        if (!BlobNames.IsContainerName(container))
        {
            return Bad($"'{Printable(container)}' is not a container name. {BlobNames.ContainerRule}");
        }
        if (BlobNames.CheckPrefix(prefix) is { } problem)
        {
            return Bad($"The input prefix is not valid: {problem}");
        }
        return null;
    }

    public static bool IsJobId(string id) =>
        id.Length is >= 1 and <= 64 && !id.AsSpan().ContainsAnyExcept(NameChars);

    public static string NewJobId(DateTimeOffset now) =>
        string.Create(CultureInfo.InvariantCulture, $"{now:yyyyMMdd-HHmmss}-{Random.Shared.Next(0x1000000):x6}");

    private static bool IsSafeName(string name, int maxLength)
    {
        if (name.Length > maxLength)
        {
            return false;
        }
        foreach (var c in name)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.'))
            {
                return false;
            }
        }
        return name is not ("." or "..");
    }

    private static bool HasControl(string text)
    {
        foreach (var c in text)
        {
            if (char.IsControl(c))
            {
                return true;
            }
        }
        return false;
    }

    private static string Printable(string text) => HasControl(text) || text.Length > 80 ? "(unprintable name)" : text;

    private static RequestError Bad(string detail) => new(400, "Invalid job request", detail);
}

/// <summary>
/// What a worker says about itself every few seconds, under <c>/queue/workers/{worker}</c> with a lease:
/// the key disappears when the worker stops or dies.
/// </summary>
public sealed record WorkerHeartbeat(
    string Worker, string Host, string Version, int Slots, int Busy, IReadOnlyList<string> Running, DateTimeOffset StartedAt, DateTimeOffset LastSeen,
    long TasksCompleted = 0, long BytesProcessed = 0);

/// <summary>
/// What an autoscaler needs (<c>GET /scale</c>): tasks waiting and leased, the workers alive and busy, and
/// the worker count that serves them: ceil((queued + leased + pending) / slots), never below the workers holding
/// leases, within [min, max]. Cumulative completions and bytes let a dashboard plot rates.
/// </summary>
public sealed record ScaleSignal(
    long QueuedTasks, long LeasedTasks, long PendingTasks, int Workers, int BusyWorkers, int SlotsPerWorker, int DesiredWorkers, int MinWorkers, int MaxWorkers,
    long TasksCompleted, long BytesProcessed, DateTimeOffset At);
