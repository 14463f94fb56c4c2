using System.Security.Claims;
using Microsoft.Extensions.Options;
using Queue.Contracts;
using Queue.Contracts.Jobs;

namespace Queue.Hosting.Security;

/// <summary>
/// What an authenticated principal may touch: its own jobs (<c>admin</c>: all), and blob containers —
/// those its key or token lists, else all but the engine's own (intermediates and outputs, which only
/// an admin reads directly; others read their outputs through their jobs). With authentication off,
/// everything.
/// </summary>
public sealed class QueueAccess(IOptions<AuthOptions> auth, IOptions<StorageOptions> storage)
{
    public const string ContainerClaim = "queue:container";

    public bool Enabled { get; } = auth.Value.Enabled;

    /// <summary>The name jobs are recorded under: the principal's, or none with authentication off.</summary>
    public string? Owner(ClaimsPrincipal user) => Enabled ? user.Identity?.Name : null;

    public bool IsAdmin(ClaimsPrincipal user) => !Enabled || user.IsInRole(QueueRoles.Admin);

    public bool CanSubmit(ClaimsPrincipal user) => !Enabled || user.IsInRole(QueueRoles.Submitter) || user.IsInRole(QueueRoles.Admin);

    /// <summary>A job is visible to its owner and to admins; to everyone only when authentication is off or reads are open.</summary>
    public bool CanSee(ClaimsPrincipal user, JobSpec spec) =>
        IsAdmin(user) || (spec.Owner is { } owner && owner == user.Identity?.Name) || (auth.Value.OpenReads && user.Identity?.IsAuthenticated != true);

    /// <summary>Cancelling needs the submitter role and the job's ownership, or admin.</summary>
    public bool CanCancel(ClaimsPrincipal user, JobSpec spec) => IsAdmin(user) || (CanSubmit(user) && spec.Owner is { } owner && owner == user.Identity?.Name);

    public bool MayRead(ClaimsPrincipal user, string container) =>
        IsAdmin(user) || (auth.Value.OpenReads && user.Identity?.IsAuthenticated != true) || MayUse(user, container);

    public bool MayWrite(ClaimsPrincipal user, string container) => IsAdmin(user) || (CanSubmit(user) && MayUse(user, container));

    /// <summary>What a submission may read, for <see cref="JobSubmission"/>.</summary>
    public Submitter Submitter(ClaimsPrincipal user) => new(Owner(user), IsAdmin(user), container => MayUse(user, container) || IsAdmin(user));

    private bool MayUse(ClaimsPrincipal user, string container)
    {
        if (user.Identity?.IsAuthenticated != true)
        {
            return false;
        }
        var listed = false;
        foreach (var claim in user.FindAll(ContainerClaim))
        {
            listed = true;
            if (claim.Value == container)
            {
                return true;
            }
        }
        var options = storage.Value;
        return !listed && container != options.IntermediateContainer && container != options.OutputContainer;
    }
}
