using System.Security.Claims;
using System.Security.Cryptography;
using System.Text;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Queue.Hosting.Security;

/// <summary>
/// API keys as named principals: the presented key's SHA-256 is compared (in constant time) with each
/// configured principal's. No key is no result (the request is anonymous); an unknown key fails.
/// </summary>
public sealed class ApiKeyAuthenticationHandler(
    IOptionsMonitor<AuthenticationSchemeOptions> options,
    ILoggerFactory logger,
    UrlEncoder encoder,
    IOptions<AuthOptions> auth) : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
{
    public const string SchemeName = "ApiKey";
    public const string Header = "X-Api-Key";

    private readonly List<(ApiKeyPrincipal Principal, byte[] Hash)> keys = Hashes(auth.Value);

    protected override Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        var presented = Presented(Request);
        if (string.IsNullOrEmpty(presented))
        {
            return Task.FromResult(AuthenticateResult.NoResult());
        }
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(presented));
        ApiKeyPrincipal? match = null;
        foreach (var (principal, expected) in keys)
        {
            // Every key is compared, so the time taken does not tell which (or whether one) matched.
            if (CryptographicOperations.FixedTimeEquals(hash, expected))
            {
                match = principal;
            }
        }
        if (match is null)
        {
            return Task.FromResult(AuthenticateResult.Fail("The credential is not valid."));
        }
        var claims = new List<Claim> { new(ClaimTypes.Name, match.Name) };
        foreach (var role in match.Roles)
        {
            claims.Add(new Claim(ClaimTypes.Role, role));
        }
        foreach (var container in match.Containers)
        {
            claims.Add(new Claim(QueueAccess.ContainerClaim, container));
        }
        var identity = new ClaimsIdentity(claims, SchemeName, ClaimTypes.Name, ClaimTypes.Role);
        return Task.FromResult(AuthenticateResult.Success(new AuthenticationTicket(new ClaimsPrincipal(identity), SchemeName)));
    }

    /// <summary>The key in <c>X-Api-Key</c>, or a bearer credential that is not a JSON web token.</summary>
    public static string? Presented(HttpRequest request)
    {
        string? key = request.Headers[Header];
        if (!string.IsNullOrEmpty(key))
        {
            return key;
        }
        return BearerCredential(request) is { } bearer && !LooksLikeJwt(bearer) ? bearer : null;
    }

    public static string? BearerCredential(HttpRequest request)
    {
        var authorization = request.Headers.Authorization.ToString();
        return authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? authorization["Bearer ".Length..].Trim() : null;
    }

    /// <summary>A compact JWS: three base64url parts separated by dots.</summary>
    public static bool LooksLikeJwt(string credential)
    {
        var dots = 0;
        foreach (var c in credential)
        {
            if (c == '.')
            {
                dots++;
            }
            else if (!char.IsAsciiLetterOrDigit(c) && c is not '-' and not '_')
            {
                return false;
            }
        }
        return dots == 2;
    }

    private static List<(ApiKeyPrincipal, byte[])> Hashes(AuthOptions options)
    {
        var hashes = new List<(ApiKeyPrincipal, byte[])>(options.ApiKeys.Count);
        foreach (var principal in options.ApiKeys)
        {
            hashes.Add((principal, Convert.FromHexString(principal.KeySha256)));
        }
        return hashes;
    }
}
