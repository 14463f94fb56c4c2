using Queue.Contracts.Apps;
using Queue.Contracts.Ports;

namespace Queue.Contracts.Jobs;

/// <summary>
/// Accepts a job request: validates it, checks the app and the input exist, and stores it as Pending.
/// Nothing is stored for a rejected request. Shared by the HTTP ingress and the CLI.
/// </summary>
public sealed class JobSubmission(JobStore jobs, IBlobStore blobs, IAppCatalog apps, Microsoft.Extensions.Options.IOptions<StorageOptions> storage, TimeProvider time)
{
    /// <summary>Submits as nobody in particular: the API is not protected (the CLI's in-process engine, tests).</summary>
    public Task<(string? Id, RequestError? Error)> SubmitAsync(JobRequest request, CancellationToken cancellationToken) =>
        SubmitAsync(request, Submitter.Anyone, cancellationToken);

    /// <summary>
    /// Submits for <paramref name="submitter"/>: the job is recorded as its own, and it may only read what
    /// it may read itself (the input container, the scripts, a map-only job it owns), or a job could copy
    /// another's data into its output.
    /// </summary>
    public async Task<(string? Id, RequestError? Error)> SubmitAsync(JobRequest request, Submitter submitter, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        var id = JobRequestValidator.NewJobId(now);
        // The job's trace starts here (under the HTTP request's span, when that is traced).
        using var span = QueueTracing.Ingress.StartActivity("job submit");
        span?.SetTag("queue.job", id);
        if (JobRequestValidator.TryCreateSpec(request, id, now, out var spec) is { } invalid)
        {
            span?.SetStatus(System.Diagnostics.ActivityStatusCode.Error, invalid.Title);
            return (null, invalid);
        }
        spec = spec! with { Owner = submitter.Name, TraceParent = QueueTracing.CurrentParent() };
        if (spec.MapJob is { } mapJobId)
        {
            if (await jobs.GetAsync(mapJobId, cancellationToken) is not { } mapJob || !(submitter.IsAdmin || (mapJob.Spec.Owner is { } owner && owner == submitter.Name)))
            {
                return (null, new RequestError(404, "Map job not found", $"There is no job '{mapJobId}' to reduce."));
            }
            if (!mapJob.Spec.MapOnly || mapJob.Status.State != JobState.Succeeded)
            {
                return (null, new RequestError(409, "Not a finished map-only job", $"Job '{mapJobId}' is {mapJob.Status.State}{(mapJob.Spec.MapOnly ? "" : " and not a map-only job")}; reduce a succeeded 'phase: map' job."));
            }
            // Partitions were fixed when the map ran.
            spec = spec with { ReduceTasks = mapJob.Spec.ReduceTasks, InputContainer = mapJob.Spec.InputContainer, InputPrefix = mapJob.Spec.InputPrefix };
        }
        if (!submitter.MayRead(spec.InputContainer))
        {
            return (null, new RequestError(403, "Not permitted", $"This identity may not read the container '{spec.InputContainer}'."));
        }
        if (spec.App == JobRequestValidator.StreamingApp && !submitter.MayRead(storage.Value.ScriptsContainer))
        {
            return (null, new RequestError(403, "Not permitted", $"This identity may not read the scripts container '{storage.Value.ScriptsContainer}'."));
        }
        if (spec.App == JobRequestValidator.StreamingApp)
        {
            foreach (var script in new[] { spec.Mapper, spec.Reducer, spec.Combiner })
            {
                if (script is not null && await blobs.GetPropertiesAsync(storage.Value.ScriptsContainer, script, cancellationToken) is null)
                {
                    return (null, new RequestError(422, "Script not found", $"There is no script '{script}' in the '{storage.Value.ScriptsContainer}' container."));
                }
            }
        }
        else if (!apps.Exists(spec.App))
        {
            return (null, new RequestError(422, "Unknown app", $"There is no app named '{spec.App}'. Known apps: {string.Join(", ", apps.Names)}."));
        }
        else
        {
            try
            {
                apps.Create(spec.App, spec.Args);
            }
            catch (ArgumentException e)
            {
                return (null, new RequestError(400, "Invalid app arguments", e.Message));
            }
        }
        if (spec.MapJob is null && !await blobs.AnyAsync(spec.InputContainer, spec.InputPrefix, cancellationToken))
        {
            return (null, new RequestError(404, "Input not found", $"No blobs found under '{spec.InputContainer}/{spec.InputPrefix}'."));
        }
        if (!await jobs.CreateAsync(spec, cancellationToken))
        {
            return (null, new RequestError(409, "Job id taken", $"A job with id '{id}' exists already; submit again."));
        }
        return (id, null);
    }
}

/// <summary>Who submits a job, and which containers it may read; <see cref="Name"/> is null when the API is not protected.</summary>
public sealed record Submitter(string? Name, bool IsAdmin, Func<string, bool> MayRead)
{
    public static Submitter Anyone { get; } = new(null, true, static _ => true);
}
