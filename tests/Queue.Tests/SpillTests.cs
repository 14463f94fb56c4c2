using System.Net.Http.Json;
using Queue.Contracts.Jobs;
using Queue.Tests.Infrastructure;
using Queue.Worker.Apps;

namespace Queue.Tests;

/// <summary>
/// An embedded engine whose every buffer is tiny: the sort buffer spills every 64 KiB, a reduce merges
/// at most two streams before it pre-merges to local disk, holds at most 16 KiB of fetched segments
/// in memory (the rest is read from the map outputs as the merge goes), and caches no map output file
/// whole, so every segment is a ranged read of its own.
/// </summary>
public sealed class SpillingEngineFixture : EmbeddedEngineFixture
{
    protected override IReadOnlyDictionary<string, string> Settings { get; } = new Dictionary<string, string>
    {
        ["Queue__Worker__SortBufferBytes"] = "65536",
        ["Queue__Worker__MergeFactor"] = "2",
        ["Queue__Worker__ShuffleMemoryBytes"] = "16384",
        ["Queue__Worker__MapOutputCacheBytes"] = "0",
    };

    /// <summary>What is in the attempts folder of the engine's worker scratch (<c>tmp/w…/attempts</c>).</summary>
    public List<string> AttemptFolders()
    {
        // One engine process, one scratch folder (it is where the spills went).
        var attempts = Path.Combine(Assert.Single(Directory.GetDirectories(Path.Combine(Folder, "tmp"), "w*")), "attempts");
        return Directory.Exists(attempts) ? [.. Directory.GetFileSystemEntries(attempts)] : [];
    }
}

/// <summary>Every kind of task spills and merges on disk, and still gives the sequential reference's output.</summary>
public sealed class SpillTests(SpillingEngineFixture engine) : IClassFixture<SpillingEngineFixture>
{
    private static readonly Lazy<List<(string Name, string Text)>> Books = new(() => SequentialReference.ReadFolder(RepoPaths.Gutenberg).ToList());

    private void AddScript(string name, string text)
    {
        var folder = Path.Combine(engine.DataPath, "dfs-scripts");
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, name), text);
    }

    private void AddSampleScripts()
    {
        foreach (var name in new[] { "mapper.py", "reducer.py" })
        {
            AddScript(name, File.ReadAllText(Path.Combine(RepoPaths.Root, "samples", "streaming", name)));
        }
    }

    private async Task<JobView> RunAsync(object request)
    {
        var id = await engine.Client.SubmitAsync(request);
        var view = await engine.Client.WaitAsync(id, TimeSpan.FromMinutes(3));
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        Assert.True(view.Status.MapCounters.SpilledRecords > 0, "The maps did not spill.");
        // Each attempt removed its own folder (spills, merge runs, a script's scratch files) when it ended.
        var left = engine.AttemptFolders();
        Assert.True(left.Count == 0, "Attempt folders were left: " + string.Join(", ", left));
        return view;
    }

    [Fact]
    public async Task BuiltInMapsThatSpillAndReducesThatMergeOnDiskGiveTheReference()
    {
        var view = await RunAsync(new { app = "wordcount", input = "books", mapTasks = 3, reduceTasks = 3 });
        Assert.Equal(SequentialReference.Run(new WordCountApp(), Books.Value), await engine.Client.OutputAsync(view.Spec.Id));
        // Word count's reduce sums by hash: its table outgrew the buffer, went to disk as sorted runs, and they were merged.
        Assert.True(view.Status.ReduceCounters.SpilledRecords > 0, "The summing reduces did not spill.");
        var indexer = await RunAsync(new { app = "indexer", input = "books", mapTasks = 4, reduceTasks = 2 });
        Assert.Equal(SequentialReference.Run(new IndexerApp(), Books.Value), await engine.Client.OutputAsync(indexer.Spec.Id));
    }

    [Fact]
    public async Task AStreamingMapWhoseOutputOutgrowsTheSortBufferGivesEveryLineOnce()
    {
        // The identity job of the issue: `exec cat` over whole books, map output as big as the input.
        AddScript("cat.sh", "exec cat\n");
        var view = await RunAsync(new { mapper = "cat.sh", input = "books", mapTasks = 1, reduceTasks = 2 });
        var expected = new List<string>();
        foreach (var (_, text) in Books.Value)
        {
            // Lines as the script's reader sees them: \r\n, \r and \n all end one; empty ones too.
            var lines = text.Replace("\r\n", "\n", StringComparison.Ordinal).Replace('\r', '\n').Split('\n');
            foreach (var line in text.EndsWith('\n') || text.EndsWith('\r') ? lines[..^1] : lines)
            {
                // No tab: the line is the key with an empty value, written back as key<TAB>.
                expected.Add(line.Contains('\t', StringComparison.Ordinal) ? line : line + "\t");
            }
        }
        var output = (await engine.Client.Http.GetStringAsync($"/jobs/{view.Spec.Id}/output")).Split('\n', StringSplitOptions.RemoveEmptyEntries).ToList();
        expected.Sort(StringComparer.Ordinal);
        output.Sort(StringComparer.Ordinal);
        Assert.Equal(expected.Count, output.Count);
        Assert.Equal(expected, output);
    }

    [Fact]
    public async Task AStreamingMapWithACombinerThatSpillsGivesTheReference()
    {
        AddSampleScripts();
        var view = await RunAsync(new { mapper = "mapper.py", combiner = "reducer.py", reducer = "reducer.py", input = "books", mapTasks = 2, reduceTasks = 3 });
        Assert.Equal(SequentialReference.Run(new WordCountApp(), Books.Value), await engine.Client.OutputAsync(view.Spec.Id));
        Assert.True(view.Status.MapCounters.CombineOutputRecords < view.Status.MapCounters.CombineInputRecords);
    }

    [Fact]
    public async Task AJobOfManyMapsWritesOneIntermediateBlobPerMapAttempt()
    {
        var id = await engine.Client.SubmitAsync(new { app = "wordcount", input = "books", mapTasks = 40, reduceTasks = 25, phase = "map" });
        var view = await engine.Client.WaitAsync(id, TimeSpan.FromMinutes(3));
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        // A map-only job keeps its intermediates: one file per map (not one per map and partition), and the manifest.
        var files = Directory.GetFiles(Path.Combine(engine.DataPath, "dfs-intermediate", id), "*", SearchOption.AllDirectories);
        Assert.Equal(view.Status.Map.Total + 1, files.Length);
        var reduce = await engine.Client.SubmitAsync(new { phase = "reduce", mapJob = id, app = "wordcount" });
        var reduced = await engine.Client.WaitAsync(reduce, TimeSpan.FromMinutes(3));
        Assert.True(reduced.Status.State == JobState.Succeeded, reduced.Status.Error);
        Assert.Equal(SequentialReference.Run(new WordCountApp(), Books.Value), await engine.Client.OutputAsync(reduce));
    }
}
