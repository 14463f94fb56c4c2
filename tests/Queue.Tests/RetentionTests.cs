using System.Net;
using Queue.Contracts.Jobs;
using Queue.Tests.Infrastructure;
using Queue.Worker.Apps;

namespace Queue.Tests;

/// <summary>An engine that keeps one six-task job's task records and two finished jobs, checked every 100 ms.</summary>
public sealed class RetentionEngineFixture : EmbeddedEngineFixture
{
    protected override IReadOnlyDictionary<string, string> Settings { get; } = new Dictionary<string, string>
    {
        ["Queue__Coordinator__RetentionInterval"] = "00:00:00.100",
        // One job's six tasks fit, two jobs' twelve do not.
        ["Queue__Coordinator__MaxTaskHistory"] = "10",
        ["Queue__Coordinator__MaxFinishedJobs"] = "2",
    };
}

/// <summary>
/// Finished jobs do not stay in the store for good (etcd's space quota would fill): their task records
/// go first, then the jobs; outputs stay, and the newest jobs keep everything.
/// </summary>
public sealed class RetentionTests(RetentionEngineFixture engine) : IClassFixture<RetentionEngineFixture>
{
    private static readonly object Job = new { app = "wordcount", input = "books", mapTasks = 4, reduceTasks = 2 };

    private async Task<string> RunAsync()
    {
        var id = await engine.Client.SubmitAsync(Job);
        var view = await engine.Client.WaitAsync(id, TimeSpan.FromMinutes(1));
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        return id;
    }

    private async Task<int> TaskCountAsync(string id) => (await engine.Client.GetDetailsAsync(id)).Tasks.Count;

    private async Task WaitForAsync(Func<Task<bool>> condition, string what)
    {
        for (var i = 0; i < 100; i++)
        {
            if (await condition())
            {
                return;
            }
            await Task.Delay(100);
        }
        Assert.Fail($"After 10 s: {what}");
    }

    [Fact]
    public async Task FinishedJobsLoseTheirTaskRecordsThenAreForgottenAndTheirOutputsStay()
    {
        var reference = SequentialReference.Run(new WordCountApp(), SequentialReference.ReadFolder(RepoPaths.Gutenberg));
        var first = await RunAsync();
        var firstParts = (await engine.Client.GetAsync(first)).Status.Outputs;
        var second = await RunAsync();

        // Only the newest finished job keeps its task records; the older one keeps its status.
        await WaitForAsync(async () => await TaskCountAsync(first) == 0, "the first job still had its task records.");
        Assert.Equal(JobState.Succeeded, (await engine.Client.GetAsync(first)).Status.State);
        Assert.Equal(6, await TaskCountAsync(second));

        // A third job: the first is now beyond the two finished jobs kept, and is forgotten.
        var third = await RunAsync();
        await WaitForAsync(async () => (await engine.Client.Http.GetAsync($"/jobs/{first}")).StatusCode == HttpStatusCode.NotFound,
            "the first job was still known.");
        await WaitForAsync(async () => await TaskCountAsync(second) == 0, "the second job still had its task records.");
        Assert.Equal(JobState.Succeeded, (await engine.Client.GetAsync(second)).Status.State);
        Assert.Equal(6, await TaskCountAsync(third));

        // Outputs are the users': the forgotten job's parts are still there, and still right.
        var lines = new List<string>();
        foreach (var part in firstParts)
        {
            lines.AddRange(File.ReadAllLines(Path.Combine(engine.DataPath, "dfs-dest", part)));
        }
        lines.Sort(StringComparer.Ordinal);
        Assert.Equal(reference, lines);
        Assert.Equal(reference, await engine.Client.OutputAsync(third));
    }
}
