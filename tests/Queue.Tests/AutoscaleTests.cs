using System.Net.Http.Json;
using Queue.Contracts;
using Queue.Contracts.Jobs;
using Queue.Tests.Infrastructure;
using Queue.Worker.Apps;

namespace Queue.Tests;

/// <summary>
/// <c>scripts/cluster.sh up --autoscale 0:3</c> as a user runs it (etcd, RabbitMQ, three coordinators, the
/// ingress, no workers, the autoscaler), a burst of jobs, and the dashboard watching it in headless Chromium.
/// Shares port 5000 with the README test, so it runs in that collection.
/// </summary>
[Collection("readme")]
public sealed class AutoscaleTests : IAsyncLifetime
{
    private readonly ScriptedCluster cluster = new("queue-autoscale", new Dictionary<string, string>
    {
        ["QUEUE_AUTOSCALE_POLL"] = "0.5",
        ["QUEUE_AUTOSCALE_WINDOW"] = "4",
        ["QUEUE_AUTOSCALE_COOLDOWN"] = "4",
    });

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await cluster.DisposeAsync();

    [Fact]
    public async Task ABurstScalesWorkersFromZeroToMaxAndBackWithEveryTaskRunOnce()
    {
        var (exit, output) = await cluster.RunAsync("up --autoscale 0:3", TimeSpan.FromMinutes(5));
        Assert.True(exit == 0, output);
        RepoPaths.CopyBooksTo(Path.Combine(cluster.Root, "data", "books"));
        using var client = new JobClient(new Uri("http://127.0.0.1:5000"));
        Assert.Equal(0, (await ScaleAsync(client)).Workers);

        await using var browser = await HeadlessChromium.StartAsync();
        await browser.NavigateAsync(new Uri("http://127.0.0.1:5000/"));

        var ids = new List<string>();
        for (var i = 0; i < 8; i++)
        {
            ids.Add(await client.SubmitAsync(new { app = "wordcount", input = "books", mapTasks = 16, reduceTasks = 4 }));
        }
        var maxWorkers = 0;
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(4);
        var pending = new HashSet<string>(ids);
        while (pending.Count > 0)
        {
            Assert.True(DateTime.UtcNow < deadline, $"{pending.Count} jobs did not end; autoscaler:\n{AutoscalerLog()}");
            maxWorkers = Math.Max(maxWorkers, (await ScaleAsync(client)).Workers);
            foreach (var id in pending.ToList())
            {
                if ((await client.GetAsync(id)).Status.IsTerminal)
                {
                    pending.Remove(id);
                }
            }
            await Task.Delay(200);
        }
        Assert.Equal(3, maxWorkers);

        // After the burst: the window and the cool-down pass, and the workers go back to none.
        var idle = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while ((await ScaleAsync(client)).Workers > 0)
        {
            Assert.True(DateTime.UtcNow < idle, $"Workers did not scale back to zero; autoscaler:\n{AutoscalerLog()}");
            await Task.Delay(250);
        }
        await Task.Delay(1500); // one more dashboard refresh with zero workers
        Assert.Equal("3", (await browser.EvaluateAsync("document.getElementById('load').dataset.maxWorkers"))!.GetValue<string>());
        var png = await browser.ScreenshotAsync();
        var folder = Path.Combine(RepoPaths.Root, "artifacts", "screenshots");
        Directory.CreateDirectory(folder);
        await File.WriteAllBytesAsync(Path.Combine(folder, "autoscale.png"), png);

        var reference = SequentialReference.Run(new WordCountApp(), SequentialReference.ReadFolder(RepoPaths.Gutenberg));
        foreach (var id in ids)
        {
            var details = await client.GetDetailsAsync(id);
            Assert.True(details.Status.State == JobState.Succeeded, details.Status.Error);
            Assert.Equal(reference, await client.OutputAsync(id));
            // Nothing lost, nothing run to completion twice: one attempt per task, none killed.
            Assert.All(details.Tasks, t => Assert.Equal(1, t.Attempts));
            Assert.Equal(0, details.Status.KilledAttempts);
        }
        var log = AutoscalerLog();
        Assert.Contains("start auto-3", log, StringComparison.Ordinal);
        Assert.Contains("stop auto-", log, StringComparison.Ordinal);
        Assert.DoesNotContain("exited with 1", log, StringComparison.Ordinal);
        foreach (var workerLog in Directory.GetFiles(Path.Combine(cluster.Root, "logs"), "worker-auto-*.log"))
        {
            // A stopped worker handed back nothing: it was idle, or it drained its tasks to the end.
            Assert.DoesNotContain("abandoned at shutdown", File.ReadAllText(workerLog), StringComparison.Ordinal);
        }
    }

    private static async Task<ScaleSignal> ScaleAsync(JobClient client) =>
        (await client.Http.GetFromJsonAsync("/scale", QueueJsonContext.Default.ScaleSignal))!;

    private string AutoscalerLog()
    {
        var path = Path.Combine(cluster.Root, "logs", "autoscaler.log");
        return File.Exists(path) ? File.ReadAllText(path) : "(no log)";
    }
}
