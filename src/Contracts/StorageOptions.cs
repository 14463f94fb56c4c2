using System.ComponentModel.DataAnnotations;

namespace Queue.Contracts;

/// <summary>Where the engine keeps its data (container names mirror the seeds').</summary>
public sealed class StorageOptions
{
    public const string Section = "Queue:Storage";

    /// <summary>Map outputs, under <c>{jobId}/</c>. Default <c>dfs-intermediate</c>.</summary>
    [Required]
    public string IntermediateContainer { get; set; } = "dfs-intermediate";

    /// <summary>Job outputs, <c>{jobId}/part-NNNNN</c>. Default <c>dfs-dest</c>.</summary>
    [Required]
    public string OutputContainer { get; set; } = "dfs-dest";

    /// <summary>Streaming scripts. Default <c>dfs-scripts</c>.</summary>
    [Required]
    public string ScriptsContainer { get; set; } = "dfs-scripts";

    /// <summary>Delete a job's intermediates when it ends. Default true.</summary>
    public bool DeleteIntermediates { get; set; } = true;
}
