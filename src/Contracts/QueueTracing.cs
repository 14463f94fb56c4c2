using System.Diagnostics;

namespace Queue.Contracts;

/// <summary>
/// One trace per job: the ingress's request and submit span is its root; the leader's planning, phase
/// changes and the recording of each result, and every attempt on its worker, hang under it. The W3C
/// trace context travels in the job's spec, in every task message and in every event, so the trace
/// crosses RabbitMQ, Azure Queues and the embedded queue alike. Spans cost nothing unless a listener (an
/// exporter) is configured.
/// </summary>
public static class QueueTracing
{
    public static readonly ActivitySource Ingress = new("Queue.Ingress");
    public static readonly ActivitySource Coordinator = new("Queue.Coordinator");
    public static readonly ActivitySource Worker = new("Queue.Worker");

    /// <summary>The sources a tracer listens to: ours, and ASP.NET Core's (the ingress's HTTP request, the job's root).</summary>
    public static readonly string[] Sources = ["Queue.Ingress", "Queue.Coordinator", "Queue.Worker", "Microsoft.AspNetCore"];

    /// <summary>The current span as a W3C <c>traceparent</c>, to carry in a message; null when nothing traces.</summary>
    public static string? CurrentParent() => Activity.Current is { IdFormat: ActivityIdFormat.W3C } current ? current.Id : null;

    /// <summary>The context a carried <c>traceparent</c> names (default when there is none or it is malformed).</summary>
    public static ActivityContext Parent(string? traceParent) =>
        traceParent is not null && ActivityContext.TryParse(traceParent, null, out var context) ? context : default;

    /// <summary>The trace id of a carried <c>traceparent</c>, as hex.</summary>
    public static string? TraceId(string? traceParent) =>
        traceParent is not null && ActivityContext.TryParse(traceParent, null, out var context) ? context.TraceId.ToHexString() : null;

    /// <summary>Starts a span under a carried context (a message's), or under the current span when none is carried.</summary>
    public static Activity? Start(ActivitySource source, string name, string? traceParent, ActivityKind kind = ActivityKind.Internal) =>
        traceParent is null ? source.StartActivity(name, kind) : source.StartActivity(name, kind, Parent(traceParent));
}
