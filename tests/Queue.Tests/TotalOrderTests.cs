using System.Text;
using Queue.Contracts.Jobs;
using Queue.Tests.Infrastructure;

namespace Queue.Tests;

/// <summary>
/// Total order: the built-in sort and a streaming identity job with <c>"partitioner": "range"</c> give
/// parts whose concatenation is the input's lines, each once, sorted by key; the hash partitioner's
/// parts are each sorted but not one order.
/// </summary>
public sealed class TotalOrderTests(EmbeddedEngineFixture engine) : IClassFixture<EmbeddedEngineFixture>
{
    /// <summary>gensort-style lines: a 10-character printable key, a tab, a row id and filler; some keys repeat.</summary>
    private List<string> Records(string container, int files, int perFile, int seed)
    {
        var random = new Random(seed);
        var folder = Path.Combine(engine.DataPath, container);
        Directory.CreateDirectory(folder);
        var all = new List<string>();
        for (var f = 0; f < files; f++)
        {
            var text = new StringBuilder();
            for (var i = 0; i < perFile; i++)
            {
                var key = new char[10];
                for (var k = 0; k < key.Length; k++)
                {
                    key[k] = (char)random.Next(' ', '~' + 1);
                }
                if (i % 50 == 0 && all.Count > 0)
                {
                    all[random.Next(all.Count)].AsSpan(0, 10).CopyTo(key); // duplicates cross partition boundaries too
                }
                var line = $"{new string(key)}\t{all.Count:X32} {new string((char)('A' + (i % 26)), 52)}";
                all.Add(line);
                text.Append(line).Append('\n');
            }
            File.WriteAllText(Path.Combine(folder, $"part-{f:D3}.txt"), text.ToString());
        }
        return all;
    }

    private static string Key(string line) => line.IndexOf('\t') is var tab and >= 0 ? line[..tab] : line;

    private async Task<List<List<string>>> PartsAsync(JobView view)
    {
        var parts = new List<List<string>>();
        foreach (var output in view.Status.Outputs)
        {
            var text = await engine.Client.Http.GetStringAsync($"/blobs/{view.Status.OutputContainer}/{output}");
            parts.Add([.. text.Split('\n', StringSplitOptions.RemoveEmptyEntries)]);
        }
        return parts;
    }

    /// <summary>TeraValidate: the parts concatenated are in key order, and hold exactly the input's lines.</summary>
    private static void AssertOneSortedOutput(List<string> input, List<List<string>> parts, Func<string, string> expectedLine)
    {
        var all = parts.SelectMany(p => p).ToList();
        for (var i = 1; i < all.Count; i++)
        {
            Assert.True(string.CompareOrdinal(Key(all[i - 1]), Key(all[i])) <= 0, $"Out of order at line {i}: '{Key(all[i - 1])}' before '{Key(all[i])}'.");
        }
        var expected = input.Select(expectedLine).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(expected, all.Order(StringComparer.Ordinal).ToList());
    }

    [Fact]
    public async Task TheSortAppWithTheRangePartitionerGivesOneSortedOutputOverItsParts()
    {
        var input = Records("sortin", files: 6, perFile: 3000, seed: 11);
        var id = await engine.Client.SubmitAsync(new { app = "sort", input = "sortin", mapTasks = 5, reduceTasks = 7, partitioner = "range" });
        var view = await engine.Client.WaitAsync(id, TimeSpan.FromMinutes(2));
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        var parts = await PartsAsync(view);
        Assert.Equal(7, parts.Count);
        // The sample spread the keys: no part holds more than three times its share.
        Assert.All(parts, p => Assert.True(p.Count < 3 * input.Count / 7, $"A part holds {p.Count} of {input.Count} lines."));
        AssertOneSortedOutput(input, parts, line => line);
        var tasks = (await engine.Client.GetDetailsAsync(id)).Tasks;
        Assert.Single(tasks, t => t.Phase == TaskPhase.Sample && t.State == TaskState.Done);
    }

    [Fact]
    public async Task AStreamingIdentityJobWithTheRangePartitionerGivesOneSortedOutput()
    {
        var input = Records("streamin", files: 3, perFile: 2000, seed: 12);
        var scripts = Path.Combine(engine.DataPath, "dfs-scripts");
        Directory.CreateDirectory(scripts);
        File.WriteAllText(Path.Combine(scripts, "cat.sh"), "exec cat\n");
        var id = await engine.Client.SubmitAsync(new { mapper = "cat.sh", input = "streamin", mapTasks = 3, reduceTasks = 4, partitioner = "range" });
        var view = await engine.Client.WaitAsync(id, TimeSpan.FromMinutes(2));
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        AssertOneSortedOutput(input, await PartsAsync(view), line => line);
    }

    [Fact]
    public async Task TheHashPartitionerSortsEachPartButNotAcrossThem()
    {
        var input = Records("hashin", files: 2, perFile: 2000, seed: 13);
        var id = await engine.Client.SubmitAsync(new { app = "sort", input = "hashin", mapTasks = 2, reduceTasks = 3 });
        var view = await engine.Client.WaitAsync(id, TimeSpan.FromMinutes(2));
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        var parts = await PartsAsync(view);
        Assert.All(parts, part => Assert.Equal(part.Select(Key).Order(StringComparer.Ordinal), part.Select(Key)));
        var keys = parts.SelectMany(p => p).Select(Key).ToList();
        Assert.NotEqual(keys.Order(StringComparer.Ordinal), keys);
        Assert.Equal(input.Order(StringComparer.Ordinal), parts.SelectMany(p => p).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task AnUnknownPartitionerIsRefused()
    {
        var response = await engine.Client.Http.PostAsync("/jobs", new StringContent("""{"app":"sort","input":"books","partitioner":"random"}""", Encoding.UTF8, "application/json"));
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("partitioner", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }
}
