using System.Security.Claims;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Authorization.Policy;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.Tokens;

namespace Queue.Hosting.Security;

/// <summary>The authorization policies endpoints name.</summary>
public static class QueuePolicies
{
    /// <summary>Any role (reader, submitter, admin); anonymous too with <see cref="AuthOptions.OpenReads"/>.</summary>
    public const string Read = "queue:read";

    /// <summary>submitter or admin.</summary>
    public const string Submit = "queue:submit";

    /// <summary><c>/metrics</c>: as <see cref="Read"/>, or anonymous with <see cref="AuthOptions.PublicMetrics"/>.</summary>
    public const string Metrics = "queue:metrics";
}

/// <summary>
/// Authentication and authorization for every service: API keys (named principals, hashed) and
/// OAuth 2.0 / OpenID Connect bearer tokens, one policy scheme choosing between them by what was sent;
/// 401 and 403 as problem details that never say which part of a credential was wrong.
/// </summary>
public static class QueueAuthentication
{
    private const string SelectorScheme = "Queue";

    public static IServiceCollection AddQueueAuth(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<AuthOptions>().BindConfiguration(AuthOptions.Section).ValidateDataAnnotations().ValidateOnStart()
            .PostConfigure(options => AddLegacyKey(options, configuration));
        services.AddSingleton<IValidateOptions<AuthOptions>, AuthOptionsValidator>();
        services.AddSingleton<QueueAccess>();
        services.AddProblemDetails();
        services.AddSingleton<IAuthorizationMiddlewareResultHandler, ProblemAuthorizationResultHandler>();

        // Read once here, for the schemes and policies; the validator above still runs at start.
        var auth = configuration.GetSection(AuthOptions.Section).Get<AuthOptions>() ?? new AuthOptions();
        AddLegacyKey(auth, configuration);
        var authentication = services.AddAuthentication(SelectorScheme)
            .AddPolicyScheme(SelectorScheme, "API key or bearer token", scheme => scheme.ForwardDefaultSelector = context =>
                auth.Jwt.IsConfigured && string.IsNullOrEmpty(context.Request.Headers[ApiKeyAuthenticationHandler.Header])
                    && ApiKeyAuthenticationHandler.BearerCredential(context.Request) is { } bearer && ApiKeyAuthenticationHandler.LooksLikeJwt(bearer)
                    ? JwtBearerDefaults.AuthenticationScheme
                    : ApiKeyAuthenticationHandler.SchemeName)
            .AddScheme<AuthenticationSchemeOptions, ApiKeyAuthenticationHandler>(ApiKeyAuthenticationHandler.SchemeName, null);
        if (auth.Jwt.IsConfigured)
        {
            authentication.AddJwtBearer(jwt => ConfigureJwt(jwt, auth.Jwt));
        }

        services.AddAuthorization(authorization =>
        {
            var read = Policy(auth.Enabled && !auth.OpenReads, QueueRoles.All);
            authorization.AddPolicy(QueuePolicies.Read, read);
            authorization.AddPolicy(QueuePolicies.Submit, Policy(auth.Enabled, QueueRoles.Submitter, QueueRoles.Admin));
            authorization.AddPolicy(QueuePolicies.Metrics, auth.PublicMetrics ? Policy(false) : read);
            // An endpoint that names no policy is protected as a read, so a new one is never open by mistake.
            authorization.FallbackPolicy = read;
        });
        return services;
    }

    /// <summary>Authentication and authorization, after the static dashboard files (which hold no data) and before the endpoints.</summary>
    public static IApplicationBuilder UseQueueAuth(this IApplicationBuilder app) => app.UseAuthentication().UseAuthorization();

    /// <summary>The single <c>Queue:Ingress:ApiKey</c> of earlier versions: an admin principal named <c>api-key</c>.</summary>
    private static void AddLegacyKey(AuthOptions options, IConfiguration configuration)
    {
        if (configuration["Queue:Ingress:ApiKey"] is { Length: > 0 } key && !options.ApiKeys.Exists(static k => k.Name == "api-key"))
        {
            options.ApiKeys.Add(new ApiKeyPrincipal
            {
                Name = "api-key",
                KeySha256 = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key))),
                Roles = [QueueRoles.Admin],
            });
        }
        options.PublicMetrics |= configuration.GetValue<bool>("Queue:Ingress:PublicMetrics");
    }

    private static AuthorizationPolicy Policy(bool protect, params string[] roles)
    {
        var policy = new AuthorizationPolicyBuilder();
        return protect
            ? policy.RequireAuthenticatedUser().RequireRole(roles).Build()
            : policy.RequireAssertion(static _ => true).Build();
    }

    private static void ConfigureJwt(JwtBearerOptions jwt, JwtAuthOptions options)
    {
        // Never say which part of a token was wrong (no error_description in WWW-Authenticate).
        jwt.IncludeErrorDetails = false;
        jwt.MapInboundClaims = false;
        jwt.Authority = options.Authority;
        jwt.Audience = options.Audience;
        jwt.TokenValidationParameters = new TokenValidationParameters
        {
            ValidateIssuer = true,
            ValidIssuer = options.Issuer,
            ValidateAudience = true,
            ValidAudience = options.Audience,
            ValidateLifetime = true,
            RequireExpirationTime = true,
            RequireSignedTokens = true,
            ValidateIssuerSigningKey = true,
            ClockSkew = options.ClockSkew,
            NameClaimType = options.NameClaim,
            RoleClaimType = options.RoleClaim,
        };
        if (options.SigningKeyFile is { } file)
        {
            jwt.TokenValidationParameters.IssuerSigningKeys = SigningKeys(file);
        }
        jwt.Events = new JwtBearerEvents
        {
            OnTokenValidated = context =>
            {
                // The containers claim (space-separated or repeated) becomes the same claims API keys carry.
                if (context.Principal?.Identity is ClaimsIdentity identity)
                {
                    foreach (var claim in identity.FindAll(options.ContainersClaim).ToList())
                    {
                        foreach (var container in claim.Value.Split(' ', StringSplitOptions.RemoveEmptyEntries))
                        {
                            identity.AddClaim(new Claim(QueueAccess.ContainerClaim, container));
                        }
                    }
                }
                return Task.CompletedTask;
            },
        };
    }

    /// <summary>Every public key in a PEM file (RSA or EC), for issuers without discovery.</summary>
    private static List<SecurityKey> SigningKeys(string file)
    {
        var keys = new List<SecurityKey>();
        var pem = File.ReadAllText(file);
        var at = 0;
        while (PemEncoding.TryFind(pem.AsSpan(at), out var fields))
        {
            var block = pem.Substring(at + fields.Location.Start.Value, fields.Location.End.Value - fields.Location.Start.Value);
            at += fields.Location.End.Value;
            try
            {
                var rsa = RSA.Create();
                rsa.ImportFromPem(block);
                keys.Add(new RsaSecurityKey(rsa));
            }
            catch (ArgumentException)
            {
                var ec = ECDsa.Create();
                ec.ImportFromPem(block);
                keys.Add(new ECDsaSecurityKey(ec));
            }
        }
        if (keys.Count == 0)
        {
            throw new InvalidOperationException($"{AuthOptions.Section}:Jwt:SigningKeyFile holds no PEM public key.");
        }
        return keys;
    }

    /// <summary>401 and 403 as problem details, in the same words whatever was wrong with the credential.</summary>
    private sealed class ProblemAuthorizationResultHandler(IProblemDetailsService problems) : IAuthorizationMiddlewareResultHandler
    {
        private readonly AuthorizationMiddlewareResultHandler fallback = new();

        public async Task HandleAsync(RequestDelegate next, HttpContext context, AuthorizationPolicy policy, PolicyAuthorizationResult result)
        {
            if (result.Challenged)
            {
                await context.ChallengeAsync();
                await WriteAsync(context, StatusCodes.Status401Unauthorized, "Authentication required",
                    "Send a valid API key (X-Api-Key) or bearer token.");
            }
            else if (result.Forbidden)
            {
                await WriteAsync(context, StatusCodes.Status403Forbidden, "Not permitted", "This identity may not do that.");
            }
            else
            {
                await fallback.HandleAsync(next, context, policy, result);
            }
        }

        private async Task WriteAsync(HttpContext context, int status, string title, string detail)
        {
            context.Response.StatusCode = status;
            await problems.WriteAsync(new ProblemDetailsContext
            {
                HttpContext = context,
                ProblemDetails = { Status = status, Title = title, Detail = detail },
            });
        }
    }
}
