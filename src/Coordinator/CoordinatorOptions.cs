using System.ComponentModel.DataAnnotations;

namespace Queue.Coordinator;

public sealed class CoordinatorOptions
{
    public const string Section = "Queue:Coordinator";

    /// <summary>This coordinator's name in the election. Default: host name and process id.</summary>
    [Required]
    public string CandidateId { get; set; } = $"{Environment.MachineName}-{Environment.ProcessId}";

    /// <summary>How often the leader looks for new and cancelled jobs. Default 250 ms.</summary>
    [Range(typeof(TimeSpan), "00:00:00.010", "00:01:00")]
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromMilliseconds(250);

    /// <summary>Events taken from the queue at once. Default 64.</summary>
    [Range(1, 1024)]
    public int EventBatchSize { get; set; } = 64;

    /// <summary>Pause before campaigning again after leadership was lost or the store failed. Default 1 s.</summary>
    [Range(typeof(TimeSpan), "00:00:00", "00:01:00")]
    public TimeSpan RetryDelay { get; set; } = TimeSpan.FromSeconds(1);
}
