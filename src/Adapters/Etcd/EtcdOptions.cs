using System.ComponentModel.DataAnnotations;

namespace Queue.Adapters.Etcd;

public sealed class EtcdOptions
{
    public const string Section = "Queue:Etcd";

    /// <summary>Client URLs of the etcd members, comma-separated. Default <c>http://127.0.0.1:2379</c>.</summary>
    [Required]
    public string Endpoints { get; set; } = "http://127.0.0.1:2379";

    /// <summary>TTL of the leader's lease: how long a crashed leader keeps others waiting. Default 5 s (etcd's floor is about 2 s).</summary>
    [Range(typeof(TimeSpan), "00:00:02", "00:05:00")]
    public TimeSpan LeaseTtl { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Time limit of one request to one member. Default 3 s.</summary>
    [Range(typeof(TimeSpan), "00:00:00.100", "00:01:00")]
    public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromSeconds(3);

    /// <summary>How long a call keeps trying other members and retrying before it reports etcd unreachable. Default 10 s.</summary>
    [Range(typeof(TimeSpan), "00:00:00.100", "00:10:00")]
    public TimeSpan RetryTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How often a waiting candidate checks whether it leads now. Default 200 ms.</summary>
    [Range(typeof(TimeSpan), "00:00:00.010", "00:00:10")]
    public TimeSpan CampaignPollInterval { get; set; } = TimeSpan.FromMilliseconds(200);

    public IReadOnlyList<Uri> EndpointUris()
    {
        var uris = new List<Uri>();
        foreach (var part in Endpoints.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            uris.Add(new Uri(part.TrimEnd('/') + "/"));
        }
        return uris;
    }
}
