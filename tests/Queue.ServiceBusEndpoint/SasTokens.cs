using System.Security.Cryptography;
using System.Text;

namespace Queue.ServiceBusEndpoint;

/// <summary>Rights of a shared access policy, as Service Bus names them.</summary>
[Flags]
public enum AccessRights
{
    None = 0,
    Send = 1,
    Listen = 2,
    Manage = 4,
    All = Send | Listen | Manage,
}

/// <summary>A shared access policy: its name, key and rights.</summary>
public sealed record AccessPolicy(string Name, string Key, AccessRights Rights);

/// <summary>
/// Checks <c>SharedAccessSignature sr=…&amp;sig=…&amp;se=…&amp;skn=…</c> tokens as Service Bus does: the
/// policy named by <c>skn</c>, a signature that is HMAC-SHA256 with its key over the URL-encoded resource, a
/// newline and the expiry, an expiry in the future, and a resource that covers what is asked for.
/// </summary>
internal static class SasTokens
{
    private const string Prefix = "SharedAccessSignature ";

    /// <summary>The policy whose token this is, when the token is valid for <paramref name="audience"/>; else null and why.</summary>
    public static (AccessPolicy? Policy, string? Refusal) Check(string? token, string audience, IReadOnlyList<AccessPolicy> policies)
    {
        if (token is null || !token.StartsWith(Prefix, StringComparison.Ordinal))
        {
            return (null, "not a SharedAccessSignature token");
        }
        string? resource = null, signature = null, expiry = null, keyName = null;
        foreach (var part in token[Prefix.Length..].Split('&'))
        {
            var equals = part.IndexOf('=', StringComparison.Ordinal);
            if (equals <= 0)
            {
                return (null, "a malformed token");
            }
            var value = part[(equals + 1)..];
            switch (part[..equals])
            {
                case "sr": resource = value; break;
                case "sig": signature = value; break;
                case "se": expiry = value; break;
                case "skn": keyName = value; break;
                default: return (null, $"an unknown token field '{part[..equals]}'");
            }
        }
        if (resource is null || signature is null || expiry is null || keyName is null)
        {
            return (null, "a token without sr, sig, se or skn");
        }
        var policy = policies.FirstOrDefault(p => p.Name == keyName);
        if (policy is null)
        {
            return (null, "an unknown policy");
        }
        using var hmac = new HMACSHA256(Encoding.UTF8.GetBytes(policy.Key));
        var expected = Convert.ToBase64String(hmac.ComputeHash(Encoding.UTF8.GetBytes(resource + "\n" + expiry)));
        if (!CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(expected), Encoding.UTF8.GetBytes(Uri.UnescapeDataString(signature))))
        {
            return (null, "a bad signature");
        }
        if (!long.TryParse(expiry, out var seconds) || DateTimeOffset.FromUnixTimeSeconds(seconds) <= DateTimeOffset.UtcNow)
        {
            return (null, "an expired token");
        }
        if (!Covers(Uri.UnescapeDataString(resource), audience))
        {
            return (null, "a token for another resource");
        }
        return (policy, null);
    }

    /// <summary>Whether a token for <paramref name="resource"/> may be used for <paramref name="audience"/> (scheme aside, a path prefix).</summary>
    public static bool Covers(string resource, string audience) =>
        Normalize(audience).StartsWith(Normalize(resource), StringComparison.OrdinalIgnoreCase);

    private static string Normalize(string uri)
    {
        var scheme = uri.IndexOf("://", StringComparison.Ordinal);
        var rest = scheme >= 0 ? uri[(scheme + 3)..] : uri;
        return rest.TrimEnd('/') + "/";
    }
}
