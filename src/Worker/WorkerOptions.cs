using System.ComponentModel.DataAnnotations;

namespace Queue.Worker;

public sealed class WorkerOptions
{
    public const string Section = "Queue:Worker";

    /// <summary>Tasks run at once by this worker. Default: the processor count.</summary>
    [Range(1, 256)]
    public int Slots { get; set; } = Environment.ProcessorCount;

    /// <summary>Name in task events and logs. Default: host name and process id.</summary>
    public string WorkerId { get; set; } = $"{Environment.MachineName}-{Environment.ProcessId}";

    /// <summary>Map output buffer per task before sorted runs spill to disk. Default 64 MiB.</summary>
    [Range(64 * 1024, 1 << 30)]
    public int SortBufferBytes { get; set; } = 64 << 20;

    /// <summary>Where spills and merge runs go. Default: the system temp folder.</summary>
    public string TempPath { get; set; } = Path.Combine(Path.GetTempPath(), "queue-worker");

    /// <summary>Most map outputs a reduce task merges in one pass; more are pre-merged on disk. Default 64.</summary>
    [Range(2, 1024)]
    public int MergeFactor { get; set; } = 64;

    /// <summary>Map output segments a reduce task fetches at once (Hadoop's <c>shuffle.parallelcopies</c>). Default 8.</summary>
    [System.ComponentModel.DataAnnotations.Range(1, 256)]
    public int ShuffleParallelCopies { get; set; } = 8;

    /// <summary>
    /// Memory a reduce task holds fetched segments in (one array, at most 1 GiB); in map order, a segment
    /// over a quarter of it, or past it, is read from its blob as the merge goes instead. Default 64 MiB.
    /// </summary>
    [System.ComponentModel.DataAnnotations.Range(0, 1L << 34)]
    public long ShuffleMemoryBytes { get; set; } = 64L << 20;

    /// <summary>
    /// Memory a worker keeps small map output files in (each at most 1/64 of it), read whole once and
    /// shared by every reduce task on the worker. Default 256 MiB; 0 turns it off.
    /// </summary>
    [System.ComponentModel.DataAnnotations.Range(0, 1L << 36)]
    public long MapOutputCacheBytes { get; set; } = 256L << 20;

    /// <summary>
    /// How long an attempt runs before its start is reported on its own; one that ends sooner carries
    /// its start time in its end report. 0 reports every start at once. Default 250 ms.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00", "00:01:00")]
    public TimeSpan StartReportDelay { get; set; } = TimeSpan.FromMilliseconds(250);

    /// <summary>
    /// How long a failed or timed-out attempt waits for its user code (a script's process tree, an app
    /// that ignores cancellation) to stop before it reports, so a retry never overlaps it. Default 5 s.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00", "00:01:00")]
    public TimeSpan StopGrace { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>How long one receive waits for a message. Default 2 s.</summary>
    [Range(typeof(TimeSpan), "00:00:00.010", "00:01:00")]
    public TimeSpan ReceiveWait { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>How often a running task checks whether its job was cancelled. Default 1 s.</summary>
    [Range(typeof(TimeSpan), "00:00:00.010", "00:10:00")]
    public TimeSpan CancelCheckInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>How often the worker writes its heartbeat (its lease lasts three beats). Default 5 s.</summary>
    [Range(typeof(TimeSpan), "00:00:00.100", "00:05:00")]
    public TimeSpan HeartbeatInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>On shutdown, how long running tasks may take to finish before they are abandoned. Default 25 s.</summary>
    [Range(typeof(TimeSpan), "00:00:00", "01:00:00")]
    public TimeSpan DrainTimeout { get; set; } = TimeSpan.FromSeconds(25);

    /// <summary>
    /// Compile the data path at start, before the first task, by running it over a small sample in
    /// the background. Default true.
    /// </summary>
    public bool WarmUp { get; set; } = true;
}
