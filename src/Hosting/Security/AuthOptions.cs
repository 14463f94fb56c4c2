using System.ComponentModel.DataAnnotations;
using Microsoft.Extensions.Options;

namespace Queue.Hosting.Security;

/// <summary>
/// Who may call a service's HTTP API (<c>Queue:Auth</c>), the same for every service. With nothing
/// configured every endpoint is open (the laptop default); once any API key or a token issuer is
/// configured, every endpoint but <c>/healthz</c> needs a credential (<c>/metrics</c> too, unless
/// <see cref="PublicMetrics"/>), and reads stay open only with <see cref="OpenReads"/>.
/// </summary>
public sealed class AuthOptions
{
    public const string Section = "Queue:Auth";

    /// <summary>Named principals that present an API key (<c>X-Api-Key</c>, or <c>Authorization: Bearer</c>).</summary>
    public List<ApiKeyPrincipal> ApiKeys { get; set; } = [];

    /// <summary>OAuth 2.0 / OpenID Connect bearer tokens (Entra ID or any issuer).</summary>
    public JwtAuthOptions Jwt { get; set; } = new();

    /// <summary>Let anyone read (jobs, outputs, blobs, the pool's state) while writes need a credential. Default off.</summary>
    public bool OpenReads { get; set; }

    /// <summary>Serve <c>/metrics</c> without a credential (a Prometheus inside the network policy). Default off.</summary>
    public bool PublicMetrics { get; set; }

    /// <summary>Whether any credential is configured, i.e. whether the API is protected at all.</summary>
    public bool Enabled => ApiKeys.Count > 0 || Jwt.IsConfigured;
}

/// <summary>One API key's principal. The key itself is never stored: only its SHA-256.</summary>
public sealed class ApiKeyPrincipal
{
    /// <summary>The principal's name: jobs it submits are recorded as its own.</summary>
    public string Name { get; set; } = "";

    /// <summary>SHA-256 of the key's UTF-8 bytes, 64 hex digits (<c>printf %s "$KEY" | sha256sum</c>).</summary>
    public string KeySha256 { get; set; } = "";

    /// <summary><c>reader</c>, <c>submitter</c> and/or <c>admin</c>.</summary>
    public List<string> Roles { get; set; } = [];

    /// <summary>The blob containers it may use; none listed means every container but the engine's own.</summary>
    public List<string> Containers { get; set; } = [];
}

public sealed class JwtAuthOptions
{
    /// <summary>
    /// The issuer's OpenID Connect address, whose discovery document gives the issuer and signing keys
    /// (Entra ID: <c>https://login.microsoftonline.com/{tenant}/v2.0</c>).
    /// </summary>
    public string? Authority { get; set; }

    /// <summary>Without an authority: the <c>iss</c> to accept, with keys from <see cref="SigningKeyFile"/>.</summary>
    public string? Issuer { get; set; }

    /// <summary>A PEM file of the issuer's public signing key(s), for issuers without discovery (and tests).</summary>
    public string? SigningKeyFile { get; set; }

    /// <summary>The <c>aud</c> tokens must carry (Entra ID: the API's application id URI).</summary>
    public string? Audience { get; set; }

    /// <summary>The claim holding roles. Default <c>roles</c> (Entra ID's app roles).</summary>
    public string RoleClaim { get; set; } = "roles";

    /// <summary>The claim naming the principal (a job's owner). Default <c>sub</c>; Entra ID's stable one is <c>oid</c>.</summary>
    public string NameClaim { get; set; } = "sub";

    /// <summary>An optional claim listing the containers the principal may use (space-separated or repeated).</summary>
    public string ContainersClaim { get; set; } = "queue_containers";

    /// <summary>Tolerated clock difference with the issuer. Default 30 s.</summary>
    [Range(typeof(TimeSpan), "00:00:00", "00:10:00")]
    public TimeSpan ClockSkew { get; set; } = TimeSpan.FromSeconds(30);

    public bool IsConfigured => !string.IsNullOrEmpty(Authority) || !string.IsNullOrEmpty(Issuer);
}

/// <summary>The roles, from least to most.</summary>
public static class QueueRoles
{
    public const string Reader = "reader";
    public const string Submitter = "submitter";
    public const string Admin = "admin";

    public static readonly string[] All = [Reader, Submitter, Admin];
}

/// <summary>Checks the settings at start, so a mistyped key hash or role stops the service with a clear message.</summary>
public sealed class AuthOptionsValidator : IValidateOptions<AuthOptions>
{
    public ValidateOptionsResult Validate(string? name, AuthOptions options)
    {
        var errors = new List<string>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < options.ApiKeys.Count; i++)
        {
            var key = options.ApiKeys[i];
            var where = $"{AuthOptions.Section}:ApiKeys:{i}";
            if (string.IsNullOrWhiteSpace(key.Name) || !names.Add(key.Name))
            {
                errors.Add($"{where}:Name must be set and unique.");
            }
            if (key.KeySha256.Length != 64 || !IsHex(key.KeySha256))
            {
                errors.Add($"{where}:KeySha256 must be the key's SHA-256 as 64 hex digits (printf %s \"$KEY\" | sha256sum).");
            }
            if (key.Roles.Count == 0 || key.Roles.Exists(static r => Array.IndexOf(QueueRoles.All, r) < 0))
            {
                errors.Add($"{where}:Roles must name one or more of: {string.Join(", ", QueueRoles.All)}.");
            }
        }
        var jwt = options.Jwt;
        if (jwt.IsConfigured)
        {
            if (string.IsNullOrEmpty(jwt.Audience))
            {
                errors.Add($"{AuthOptions.Section}:Jwt:Audience must be set with an issuer.");
            }
            if (string.IsNullOrEmpty(jwt.Authority) && string.IsNullOrEmpty(jwt.SigningKeyFile))
            {
                errors.Add($"{AuthOptions.Section}:Jwt needs an Authority (OpenID Connect discovery) or an Issuer with a SigningKeyFile.");
            }
            if (jwt.SigningKeyFile is { } file && !File.Exists(file))
            {
                errors.Add($"{AuthOptions.Section}:Jwt:SigningKeyFile '{file}' does not exist.");
            }
        }
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }

    private static bool IsHex(string text)
    {
        foreach (var c in text)
        {
            if (!char.IsAsciiHexDigit(c))
            {
                return false;
            }
        }
        return true;
    }
}
