using System.Text.RegularExpressions;
using Queue.Contracts.Jobs;
using Queue.Tests.Infrastructure;

namespace Queue.Tests;

public sealed class MetricsTests(EmbeddedEngineFixture engine) : IClassFixture<EmbeddedEngineFixture>
{
    [Fact]
    public async Task PrometheusScrapesTaskCountersAndQueueDepthFromARunningEngine()
    {
        await using var prometheus = await PrometheusServer.StartAsync(engine.Ingress.BaseAddress);
        var id = await engine.Client.SubmitAsync(new { app = "wordcount", input = "books", mapTasks = 8, reduceTasks = 3 });
        var view = await engine.Client.WaitAsync(id, TimeSpan.FromMinutes(1));
        Assert.Equal(JobState.Succeeded, view.Status.State);

        // Other tests of this class may run jobs too: the counters are at least this job's tasks.
        var expectedMaps = view.Status.Map.Total;
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (true)
        {
            var maps = await prometheus.QueryAsync("sum(queue_tasks_completed_total{phase=\"map\"})");
            var reduces = await prometheus.QueryAsync("sum(queue_tasks_completed_total{phase=\"reduce\"})");
            var depth = await prometheus.QueryAsync("queue_queue_depth{queue=\"tasks\"}");
            if (maps is [var m] && m.Value >= expectedMaps && reduces is [var r] && r.Value >= 3 && depth.Count == 3)
            {
                Assert.Equal(["active", "dead_lettered", "leased"], depth.Select(d => d.Labels["state"]).Order());
                break;
            }
            Assert.True(DateTime.UtcNow < deadline, $"Prometheus did not show the job's tasks: maps {maps.Count}, reduces {reduces.Count}, depth series {depth.Count}.");
            await Task.Delay(500);
        }
        Assert.NotEmpty(await prometheus.QueryAsync("queue_task_duration_seconds_bucket{phase=\"map\",le=\"+Inf\"}"));
        Assert.NotEmpty(await prometheus.QueryAsync("queue_coordinator_leader == 1"));
        // The job's intermediates were handed to the cleanup, which reports what it has yet to delete.
        Assert.NotEmpty(await prometheus.QueryAsync("queue_cleanup_pending"));
        Assert.NotEmpty(await prometheus.QueryAsync("http_server_request_duration_seconds_count{http_route=\"/jobs\"}"));

        // Blob calls, by operation and container role: at least one map output per map and the manifest
        // written, then deleted; the manifest read by each reduce; the input read by the maps.
        for (deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30); ; await Task.Delay(500))
        {
            async Task<double> Calls(string operation, string role) =>
                await prometheus.QueryAsync($"sum(queue_blob_operations_total{{operation=\"{operation}\",container=\"{role}\"}})") is [var c] ? c.Value : 0;
            var (writes, deletes, reads, input) = (await Calls("write", "intermediate"), await Calls("delete", "intermediate"),
                await Calls("read", "intermediate"), await Calls("read", "input"));
            if (writes >= expectedMaps + 1 && deletes >= expectedMaps + 1 && reads >= 3 && input >= expectedMaps)
            {
                break;
            }
            Assert.True(DateTime.UtcNow < deadline, $"Prometheus did not show the job's blob calls: intermediate writes {writes}, deletes {deletes}, reads {reads}; input reads {input}.");
        }
    }

    [Fact]
    public async Task MetricsEndpointIsValidPrometheusText()
    {
        var text = await engine.Client.Http.GetStringAsync("/metrics");
        // A sample: name, optional labels, value, optional timestamp (the exporter writes one).
        var sample = new Regex("^[a-zA-Z_:][a-zA-Z0-9_:]*(\\{([a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\]|\\\\.)*\",?)*\\})? [-+0-9.eEInfNa]+( [0-9]+)?$");
        var typed = new HashSet<string>();
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            if (line.StartsWith("# TYPE ", StringComparison.Ordinal))
            {
                var parts = line.Split(' ');
                Assert.Contains(parts[3], new[] { "counter", "gauge", "histogram" });
                Assert.True(typed.Add(parts[2]), $"{parts[2]} is typed twice.");
            }
            else if (!line.StartsWith('#'))
            {
                Assert.Matches(sample, line);
            }
        }
        Assert.Contains("queue_worker_slots", typed);
        Assert.Contains("queue_tasks_started_total", typed);
    }

    [Theory]
    [InlineData("POST")]
    [InlineData("PUT")]
    [InlineData("DELETE")]
    public async Task MetricsAnswersOnlyGet(string method)
    {
        using var response = await engine.Client.Http.SendAsync(new HttpRequestMessage(new HttpMethod(method), "/metrics"));
        Assert.Equal(System.Net.HttpStatusCode.MethodNotAllowed, response.StatusCode);
        Assert.DoesNotContain("queue_", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }
}
