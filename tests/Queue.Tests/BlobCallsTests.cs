using System.Globalization;
using System.Text.RegularExpressions;
using Queue.Contracts.Jobs;
using Queue.Tests.Infrastructure;
using Queue.Worker.Apps;

namespace Queue.Tests;

/// <summary>
/// The intermediate files a job reads. What a job costs in blob calls (each billed on Azure Blob), read from the engine's own
/// <c>queue_blob_operations_total</c>: one map output per map and a manifest written; each small map
/// output read once by the worker whatever the number of reduces that want it, even when they ask at
/// the same moment; the job's intermediates deleted once at its end. And a map output damaged after it
/// was written fails the reduce that reads it, by name, instead of giving wrong counts.
/// </summary>
public sealed partial class BlobCallsTests(EmbeddedEngineFixture engine) : IClassFixture<EmbeddedEngineFixture>
{
    private async Task<double> CallsAsync(string operation, string role)
    {
        var text = await engine.Client.Http.GetStringAsync("/metrics");
        double total = 0;
        foreach (Match line in Series().Matches(text))
        {
            if (line.Groups["labels"].Value.Contains($"container=\"{role}\"", StringComparison.Ordinal)
                && line.Groups["labels"].Value.Contains($"operation=\"{operation}\"", StringComparison.Ordinal))
            {
                total += double.Parse(line.Groups["value"].Value, CultureInfo.InvariantCulture);
            }
        }
        return total;
    }

    [GeneratedRegex(@"^queue_blob_operations_total\{(?<labels>[^}]*)\} (?<value>[0-9.e+]+)", RegexOptions.Multiline)]
    private static partial Regex Series();

    [Fact]
    public async Task AJobWritesOneOutputPerMapAndReadsEachOncePerWorker()
    {
        var before = (Writes: await CallsAsync("write", "intermediate"), Reads: await CallsAsync("read", "intermediate"), Deletes: await CallsAsync("delete", "intermediate"));
        // Four slots: four reduces fetch the same twelve small map outputs at once.
        var id = await engine.Client.SubmitAsync(new { app = "wordcount", input = "books", mapTasks = 12, reduceTasks = 4 });
        var view = await engine.Client.WaitAsync(id, TimeSpan.FromMinutes(1));
        Assert.Equal(JobState.Succeeded, view.Status.State);
        Assert.Equal(SequentialReference.Run(new WordCountApp(), SequentialReference.ReadFolder(RepoPaths.Gutenberg)), await engine.Client.OutputAsync(id));
        var maps = view.Status.Map.Total;
        Assert.Equal(0, view.Status.Attempts - maps - 4); // no retried or backup attempt to blur the counts

        Assert.Equal(maps + 1, await CallsAsync("write", "intermediate") - before.Writes);
        // Each map output once (read whole, shared by the four reduces), and the manifest once per reduce.
        Assert.Equal(maps + 4, await CallsAsync("read", "intermediate") - before.Reads);
        for (var i = 0; i < 100 && await CallsAsync("delete", "intermediate") - before.Deletes < maps + 1; i++)
        {
            await Task.Delay(100);
        }
        Assert.Equal(maps + 1, await CallsAsync("delete", "intermediate") - before.Deletes);
    }

    [Fact]
    public async Task ADamagedMapOutputFailsItsReduceByNameInsteadOfGivingWrongCounts()
    {
        var mapId = await engine.Client.SubmitAsync(new { app = "wordcount", input = "books", mapTasks = 3, reduceTasks = 2, phase = "map" });
        Assert.Equal(JobState.Succeeded, (await engine.Client.WaitAsync(mapId, TimeSpan.FromMinutes(1))).Status.State);
        var output = Directory.GetFiles(Path.Combine(engine.DataPath, "dfs-intermediate", mapId), "m-00001-*.out").Single();
        // One flipped bit in partition 0's records (a word's count: the framing still parses).
        var bytes = await File.ReadAllBytesAsync(output);
        var at = Array.IndexOf(bytes, (byte)'1', 64);
        Assert.True(at > 0);
        bytes[at] ^= 0x01;
        await File.WriteAllBytesAsync(output, bytes);

        var reduceId = await engine.Client.SubmitAsync(new { app = "wordcount", phase = "reduce", mapJob = mapId, maxAttempts = 2 });
        var view = await engine.Client.WaitAsync(reduceId, TimeSpan.FromMinutes(1));
        Assert.Equal(JobState.Failed, view.Status.State);
        Assert.Contains($"Map output {mapId}/{Path.GetFileName(output)} is damaged: partition 0", view.Status.Error, StringComparison.Ordinal);
    }
}
