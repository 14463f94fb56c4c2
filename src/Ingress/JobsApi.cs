using System.Security.Claims;
using System.Text.Json;
using Microsoft.Extensions.Options;
using Queue.Hosting.Security;
using Queue.Contracts;
using Queue.Contracts.Jobs;
using Queue.Contracts.Ports;

namespace Queue.Ingress;

/// <summary>The HTTP API: submit, list, inspect, read the output of, and cancel jobs.</summary>
public static class JobsApi
{
    public static IEndpointRouteBuilder MapJobsApi(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapPost("/jobs", SubmitAsync).RequireAuthorization(QueuePolicies.Submit);
        endpoints.MapPost("/request", SubmitSeedRequestAsync).RequireAuthorization(QueuePolicies.Submit);
        endpoints.MapGet("/jobs", ListAsync).RequireAuthorization(QueuePolicies.Read);
        endpoints.MapGet("/jobs/{id}", GetAsync).RequireAuthorization(QueuePolicies.Read);
        endpoints.MapGet("/jobs/{id}/tasks", GetTasksAsync).RequireAuthorization(QueuePolicies.Read);
        endpoints.MapGet("/jobs/{id}/output", GetOutputAsync).RequireAuthorization(QueuePolicies.Read);
        endpoints.MapGet("/jobs/{id}/timeline", GetTimelineAsync).RequireAuthorization(QueuePolicies.Read)
            .WithSummary("The job's attempts laid out on its workers' slots, for its page")
            .WithDescription("One bar per attempt (queued, started, ended; outcome: Running, Succeeded, Failed, Killed, Lost, OutputLost; backup; the winner), on lanes per worker slot, with the job's spec and status, its output parts with sizes and its dead-letter reasons.")
            .Produces<JobTimeline>();
        endpoints.MapDelete("/jobs/{id}", CancelAsync).RequireAuthorization(QueuePolicies.Submit);
        return endpoints;
    }

    /// <summary>The jobs this principal may see (its own; an admin's, every one), newest first.</summary>
    private static async Task<IResult> ListAsync(ClaimsPrincipal user, JobStore jobs, QueueAccess access, CancellationToken ct)
    {
        var all = await jobs.ListAsync(ct);
        if (access.IsAdmin(user))
        {
            return Results.Ok(all);
        }
        var visible = new List<JobView>();
        foreach (var job in all)
        {
            if (access.CanSee(user, job.Spec))
            {
                visible.Add(job);
            }
        }
        return Results.Ok(visible);
    }

    /// <summary>The job if this principal may see it; another's job reads as missing, so ids of others' jobs are not confirmed.</summary>
    private static async Task<JobView?> VisibleAsync(string id, ClaimsPrincipal user, JobStore jobs, QueueAccess access, CancellationToken ct) =>
        JobRequestValidator.IsJobId(id) && await jobs.GetAsync(id, ct) is { } view && access.CanSee(user, view.Spec) ? view : null;

    private static async Task<IResult> SubmitAsync(HttpRequest http, ClaimsPrincipal user, QueueAccess access, JobSubmission submission, IOptions<IngressOptions> options, CancellationToken ct)
    {
        // The request's span (when traced) is the job's root: name it for what it is.
        if (System.Diagnostics.Activity.Current is { Source.Name: "Microsoft.AspNetCore" } span)
        {
            span.DisplayName = "POST /jobs";
        }
        var (request, error) = await ReadJsonAsync(http, options.Value.MaxRequestBodyBytes, QueueJsonContext.Default.JobRequest, ct);
        if (error is not null)
        {
            return error;
        }
        var (id, rejected) = await submission.SubmitAsync(request!, access.Submitter(user), ct);
        if (rejected is not null)
        {
            return Problem(rejected.Status, rejected.Title, rejected.Detail);
        }
        var location = $"/jobs/{id}";
        return Results.Accepted(location, new JobCreated(id!, location));
    }

    /// <summary>
    /// The seeds' request, unchanged: <c>{"mapper","reducer","data","m_num","r_num"}</c>. <c>data</c> names a
    /// container, or else a prefix inside the source container (<c>Queue:Ingress:SourceContainer</c>).
    /// </summary>
    private static async Task<IResult> SubmitSeedRequestAsync(HttpRequest http, ClaimsPrincipal user, QueueAccess access, JobSubmission submission, IBlobStore blobs,
        IOptions<IngressOptions> options, CancellationToken ct)
    {
        var submitter = access.Submitter(user);
        var (seed, error) = await ReadJsonAsync(http, options.Value.MaxRequestBodyBytes, QueueJsonContext.Default.SeedRequest, ct);
        if (error is not null)
        {
            return error;
        }
        if (seed!.Phase == "reduce")
        {
            var (reduceId, refused) = await submission.SubmitAsync(new JobRequest { Reducer = seed.Reducer ?? "", Phase = "reduce", MapJob = seed.Job }, submitter, ct);
            return refused is not null ? Problem(refused.Status, refused.Title, refused.Detail) : Results.Accepted($"/jobs/{reduceId}", new JobCreated(reduceId!, $"/jobs/{reduceId}"));
        }
        if (string.IsNullOrWhiteSpace(seed.Data))
        {
            return Problem(400, "Invalid request", "'data' is required: a container, or a prefix of the source container.");
        }
        var input = seed.Data;
        if (!input.Contains('/') && BlobNames.IsContainerName(input) && !await blobs.AnyAsync(input, "", ct))
        {
            input = $"{options.Value.SourceContainer}/{input}";
        }
        var (id, rejected) = await submission.SubmitAsync(new JobRequest
        {
            Mapper = seed.Mapper ?? "",
            Reducer = seed.Reducer,
            Input = input,
            MapTasks = seed.MapTasks,
            ReduceTasks = seed.ReduceTasks,
            Phase = seed.Phase,
        }, submitter, ct);
        if (rejected is not null)
        {
            return Problem(rejected.Status, rejected.Title, rejected.Detail);
        }
        var location = $"/jobs/{id}";
        return Results.Accepted(location, new JobCreated(id!, location));
    }

    private static async Task<IResult> GetAsync(string id, bool? tasks, ClaimsPrincipal user, JobStore jobs, QueueAccess access, CancellationToken ct)
    {
        if (await VisibleAsync(id, user, jobs, access, ct) is not { } view)
        {
            return NotFound(id);
        }
        return tasks == true
            ? Results.Ok(new JobDetails(view.Spec, view.Status, await jobs.GetTasksAsync(id, ct)))
            : Results.Ok(view);
    }

    private static async Task<IResult> GetTasksAsync(string id, ClaimsPrincipal user, JobStore jobs, QueueAccess access, CancellationToken ct)
    {
        if (await VisibleAsync(id, user, jobs, access, ct) is null)
        {
            return NotFound(id);
        }
        return Results.Ok(await jobs.GetTasksAsync(id, ct));
    }

    private static async Task<IResult> GetTimelineAsync(string id, ClaimsPrincipal user, JobStore jobs, QueueAccess access, IBlobStore blobs, TimeProvider time, CancellationToken ct)
    {
        if (await VisibleAsync(id, user, jobs, access, ct) is not { } view)
        {
            return NotFound(id);
        }
        var outputs = new List<OutputPart>();
        if (view.Status is { State: JobState.Succeeded, OutputContainer: { } container })
        {
            await foreach (var blob in blobs.ListAsync(container, id + "/", ct))
            {
                outputs.Add(new OutputPart(blob.Name, blob.Length));
            }
            outputs.Sort(static (a, b) => string.CompareOrdinal(a.Name, b.Name));
        }
        return Results.Ok(TimelineBuilder.Build(view, await jobs.GetTasksAsync(id, ct), outputs, time.GetUtcNow()));
    }

    private static async Task<IResult> GetOutputAsync(string id, ClaimsPrincipal user, JobStore jobs, QueueAccess access, IBlobStore blobs, CancellationToken ct)
    {
        if (await VisibleAsync(id, user, jobs, access, ct) is not { } view)
        {
            return NotFound(id);
        }
        if (view.Status.State != JobState.Succeeded || view.Status.OutputContainer is not { } container)
        {
            return Problem(409, "No output yet", $"Job '{id}' is {view.Status.State}; its output can be read once it has succeeded.");
        }
        return Results.Stream(async body =>
        {
            foreach (var part in view.Status.Outputs)
            {
                await using var stream = await blobs.OpenReadAsync(container, part, 0, null, ct);
                await stream.CopyToAsync(body, ct);
            }
        }, "text/plain; charset=utf-8");
    }

    private static async Task<IResult> CancelAsync(string id, ClaimsPrincipal user, JobStore jobs, QueueAccess access, CancellationToken ct)
    {
        if (await VisibleAsync(id, user, jobs, access, ct) is not { } view)
        {
            return NotFound(id);
        }
        if (!access.CanCancel(user, view.Spec))
        {
            return Problem(403, "Not permitted", "This identity may not cancel that job.");
        }
        if (view.Status.IsTerminal)
        {
            return Problem(409, "Job already ended", $"Job '{id}' ended {view.Status.State}; there is nothing to cancel.");
        }
        await jobs.RequestCancelAsync(id, ct);
        return Results.Accepted($"/jobs/{id}", view with { });
    }

    /// <summary>
    /// Reads a bounded JSON body: 415 unless it is sent as JSON (a browser can post text/plain or a form
    /// across sites without asking first), 413 past the limit, 400 for anything that is not the request.
    /// </summary>
    private static async Task<(T? Request, IResult? Error)> ReadJsonAsync<T>(HttpRequest http, int limit, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type, CancellationToken ct)
        where T : class
    {
        if (!http.HasJsonContentType())
        {
            return (null, Problem(415, "Unsupported media type", "Send the request as 'Content-Type: application/json'."));
        }
        if (http.ContentLength > limit)
        {
            return (null, Problem(413, "Request too large", $"The body may be at most {limit} bytes."));
        }
        var buffer = new byte[limit + 1];
        var total = 0;
        int read;
        while (total < buffer.Length && (read = await http.Body.ReadAsync(buffer.AsMemory(total), ct)) > 0)
        {
            total += read;
        }
        if (total > limit)
        {
            return (null, Problem(413, "Request too large", $"The body may be at most {limit} bytes."));
        }
        if (total == 0)
        {
            return (null, Problem(400, "Invalid job request", "The body must be a JSON object describing the job."));
        }
        try
        {
            var request = JsonSerializer.Deserialize(buffer.AsSpan(0, total), type);
            return request is null
                ? (null, Problem(400, "Invalid job request", "The body must be a JSON object describing the job."))
                : (request, null);
        }
        catch (JsonException e)
        {
            // Our own words: the serializer's message names .NET types.
            var where = $"at {e.Path ?? "$"} (line {e.LineNumber + 1}, byte {e.BytePositionInLine + 1})";
            var what = e.Message.Contains("uplicate", StringComparison.Ordinal)
                ? $"A property appears twice {where}; give each once."
                : $"The body is not valid JSON for this request {where}: check the field's type and the syntax.";
            return (null, Problem(400, "Malformed JSON", what));
        }
    }

    private static IResult NotFound(string id) =>
        Problem(404, "Job not found", JobRequestValidator.IsJobId(id) ? $"There is no job '{id}'." : "That is not a job id.");

    private static IResult Problem(int status, string title, string detail) =>
        Results.Problem(detail: detail, statusCode: status, title: title);
}
