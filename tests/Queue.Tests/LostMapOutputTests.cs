using System.Buffers.Binary;
using Queue.Contracts.Jobs;
using Queue.Tests.Infrastructure;
using Queue.Worker.Apps;

namespace Queue.Tests;

/// <summary>
/// One slot, so a job's reduces run one after the other, and no map output cached whole, so each
/// reduce reads its own segments from the files.
/// </summary>
public sealed class OneSlotEngineFixture : EmbeddedEngineFixture
{
    protected override IReadOnlyDictionary<string, string> Settings { get; } = new Dictionary<string, string>
    {
        ["Queue__Worker__Slots"] = "1",
        ["Queue__Worker__MapOutputCacheBytes"] = "0",
    };
}

/// <summary>
/// Map outputs are not fsynced (as Hadoop's and Spark's are not): one lost with its machine, or
/// damaged, is found by the reduce that reads it, and the engine runs that map again instead of
/// failing the job (Hadoop's fetch failures). Here, while a job's first reduce runs, one map's output
/// file is deleted and another's second partition damaged; the second reduce finds both, the two maps
/// run again, and the output is the sequential reference's, counted once.
/// </summary>
public sealed class LostMapOutputTests(OneSlotEngineFixture engine) : IClassFixture<OneSlotEngineFixture>
{
    [Fact]
    public async Task MapOutputsDeletedOrDamagedBeforeTheirReduceReadsThemAreMadeAgainAndTheOutputIsExact()
    {
        var markers = Path.Combine(engine.Folder, "markers-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(markers);
        var waiting = Path.Combine(markers, "waiting");
        var go = Path.Combine(markers, "go");
        var scripts = Path.Combine(engine.DataPath, "dfs-scripts");
        Directory.CreateDirectory(scripts);
        File.Copy(Path.Combine(RepoPaths.Root, "samples", "streaming", "mapper.py"), Path.Combine(scripts, "mapper.py"), overwrite: true);
        // The sample reducer, whose first run of partition 0 holds (after its fetch) until the test has done its damage.
        File.WriteAllText(Path.Combine(scripts, "holding-reducer.py"), $$"""
            import os, time
            if os.environ.get("mapreduce_task_partition") == "0" and not os.path.exists("{{go}}"):
                open("{{waiting}}", "w").close()
                for _ in range(1200):
                    if os.path.exists("{{go}}"):
                        break
                    time.sleep(0.05)

            """ + File.ReadAllText(Path.Combine(RepoPaths.Root, "samples", "streaming", "reducer.py")));

        var id = await engine.Client.SubmitAsync(new { mapper = "mapper.py", reducer = "holding-reducer.py", input = "books", mapTasks = 4, reduceTasks = 2 });
        for (var i = 0; i < 1200 && !File.Exists(waiting); i++)
        {
            await Task.Delay(50);
        }
        Assert.True(File.Exists(waiting), "The first reduce never started.");
        var folder = Path.Combine(engine.DataPath, "dfs-intermediate", id);
        File.Delete(Assert.Single(Directory.GetFiles(folder, "m-00001-*.out")));
        // One flipped byte in the middle of map 2's partition 1 (the index at the end says where it lies).
        var damaged = Assert.Single(Directory.GetFiles(folder, "m-00002-*.out"));
        var bytes = await File.ReadAllBytesAsync(damaged);
        var index = bytes.Length - (((2 * 2) + 1) * sizeof(long)) - (2 * sizeof(uint)) - 8;
        var (start, end) = (BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan(index + 8)), BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan(index + 16)));
        Assert.True(end > start);
        bytes[(int)((start + end) / 2)] ^= 0x20;
        await File.WriteAllBytesAsync(damaged, bytes);
        File.Create(go).Dispose();

        var view = await engine.Client.WaitAsync(id, TimeSpan.FromMinutes(2));
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        Assert.Equal(SequentialReference.Run(new WordCountApp(), SequentialReference.ReadFolder(RepoPaths.Gutenberg)), await engine.Client.OutputAsync(id));
        Assert.Equal(2, view.Status.MapReruns);
        var books = Directory.GetFiles(Path.Combine(engine.DataPath, "books")).Sum(f => new FileInfo(f).Length);
        Assert.Equal(books, view.Status.MapCounters.InputBytes); // each map counted once, re-runs included
        // The second reduce found one loss per attempt; each loss took none of its maxAttempts.
        Assert.Equal(2, view.Status.FailedAttempts);
        var tasks = (await engine.Client.GetDetailsAsync(id)).Tasks;
        Assert.Equal([0, 1, 1, 0], tasks.Where(t => t.Phase == TaskPhase.Map).OrderBy(t => t.Index).Select(t => t.Reruns));
        Assert.Contains("MapOutputLostException", tasks.Single(t => t.Phase == TaskPhase.Reduce && t.Index == 1).LastError, StringComparison.Ordinal);
        // And the worker counted both for whoever watches its metrics (a disk losing data shows there).
        var metrics = await engine.Client.Http.GetStringAsync("/metrics");
        Assert.Matches(@"(?m)^queue_map_outputs_lost_total(\{[^}]*\})? 2( |$)", metrics);
    }
}
