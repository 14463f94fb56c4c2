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

    /// <summary>
    /// etcd's own authentication: the user (with a role limited to <c>/queue/</c>) and its password. Both
    /// or neither. Never logged.
    /// </summary>
    public string? Username { get; set; }

    public string? Password { get; set; }

    /// <summary>PEM of the CA that signed the members' certificates; endpoints must then be <c>https://</c>. Default: the system's.</summary>
    public string? CaFile { get; set; }

    /// <summary>PEM certificate and key this client presents (etcd's <c>--client-cert-auth</c>).</summary>
    public string? ClientCertificateFile { get; set; }

    public string? ClientKeyFile { get; set; }

    /// <summary>Whether the members are reached over TLS: their endpoints are <c>https://</c>.</summary>
    public bool UseTls => EndpointUris() is { Count: > 0 } uris && uris[0].Scheme == Uri.UriSchemeHttps;

    /// <summary>Settings that cannot work together, in words an operator can act on.</summary>
    public IEnumerable<string> Problems()
    {
        var uris = EndpointUris();
        if (uris.Any(static u => u.Scheme is not ("http" or "https")) || uris.Select(static u => u.Scheme).Distinct().Count() > 1)
        {
            yield return $"{Section}:Endpoints must all be http:// or all https://.";
        }
        if (!UseTls && (CaFile is not null || ClientCertificateFile is not null))
        {
            yield return $"{Section}:CaFile and ClientCertificateFile need https:// endpoints.";
        }
        if (string.IsNullOrEmpty(Username) != string.IsNullOrEmpty(Password))
        {
            yield return $"{Section}:Username and Password go together.";
        }
        if ((ClientCertificateFile is null) != (ClientKeyFile is null))
        {
            yield return $"{Section}:ClientCertificateFile and ClientKeyFile go together.";
        }
        foreach (var file in new[] { CaFile, ClientCertificateFile, ClientKeyFile })
        {
            if (file is not null && !File.Exists(file))
            {
                yield return $"{Section}: the file '{file}' does not exist.";
            }
        }
    }

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
