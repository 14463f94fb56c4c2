using System.ComponentModel.DataAnnotations;

namespace Queue.Coordinator;

public sealed class CoordinatorOptions
{
    public const string Section = "Queue:Coordinator";

    /// <summary>This coordinator's name in the election. Default: host name and process id.</summary>
    [Required]
    public string CandidateId { get; set; } = $"{Environment.MachineName}-{Environment.ProcessId}";

    /// <summary>
    /// How often the leader rescans the active jobs as a safety net. New jobs and cancel requests reach it
    /// at once through a watch on the active-job index; the rescan catches anything a watch could miss.
    /// Default 5 s.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00.010", "00:10:00")]
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>A finished job keeps its task records (its page's timeline, <c>/jobs/{id}/tasks</c>) this long. Default 1 day.</summary>
    [Range(typeof(TimeSpan), "00:00:00", "3650.00:00:00")]
    public TimeSpan TaskHistoryRetention { get; set; } = TimeSpan.FromDays(1);

    /// <summary>
    /// ...and only while the newest finished jobs' task records, its own included, number at most this
    /// many: a task record is about 1 KB, in etcd's quota and in the embedded store's memory. Default 50,000.
    /// </summary>
    [Range(0, 100_000_000)]
    public int MaxTaskHistory { get; set; } = 50_000;

    /// <summary>A finished job's spec and status are deleted this long after it ended (Hadoop's job history keeps 7 days). Default 7 days.</summary>
    [Range(typeof(TimeSpan), "00:00:00", "3650.00:00:00")]
    public TimeSpan FinishedJobRetention { get; set; } = TimeSpan.FromDays(7);

    /// <summary>...and beyond the newest this many finished jobs (YARN's max-completed-applications). Default 10,000.</summary>
    [Range(0, 10_000_000)]
    public int MaxFinishedJobs { get; set; } = 10_000;

    /// <summary>How often the leader applies the retention above. Default 1 min.</summary>
    [Range(typeof(TimeSpan), "00:00:00.010", "1.00:00:00")]
    public TimeSpan RetentionInterval { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>
    /// How often the leader compacts the coordination store's history, to the revision it read one
    /// interval before (kube-apiserver does the same for its etcd, every 5 min). Every batch of task
    /// records is a revision etcd keeps until compacted, about 5 MB per 2,000-task job, and past its space
    /// quota (1 GiB in deploy/k8s) etcd refuses every write and the engine stops: back-to-back 2,000-task
    /// jobs on this 2-core machine would fill it in under 20 minutes, so the default keeps one to two
    /// minutes of history. A watch further behind starts again and the leader rescans. Zero turns it
    /// off (etcd's own <c>--auto-compaction-retention</c> then has to do it). Default 1 min.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00", "1.00:00:00")]
    public TimeSpan HistoryCompactionInterval { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>Deletes of an ended job's intermediates in flight at once (each a request on Azure Blob). Default 8.</summary>
    [Range(1, 256)]
    public int CleanupParallelism { get; set; } = 8;

    /// <summary>
    /// How often the leader looks for intermediates of jobs that ended or were forgotten (left by a
    /// leader that died before deleting them, or by a worker that woke after its job ended). Each pass
    /// lists the intermediate container once. Default 10 min.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00.010", "1.00:00:00")]
    public TimeSpan IntermediateSweepInterval { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>How often the leader looks for dead-lettered tasks. Default 1 s.</summary>
    [Range(typeof(TimeSpan), "00:00:00.010", "00:01:00")]
    public TimeSpan DeadLetterInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Launch backup attempts for stragglers at all (jobs can still opt out with <c>speculative: false</c>). Default on.</summary>
    public bool BackupTasks { get; set; } = true;

    /// <summary>A running attempt is a straggler past this many times its phase's median task time. Default 2.</summary>
    [Range(1.1, 100)]
    public double BackupRatio { get; set; } = 2;

    /// <summary>...and past this run time, so short tasks never get backups. Default 30 s.</summary>
    [Range(typeof(TimeSpan), "00:00:00.100", "01:00:00")]
    public TimeSpan BackupFloor { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// How long past the work queue's lease a running task may go unlisted by its worker's heartbeat
    /// (or past its time limit) before the leader sends it again: its report was lost. Default 10 s.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00.100", "01:00:00")]
    public TimeSpan LostTaskGrace { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Fair admission (Hadoop's Fair Scheduler): the leader keeps the task queue filled just ahead of
    /// the live slots, choosing each next task by weighted max-min fair share across running jobs.
    /// Off: every task of a phase is queued at once, first come first served.
    /// </summary>
    public bool FairSharing { get; set; } = true;

    /// <summary>Tasks kept queued beyond the free slots, so a slot that frees finds work at once; default: half the live slots, at least 2.</summary>
    [Range(1, 100_000)]
    public int? QueueAhead { get; set; }

    /// <summary>At most this many of one job's tasks on the queue at once (none: no limit but the share).</summary>
    [Range(1, 100_000)]
    public int? MaxQueuedPerJob { get; set; }

    /// <summary>How often the leader reads the live slots from the workers' heartbeats. Default 1 s.</summary>
    [Range(typeof(TimeSpan), "00:00:00.010", "00:01:00")]
    public TimeSpan SlotsRefresh { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Events taken from the queue at once; a job's changes from one batch are one transaction (etcd allows 128 operations). Default 64.</summary>
    [Range(1, 99)]
    public int EventBatchSize { get; set; } = 64;

    /// <summary>Pause before campaigning again after leadership was lost or the store failed. Default 1 s.</summary>
    [Range(typeof(TimeSpan), "00:00:00", "00:01:00")]
    public TimeSpan RetryDelay { get; set; } = TimeSpan.FromSeconds(1);
}
