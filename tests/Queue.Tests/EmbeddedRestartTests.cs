using System.Net;
using Queue.Contracts.Jobs;
using Queue.Tests.Infrastructure;
using Queue.Worker.Apps;

namespace Queue.Tests;

/// <summary>
/// The embedded engine's state survives <c>kill -9</c>: an ingress killed mid-job and started again on the
/// same data folder lists every job, keeps ended ones as they were and finishes the running one exactly.
/// </summary>
public sealed class EmbeddedRestartTests : IAsyncLifetime
{
    private readonly string folder = Path.Combine(Path.GetTempPath(), "queue-restart", Guid.NewGuid().ToString("N"));

    private string DataPath => Path.Combine(folder, "data");

    public Task InitializeAsync()
    {
        RepoPaths.CopyBooksTo(Path.Combine(DataPath, "books"));
        return Task.CompletedTask;
    }

    public Task DisposeAsync()
    {
        Directory.Delete(folder, recursive: true);
        return Task.CompletedTask;
    }

    private Task<ServiceProcess> StartIngressAsync() => ServiceProcess.StartAsync("Queue.Ingress", folder, new Dictionary<string, string>
    {
        // Relative on purpose: the data folder is the working directory's ./data.
        ["Queue__Adapters__DataPath"] = "data",
        ["Queue__Worker__Slots"] = "2",
        ["Queue__Worker__TempPath"] = Path.Combine(folder, "tmp"),
        ["Queue__Worker__CancelCheckInterval"] = "00:00:00.200",
        ["Queue__Coordinator__PollInterval"] = "00:00:00.100",
    });

    [Theory]
    [InlineData(JobState.Mapping)]
    [InlineData(JobState.Reducing)]
    public async Task AJobKilledMidPhaseFinishesExactlyAfterARestart(JobState killIn)
    {
        var reference = SequentialReference.Run(new WordCountApp(), SequentialReference.ReadFolder(RepoPaths.Gutenberg));
        string finished, cancelled, running;
        var ingress = await StartIngressAsync();
        try
        {
            Assert.Contains($"data folder {DataPath}", ingress.Output, StringComparison.Ordinal);
            using var client = new JobClient(ingress.BaseAddress);
            finished = await client.SubmitAsync(new { app = "wordcount", input = "books", mapTasks = 4, reduceTasks = 2 });
            Assert.Equal(JobState.Succeeded, (await client.WaitAsync(finished, TimeSpan.FromMinutes(1))).Status.State);

            // Every attempt of these sleeps 1.5 s (alive, renewing its lease) before it counts words.
            var slow = new Dictionary<string, string> { ["stallRate"] = "1", ["stallSeconds"] = "1.5" };
            cancelled = await client.SubmitAsync(new { app = "crash", input = "books", mapTasks = 8, reduceTasks = 2, args = slow });
            Assert.Equal(HttpStatusCode.Accepted, (await client.Http.DeleteAsync($"/jobs/{cancelled}")).StatusCode);
            Assert.Equal(JobState.Cancelled, (await client.WaitAsync(cancelled, TimeSpan.FromMinutes(1))).Status.State);

            running = await client.SubmitAsync(new { app = "crash", input = "books", mapTasks = 6, reduceTasks = 4, args = slow });
            var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(1);
            while (true)
            {
                var status = (await client.GetAsync(running)).Status;
                var phase = killIn == JobState.Mapping ? status.Map : status.Reduce;
                if (status.State == killIn && phase.Done >= 1 && phase.Done < phase.Total)
                {
                    break;
                }
                Assert.True(status.State <= killIn && DateTime.UtcNow < deadline, $"Missed the {killIn} phase: {status.State}, map {status.Map.Done}/{status.Map.Total}, reduce {status.Reduce.Done}/{status.Reduce.Total}");
                await Task.Delay(50);
            }
            ingress.Signal("KILL");
            Assert.True(await ingress.WaitForExitAsync(TimeSpan.FromSeconds(10)));
        }
        finally
        {
            await ingress.DisposeAsync();
        }

        await using var restarted = await StartIngressAsync();
        using var again = new JobClient(restarted.BaseAddress);
        var listed = await again.Http.GetStringAsync("/jobs");
        foreach (var id in new[] { finished, cancelled, running })
        {
            Assert.Contains(id, listed, StringComparison.Ordinal);
        }
        Assert.Equal(JobState.Succeeded, (await again.GetAsync(finished)).Status.State);
        Assert.Equal(reference, await again.OutputAsync(finished));
        Assert.Equal(JobState.Cancelled, (await again.GetAsync(cancelled)).Status.State);

        var view = await again.WaitAsync(running, TimeSpan.FromMinutes(2));
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error + "\n" + restarted.Output);
        Assert.Equal(reference, await again.OutputAsync(running));
        // Nothing counted twice: the reduce input is exactly the distinct words of one pass over the books.
        Assert.Equal(reference.Count, view.Status.ReduceCounters.InputGroups);
    }
}
