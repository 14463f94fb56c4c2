using System.ComponentModel.DataAnnotations;

namespace Queue.Ingress;

public sealed class IngressOptions
{
    public const string Section = "Queue:Ingress";

    /// <summary>Largest request body accepted; larger ones get 413. Default 64 KiB.</summary>
    [Range(1024, 16 * 1024 * 1024)]
    public int MaxRequestBodyBytes { get; set; } = 64 * 1024;

    /// <summary>Largest blob <c>PUT /blobs</c> accepts; larger ones get 413 and nothing is stored. Default 4 GiB.</summary>
    [Range(1024L, 1L << 42)]
    public long MaxBlobBytes { get; set; } = 4L << 30;

    /// <summary>
    /// Run a coordinator and a worker inside the ingress process. Default: on when the work queue is
    /// the embedded one (the laptop default), off otherwise.
    /// </summary>
    public bool? HostEngine { get; set; }

    /// <summary>
    /// The single API key of earlier versions: when set it is an <c>admin</c> principal named
    /// <c>api-key</c> beside <c>Queue:Auth:ApiKeys</c> (which store only hashes; prefer those). Never logged.
    /// </summary>
    public string? ApiKey { get; set; }

    /// <summary>Where <c>POST /request</c> looks for a <c>data</c> prefix that is not a container. Default <c>dfs-source</c> (the seeds').</summary>
    [Required]
    public string SourceContainer { get; set; } = "dfs-source";
}
