using Microsoft.AspNetCore.Diagnostics;
using Queue.Contracts.Ports;

namespace Queue.Ingress;

/// <summary>
/// Exceptions that are the client's fault become their 4xx problem, logged briefly as such (path only,
/// never the query string): a body sent too slowly (408) or cut off (400) — Kestrel's
/// <see cref="BadHttpRequestException"/> — a blob name an adapter refused (400), a name clash (409).
/// A client that went away gets nothing and nothing is logged. Anything else stays a 500 for the middleware.
/// </summary>
internal sealed partial class ClientFaultHandler(IProblemDetailsService problems, ILogger<ClientFaultHandler> logger) : IExceptionHandler
{
    public async ValueTask<bool> TryHandleAsync(HttpContext context, Exception exception, CancellationToken cancellationToken)
    {
        if (exception is OperationCanceledException && context.RequestAborted.IsCancellationRequested)
        {
            return true;
        }
        var (status, title) = exception switch
        {
            BadHttpRequestException bad when bad.StatusCode == StatusCodes.Status408RequestTimeout => (408, "Request body too slow"),
            BadHttpRequestException bad when bad.StatusCode == StatusCodes.Status413PayloadTooLarge => (413, "Request too large"),
            BadHttpRequestException bad => (bad.StatusCode is >= 400 and < 500 ? bad.StatusCode : 400, "Bad request"),
            InvalidBlobNameException => (400, "Invalid blob name"),
            BlobConflictException => (409, "Blob name taken"),
            _ => (0, ""),
        };
        if (status == 0)
        {
            return false;
        }
        LogClientFault(logger, context.Request.Method, context.Request.Path.Value ?? "", status, exception.Message);
        if (context.Response.HasStarted)
        {
            return true;
        }
        context.Response.StatusCode = status;
        // Keep-alive is pointless after a body that was not read to its end.
        context.Response.Headers.Connection = "close";
        await problems.TryWriteAsync(new ProblemDetailsContext
        {
            HttpContext = context,
            ProblemDetails = { Status = status, Title = title, Detail = exception.Message },
        });
        return true;
    }

    [LoggerMessage(4000, LogLevel.Information, "Client fault on {Method} {Path}: {Status} {Reason}")]
    private static partial void LogClientFault(ILogger logger, string method, string path, int status, string reason);
}
