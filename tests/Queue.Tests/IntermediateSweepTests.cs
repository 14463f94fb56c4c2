using Queue.Contracts.Jobs;
using Queue.Tests.Infrastructure;
using Queue.Worker.Apps;

namespace Queue.Tests;

/// <summary>An engine whose leader sweeps the intermediate container every 200 ms.</summary>
public sealed class SweepEngineFixture : EmbeddedEngineFixture
{
    protected override IReadOnlyDictionary<string, string> Settings { get; } = new Dictionary<string, string>
    {
        ["Queue__Coordinator__IntermediateSweepInterval"] = "00:00:00.200",
    };
}

/// <summary>
/// Intermediates no job will read do not stay for good: those of a job the store does not know (its
/// leader died before deleting them, or retention forgot it) and those a late worker committed after
/// its job ended are deleted; a running job's, a map-only job's and anything not named for a job stay.
/// </summary>
public sealed class IntermediateSweepTests(SweepEngineFixture engine) : IClassFixture<SweepEngineFixture>
{
    private string Intermediates => Path.Combine(engine.DataPath, "dfs-intermediate");

    /// <summary>A blob in the intermediate container, written as the filesystem store lays it out (what a late worker's commit leaves).</summary>
    private string Plant(string name)
    {
        var path = Path.Combine(Intermediates, name);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, "left behind");
        return path;
    }

    private static async Task WaitForAsync(Func<bool> condition, string what)
    {
        for (var i = 0; i < 100; i++)
        {
            if (condition())
            {
                return;
            }
            await Task.Delay(100);
        }
        Assert.Fail($"After 10 s: {what}");
    }

    private List<string> MapOutputs(string jobId) =>
        Directory.Exists(Path.Combine(Intermediates, jobId)) ? Directory.GetFiles(Path.Combine(Intermediates, jobId), "m-*").ToList() : [];

    [Fact]
    public async Task LeftoversOfUnknownAndEndedJobsAreDeletedWhileLiveAndKeptOnesStay()
    {
        var scripts = Path.Combine(engine.DataPath, "dfs-scripts");
        Directory.CreateDirectory(scripts);
        foreach (var name in new[] { "mapper.py", "reducer.py" })
        {
            File.Copy(Path.Combine(RepoPaths.Root, "samples", "streaming", name), Path.Combine(scripts, name), overwrite: true);
        }
        // The reduce waits first, so the job sits in its reduce phase with every map output committed while the sweep runs.
        File.WriteAllText(Path.Combine(scripts, "slow-reducer.py"),
            "import time\ntime.sleep(2)\n" + File.ReadAllText(Path.Combine(RepoPaths.Root, "samples", "streaming", "reducer.py")));
        Directory.CreateDirectory(Intermediates);
        var orphan = Plant("20200101-000000-abcdef/m-00000-a1b2.out");
        var foreign = Plant("not a job/notes.txt");
        var loose = Plant("README");

        var running = await engine.Client.SubmitAsync(new { mapper = "mapper.py", reducer = "slow-reducer.py", input = "books", mapTasks = 4, reduceTasks = 1 });
        await engine.Client.WaitUntilAsync(running, status => status.State == JobState.Reducing);
        await WaitForAsync(() => !File.Exists(orphan), "the unknown job's map output was still there.");
        var outputs = MapOutputs(running);
        Assert.Equal(4, outputs.Count);
        // Several passes while the job reduces: its inputs stay.
        await Task.Delay(1000);
        Assert.Equal(outputs, MapOutputs(running));
        var view = await engine.Client.WaitAsync(running, TimeSpan.FromMinutes(1));
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        var reference = SequentialReference.Run(new WordCountApp(), SequentialReference.ReadFolder(RepoPaths.Gutenberg));
        Assert.Equal(reference, await engine.Client.OutputAsync(running));

        // A late attempt's commit after the job ended: swept too.
        var late = Plant($"{running}/m-00002-late.out");
        await WaitForAsync(() => !File.Exists(late), "a map output committed after its job ended was still there.");

        // A succeeded map-only job keeps its intermediates for the reduce-only job that follows.
        var mapOnly = await engine.Client.SubmitAsync(new { app = "wordcount", input = "books", mapTasks = 3, reduceTasks = 2, phase = "map" });
        Assert.Equal(JobState.Succeeded, (await engine.Client.WaitAsync(mapOnly, TimeSpan.FromMinutes(1))).Status.State);
        var kept = MapOutputs(mapOnly);
        Assert.Equal(3, kept.Count);
        await Task.Delay(1000);
        Assert.Equal(kept, MapOutputs(mapOnly));
        var reduceOnly = await engine.Client.SubmitAsync(new { phase = "reduce", mapJob = mapOnly, app = "wordcount" });
        Assert.Equal(JobState.Succeeded, (await engine.Client.WaitAsync(reduceOnly, TimeSpan.FromMinutes(1))).Status.State);
        Assert.Equal(reference, await engine.Client.OutputAsync(reduceOnly));

        // Not named for a job: not the sweep's to judge.
        Assert.True(File.Exists(foreign));
        Assert.True(File.Exists(loose));
    }
}
