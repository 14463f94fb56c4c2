using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using OpenTelemetry.Trace;
using Queue.Contracts;
using Queue.Contracts.Jobs;
using Queue.Hosting.Security;
using Queue.Ingress;
using Queue.Tests.Infrastructure;
using Queue.Worker.Apps;

namespace Queue.Tests;

/// <summary>One trace per job, from the ingress's request to the last commit.</summary>
public sealed class TracingTests
{
    /// <summary>
    /// The ingress with its embedded engine in this process (as its Program.cs builds it), every span kept
    /// by OpenTelemetry's in-memory exporter; a job submitted over HTTP.
    /// </summary>
    [Fact]
    public async Task AJobIsOneTraceFromTheRequestToTheLastCommitWithEveryAttemptUnderTheJob()
    {
        var folder = Path.Combine(Path.GetTempPath(), "queue-trace", Guid.NewGuid().ToString("N"));
        RepoPaths.CopyBooksTo(Path.Combine(folder, "data", "books"));
        var spans = new List<Activity>();
        var builder = Queue.Hosting.QueueApplication.CreateBuilder([]);
        builder.WebHost.UseUrls($"http://127.0.0.1:{ServiceProcess.FreePort()}");
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Queue:Adapters:DataPath"] = Path.Combine(folder, "data"),
            ["Queue:Worker:Slots"] = "2",
            ["Queue:Worker:TempPath"] = Path.Combine(folder, "tmp"),
            ["Queue:Coordinator:PollInterval"] = "00:00:00.100",
        });
        builder.AddQueueServiceDefaults();
        builder.AddQueueAdapters();
        builder.AddIngress();
        builder.Services.AddOpenTelemetry().WithTracing(tracing => tracing.AddSource(QueueTracing.Sources).AddInMemoryExporter(spans));
        await using var app = builder.Build();
        app.UseQueueAuth();
        app.MapQueueDefaultEndpoints();
        app.MapJobsApi();
        await app.StartAsync();
        try
        {
            using var client = new JobClient(new Uri(app.Urls.First()));
            var id = await client.SubmitAsync(new { app = "wordcount", input = "books", mapTasks = 6, reduceTasks = 2 });
            var view = await client.WaitAsync(id, TimeSpan.FromMinutes(1));
            Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
            Assert.Equal(SequentialReference.Run(new WordCountApp(), SequentialReference.ReadFolder(RepoPaths.Gutenberg)), await client.OutputAsync(id));
            var traceId = view.Status.TraceId;
            Assert.NotNull(traceId);

            // The leader's last spans end just after the status it wrote says Succeeded.
            Activity[] trace = [];
            for (var i = 0; i < 50 && !trace.Any(s => s.DisplayName == "job end"); i++)
            {
                await Task.Delay(100);
                lock (spans)
                {
                    trace = spans.Where(s => s.TraceId.ToHexString() == traceId).ToArray();
                }
            }
            var names = trace.Select(s => s.DisplayName).ToList();
            var request = Assert.Single(trace, s => s.Source.Name == "Microsoft.AspNetCore" && s.Kind == ActivityKind.Server);
            Assert.Equal("POST /jobs", request.DisplayName);
            Assert.Equal(default, request.ParentSpanId); // the request is the root
            var submit = Assert.Single(trace, s => s.DisplayName == "job submit");
            Assert.Equal(request.SpanId, submit.ParentSpanId);
            Assert.Contains("job plan", names);
            Assert.Contains("reduce phase start", names);
            Assert.Contains("job end", names);
            var attempts = trace.Where(s => s.DisplayName.EndsWith(" attempt", StringComparison.Ordinal)).ToList();
            Assert.Equal(view.Status.Attempts, attempts.Count);
            Assert.Equal(view.Status.Map.Total + view.Status.Reduce.Total, attempts.Select(a => a.GetTagItem("queue.task")).Distinct().Count());
            // Every span of the job descends from its submission: attempts, their steps, the leader's records.
            var byId = trace.ToDictionary(s => s.SpanId);
            foreach (var span in trace.Where(s => s != request && s != submit))
            {
                var at = span;
                while (at.ParentSpanId != submit.SpanId)
                {
                    Assert.True(byId.TryGetValue(at.ParentSpanId, out var parent), $"'{span.DisplayName}' does not descend from the job's submission.");
                    at = parent!;
                }
            }
            foreach (var attempt in attempts)
            {
                var children = trace.Where(s => s.ParentSpanId == attempt.SpanId).Select(s => s.DisplayName).ToList();
                Assert.Contains(children, c => c.EndsWith("commit", StringComparison.Ordinal));
                Assert.Contains(children, c => c.Contains(" record Succeeded", StringComparison.Ordinal));
            }
            // The last commit (a reduce's) is in it, before the job's end.
            var lastCommit = trace.Where(s => s.DisplayName == "reduce: commit").MaxBy(s => s.StartTimeUtc + s.Duration)!;
            Assert.True(lastCommit.StartTimeUtc + lastCommit.Duration <= trace.Single(s => s.DisplayName == "job end").StartTimeUtc + TimeSpan.FromMilliseconds(50));
        }
        finally
        {
            await app.StopAsync();
            Directory.Delete(folder, recursive: true);
        }
    }
}

/// <summary>An OTLP/HTTP receiver on loopback for the cluster's services, and the cluster pointed at it.</summary>
public sealed class TracingClusterFixture : ClusterFixture
{
    public OtlpReceiver Receiver { get; } = new();

    protected override async Task StartStorageAsync()
    {
        Receiver.Start();
        await base.StartStorageAsync();
    }

    protected override void ForService(string project, Dictionary<string, string> environment)
    {
        base.ForService(project, environment);
        environment["OTEL_EXPORTER_OTLP_ENDPOINT"] = Receiver.Address;
        environment["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf";
        environment["OTEL_BSP_SCHEDULE_DELAY"] = "200";
    }

    public override async Task DisposeAsync()
    {
        await base.DisposeAsync();
        Receiver.Dispose();
    }
}

public sealed class TracingClusterTests(TracingClusterFixture cluster) : IClassFixture<TracingClusterFixture>
{
    [Fact]
    public async Task SpansFromTheIngressTheLeaderAndBothWorkersShareTheJobsTrace()
    {
        var id = await cluster.Client.SubmitAsync(new { app = "wordcount", input = "books", mapTasks = 8, reduceTasks = 4 });
        var view = await cluster.Client.WaitAsync(id, TimeSpan.FromMinutes(2));
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        var traceId = view.Status.TraceId!;
        var leader = await cluster.LeaderAsync();
        List<OtlpReceiver.Span> spans = [];
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        bool Complete() =>
            spans.Any(s => s.Service == "Queue.Ingress" && s.Name == "job submit")
            && spans.Any(s => s.Service == "Queue.Coordinator" && s.Name == "job end")
            && spans.Where(s => s.Service == "Queue.Worker" && s.Name.EndsWith(" attempt", StringComparison.Ordinal)).Select(s => s.Instance).Distinct().Count() == 2;
        while (!Complete() && DateTime.UtcNow < deadline)
        {
            await Task.Delay(200);
            spans = cluster.Receiver.Spans(traceId);
        }
        Assert.True(Complete(), $"Spans of trace {traceId}: {string.Join(", ", spans.Select(s => $"{s.Service}:{s.Name}"))}");
        // The leader's spans come from the coordinator that leads (the one process that wrote the job's state).
        Assert.Single(spans.Where(s => s.Service == "Queue.Coordinator").Select(s => s.Instance).Distinct());
        Assert.Contains(spans, s => s.Service == "Queue.Ingress" && s.Name == "POST /jobs");
        var workers = spans.Where(s => s.Name.EndsWith(" attempt", StringComparison.Ordinal)).Select(s => s.Attributes.GetValueOrDefault("queue.worker")).Distinct().ToList();
        Assert.Equal(2, workers.Count);
        Assert.NotNull(leader);
    }
}

/// <summary>
/// Just enough of an OTLP/HTTP trace receiver for tests: POST /v1/traces with a protobuf
/// <c>ExportTraceServiceRequest</c>, read by walking the wire format (resource spans → resource
/// attributes; scope spans → spans: trace id, name, string attributes).
/// </summary>
public sealed class OtlpReceiver : IDisposable
{
    private readonly HttpListener listener = new();
    private readonly List<Span> spans = [];
    private readonly int port = ServiceProcess.FreePort();

    public sealed record Span(string TraceId, string Name, string Service, string Instance, Dictionary<string, string> Attributes);

    public string Address => $"http://127.0.0.1:{port}";

    public void Start()
    {
        listener.Prefixes.Add($"http://127.0.0.1:{port}/");
        listener.Start();
        _ = Task.Run(LoopAsync);
    }

    public List<Span> Spans(string traceId)
    {
        lock (spans)
        {
            return spans.Where(s => s.TraceId == traceId).ToList();
        }
    }

    private async Task LoopAsync()
    {
        while (listener.IsListening)
        {
            HttpListenerContext context;
            try
            {
                context = await listener.GetContextAsync();
            }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException)
            {
                return;
            }
            using var body = new MemoryStream();
            await context.Request.InputStream.CopyToAsync(body);
            var found = context.Request.Url!.AbsolutePath == "/v1/traces" ? Parse(body.ToArray()) : [];
            lock (spans)
            {
                spans.AddRange(found);
            }
            context.Response.StatusCode = context.Request.Url.AbsolutePath == "/v1/traces" ? 200 : 404;
            context.Response.ContentType = "application/x-protobuf";
            context.Response.Close();
        }
    }

    private static List<Span> Parse(byte[] request)
    {
        var found = new List<Span>();
        foreach (var (field, resourceSpans) in Fields(request))
        {
            if (field != 1)
            {
                continue;
            }
            var resource = new Dictionary<string, string>();
            var spanBytes = new List<byte[]>();
            foreach (var (f, value) in Fields(resourceSpans))
            {
                if (f == 1)
                {
                    foreach (var (rf, kv) in Fields(value))
                    {
                        if (rf == 1 && KeyValue(kv) is { } pair)
                        {
                            resource[pair.Key] = pair.Value;
                        }
                    }
                }
                else if (f == 2)
                {
                    foreach (var (sf, span) in Fields(value))
                    {
                        if (sf == 2)
                        {
                            spanBytes.Add(span);
                        }
                    }
                }
            }
            foreach (var span in spanBytes)
            {
                string traceId = "", name = "";
                var attributes = new Dictionary<string, string>();
                foreach (var (f, value) in Fields(span))
                {
                    switch (f)
                    {
                        case 1:
                            traceId = Convert.ToHexStringLower(value);
                            break;
                        case 5:
                            name = Encoding.UTF8.GetString(value);
                            break;
                        case 9 when KeyValue(value) is { } pair:
                            attributes[pair.Key] = pair.Value;
                            break;
                    }
                }
                found.Add(new Span(traceId, name, resource.GetValueOrDefault("service.name", ""), resource.GetValueOrDefault("service.instance.id", ""), attributes));
            }
        }
        return found;
    }

    /// <summary>A KeyValue whose AnyValue holds a string (field 1), or a number shown as text.</summary>
    private static (string Key, string Value)? KeyValue(byte[] message)
    {
        string? key = null, value = null;
        foreach (var (f, bytes) in Fields(message))
        {
            if (f == 1)
            {
                key = Encoding.UTF8.GetString(bytes);
            }
            else if (f == 2)
            {
                foreach (var (vf, v) in Fields(bytes))
                {
                    value = vf == 1 ? Encoding.UTF8.GetString(v) : value ?? Convert.ToHexString(v);
                }
            }
        }
        return key is null ? null : (key, value ?? "");
    }

    /// <summary>The length-delimited fields of a message (varints and fixed fields are skipped, but numbered).</summary>
    private static List<(int Field, byte[] Value)> Fields(byte[] message)
    {
        var fields = new List<(int, byte[])>();
        var at = 0;
        while (at < message.Length)
        {
            var key = Varint(message, ref at);
            var field = (int)(key >> 3);
            switch (key & 7)
            {
                case 0:
                    var number = Varint(message, ref at);
                    fields.Add((field, BitConverter.GetBytes(number)));
                    break;
                case 1:
                    fields.Add((field, message[at..(at + 8)]));
                    at += 8;
                    break;
                case 2:
                    var length = (int)Varint(message, ref at);
                    fields.Add((field, message[at..(at + length)]));
                    at += length;
                    break;
                case 5:
                    fields.Add((field, message[at..(at + 4)]));
                    at += 4;
                    break;
                default:
                    throw new InvalidDataException($"Wire type {key & 7} is not in OTLP.");
            }
        }
        return fields;
    }

    private static ulong Varint(byte[] bytes, ref int at)
    {
        ulong value = 0;
        for (var shift = 0; ; shift += 7)
        {
            var b = bytes[at++];
            value |= (ulong)(b & 0x7f) << shift;
            if (b < 0x80)
            {
                return value;
            }
        }
    }

    public void Dispose() => listener.Close();
}
