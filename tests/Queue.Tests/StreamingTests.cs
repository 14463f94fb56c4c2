using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using Queue.Contracts.Jobs;
using Queue.Tests.Infrastructure;
using Queue.Worker.Apps;

namespace Queue.Tests;

/// <summary>Hadoop-streaming jobs: user scripts from the scripts container, through the seeds' POST /request.</summary>
public sealed class StreamingTests(EmbeddedEngineFixture engine) : IClassFixture<EmbeddedEngineFixture>
{
    private static readonly Lazy<List<(string Name, string Text)>> Books = new(() => SequentialReference.ReadFolder(RepoPaths.Gutenberg).ToList());

    private string Scripts
    {
        get
        {
            var folder = Path.Combine(engine.DataPath, "dfs-scripts");
            Directory.CreateDirectory(folder);
            return folder;
        }
    }

    private void AddScript(string name, string text) => File.WriteAllText(Path.Combine(Scripts, name), text);

    private void AddSampleScripts()
    {
        foreach (var name in new[] { "mapper.py", "reducer.py" })
        {
            File.Copy(Path.Combine(RepoPaths.Root, "samples", "streaming", name), Path.Combine(Scripts, name), overwrite: true);
        }
    }

    private async Task<string> RequestAsync(object body)
    {
        var response = await engine.Client.Http.PostAsJsonAsync("/request", body);
        Assert.True(response.StatusCode == HttpStatusCode.Accepted, await response.Content.ReadAsStringAsync());
        return (await response.Content.ReadFromJsonAsync<JobCreated>())!.Id;
    }

    [Fact]
    public async Task SampleStreamingScriptsEqualTheBuiltInWordCount()
    {
        AddSampleScripts();
        var id = await RequestAsync(new { mapper = "mapper.py", reducer = "reducer.py", data = "books", m_num = 6, r_num = 3 });
        var view = await engine.Client.WaitAsync(id, TimeSpan.FromMinutes(2));
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        Assert.Equal(SequentialReference.Run(new WordCountApp(), Books.Value), await engine.Client.OutputAsync(id));
        // Without a combiner every map output record reaches a reducer.
        Assert.Equal(view.Status.MapCounters.OutputRecords, view.Status.ReduceCounters.InputRecords);
    }

    [Fact]
    public async Task DataNamesAPrefixOfTheSourceContainerWhenNoSuchContainerExists()
    {
        AddSampleScripts();
        var source = Path.Combine(engine.DataPath, "dfs-source", "small");
        Directory.CreateDirectory(source);
        File.Copy(Path.Combine(RepoPaths.Gutenberg, "pg-metamorphosis.txt"), Path.Combine(source, "pg-metamorphosis.txt"), overwrite: true);
        var id = await RequestAsync(new { mapper = "mapper.py", reducer = "reducer.py", data = "small", m_num = 2, r_num = 2 });
        var view = await engine.Client.WaitAsync(id, TimeSpan.FromMinutes(1));
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        Assert.Equal(SequentialReference.Run(new WordCountApp(), Books.Value.Where(b => b.Name == "pg-metamorphosis.txt")), await engine.Client.OutputAsync(id));
    }

    [Fact]
    public async Task AFailingMapperIsRetriedThenFailsTheJobWithItsStderr()
    {
        AddSampleScripts();
        AddScript("fails-on-grimm.py", """
            import os, sys
            if os.environ.get("mapreduce_map_input_file") == "pg-grimm.txt":
                print("cannot map the brothers Grimm", file=sys.stderr)
                sys.exit(1)
            for line in sys.stdin:
                pass
            """);
        var id = await engine.Client.SubmitAsync(new { mapper = "fails-on-grimm.py", reducer = "reducer.py", input = "books", mapTasks = 8, reduceTasks = 1, maxAttempts = 2 });
        var view = await engine.Client.WaitAsync(id, TimeSpan.FromMinutes(1));
        Assert.Equal(JobState.Failed, view.Status.State);
        Assert.Contains("cannot map the brothers Grimm", view.Status.Error, StringComparison.Ordinal);
        Assert.Contains("exited with code 1", view.Status.Error, StringComparison.Ordinal);
        var failed = (await engine.Client.GetDetailsAsync(id)).Tasks.Single(t => t.State == TaskState.Failed);
        Assert.Equal(2, failed.Attempts);
    }

    [Fact]
    public async Task AHangingMapperIsKilledAtTheTimeLimit()
    {
        var marker = Guid.NewGuid().ToString("N");
        AddScript($"hangs-{marker}.py", "import time\ntime.sleep(600)\n");
        AddSampleScripts();
        var id = await engine.Client.SubmitAsync(new { mapper = $"hangs-{marker}.py", reducer = "reducer.py", input = "books/pg-metamorphosis.txt", mapTasks = 1, reduceTasks = 1, maxAttempts = 1, taskTimeoutSeconds = 2 });
        var view = await engine.Client.WaitAsync(id, TimeSpan.FromSeconds(30));
        Assert.Equal(JobState.Failed, view.Status.State);
        Assert.Contains("Timed out after 2 s", view.Status.Error, StringComparison.Ordinal);
        await Task.Delay(500);
        Assert.False(ScriptStillRuns(marker), "The hanging script outlived its task.");
    }

    [Fact]
    public async Task CancelKillsRunningScripts()
    {
        var marker = Guid.NewGuid().ToString("N");
        AddScript($"slow-{marker}.py", "import time\ntime.sleep(600)\n");
        AddSampleScripts();
        var id = await engine.Client.SubmitAsync(new { mapper = $"slow-{marker}.py", reducer = "reducer.py", input = "books", mapTasks = 4, reduceTasks = 1 });
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (!ScriptStillRuns(marker))
        {
            Assert.True(DateTime.UtcNow < deadline, "The script never started.");
            await Task.Delay(100);
        }
        await engine.Client.Http.DeleteAsync($"/jobs/{id}");
        Assert.Equal(JobState.Cancelled, (await engine.Client.WaitAsync(id, TimeSpan.FromSeconds(10))).Status.State);
        deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (ScriptStillRuns(marker))
        {
            Assert.True(DateTime.UtcNow < deadline, "Cancelling the job did not kill its scripts.");
            await Task.Delay(100);
        }
    }

    [Fact]
    public async Task ReporterCountersFromStderrAddUpInTheJob()
    {
        AddSampleScripts();
        AddScript("counting-mapper.py", """
            import sys
            for line in sys.stdin:
                sys.stderr.write("reporter:counter:wc,lines,1\n")
                for word in line.split():
                    print(word + "\t1")
            sys.stderr.write("reporter:status:counted every line\n")
            """);
        var id = await engine.Client.SubmitAsync(new { mapper = "counting-mapper.py", reducer = "reducer.py", input = "books", mapTasks = 5, reduceTasks = 2 });
        var view = await engine.Client.WaitAsync(id, TimeSpan.FromMinutes(1));
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        Assert.Equal(view.Status.MapCounters.InputRecords, view.Status.MapCounters.User!["wc.lines"]);
        var maps = (await engine.Client.GetDetailsAsync(id)).Tasks.Where(t => t.Phase == TaskPhase.Map).ToList();
        Assert.All(maps, t => Assert.Equal("counted every line", t.Status));
    }

    [Fact]
    public async Task MapPhaseThenReducePhaseEqualsTheOneShotJob()
    {
        AddSampleScripts();
        var mapId = await RequestAsync(new { mapper = "mapper.py", reducer = "reducer.py", data = "books", m_num = 6, r_num = 3, phase = "map" });
        var mapped = await engine.Client.WaitAsync(mapId, TimeSpan.FromMinutes(1));
        Assert.True(mapped.Status.State == JobState.Succeeded, mapped.Status.Error);
        Assert.Empty(mapped.Status.Outputs);
        Assert.True(Directory.Exists(Path.Combine(engine.DataPath, "dfs-intermediate", mapId)), "A map-only job keeps its intermediates.");

        var reduceId = await RequestAsync(new { reducer = "reducer.py", phase = "reduce", job = mapId });
        var reduced = await engine.Client.WaitAsync(reduceId, TimeSpan.FromMinutes(1));
        Assert.True(reduced.Status.State == JobState.Succeeded, reduced.Status.Error);
        Assert.Equal(0, reduced.Status.Map.Total);
        Assert.Equal(3, reduced.Status.Reduce.Total);
        Assert.Equal(SequentialReference.Run(new WordCountApp(), Books.Value), await engine.Client.OutputAsync(reduceId));

        // Reducing a job that is not a finished map-only job is refused.
        var again = await engine.Client.Http.PostAsJsonAsync("/request", new { reducer = "reducer.py", phase = "reduce", job = reduceId });
        Assert.Equal(HttpStatusCode.Conflict, again.StatusCode);
    }

    [Fact]
    public async Task ACombinerScriptShrinksMapOutputAndKeepsTheResult()
    {
        AddSampleScripts();
        var id = await engine.Client.SubmitAsync(new { mapper = "mapper.py", combiner = "reducer.py", reducer = "reducer.py", input = "books", mapTasks = 6, reduceTasks = 3 });
        var view = await engine.Client.WaitAsync(id, TimeSpan.FromMinutes(2));
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        Assert.Equal(SequentialReference.Run(new WordCountApp(), Books.Value), await engine.Client.OutputAsync(id));
        var map = view.Status.MapCounters;
        Assert.Equal(map.OutputRecords, map.CombineInputRecords);
        Assert.True(map.CombineOutputRecords < map.CombineInputRecords / 3, $"combine {map.CombineInputRecords} -> {map.CombineOutputRecords}");
        Assert.Equal(map.CombineOutputRecords, view.Status.ReduceCounters.InputRecords);
    }

    [Fact]
    public async Task BadRecordsAreSkippedCountedAndListedWhenAsked()
    {
        var args = new Dictionary<string, string> { ["badRecord"] = "Gregor" };
        var id = await engine.Client.SubmitAsync(new { app = "crash", input = "books", mapTasks = 8, reduceTasks = 2, args, skipBadRecords = true });
        var view = await engine.Client.WaitAsync(id, TimeSpan.FromMinutes(2));
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        var clean = Books.Value.Select(b => (b.Name, string.Join('\n', b.Text.Split('\n').Where(line => !line.Contains("Gregor", StringComparison.Ordinal))))).ToList();
        var badLines = Books.Value.Sum(b => b.Text.Split('\n').Count(line => line.Contains("Gregor", StringComparison.Ordinal)));
        Assert.Equal(SequentialReference.Run(new WordCountApp(), clean), await engine.Client.OutputAsync(id));
        Assert.Equal(badLines, view.Status.MapCounters.SkippedRecords);
        Assert.Contains(view.Status.MapCounters.SkippedSamples!, s => s.Contains("pg-metamorphosis.txt", StringComparison.Ordinal) && s.Contains("Gregor", StringComparison.Ordinal));

        var strict = await engine.Client.SubmitAsync(new { app = "crash", input = "books", mapTasks = 8, reduceTasks = 2, args, maxAttempts = 1 });
        Assert.Equal(JobState.Failed, (await engine.Client.WaitAsync(strict, TimeSpan.FromMinutes(1))).Status.State);
    }

    [Fact]
    public async Task ScriptsDoNotSeeTheServicesEnvironment()
    {
        AddSampleScripts();
        AddScript("env-mapper.py", """
            import os, sys
            for line in sys.stdin:
                pass
            for name in os.environ:
                print("env:" + name + "\t1")
            """);
        var id = await engine.Client.SubmitAsync(new { mapper = "env-mapper.py", reducer = "reducer.py", input = "books/pg-metamorphosis.txt", mapTasks = 1, reduceTasks = 1 });
        var view = await engine.Client.WaitAsync(id, TimeSpan.FromMinutes(1));
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        var names = (await engine.Client.OutputAsync(id)).Select(line => line.Split('\t')[0]["env:".Length..]).ToList();
        Assert.Contains("PATH", names);
        Assert.Contains("mapreduce_map_input_file", names);
        // The ingress process runs with Queue__* settings (paths, adapters; keys in production): none reach the script.
        Assert.DoesNotContain(names, name => name.StartsWith("Queue__", StringComparison.Ordinal) || name.StartsWith("DOTNET_", StringComparison.Ordinal));
    }

    [Fact]
    public async Task AScriptsStatusShowsWhileItRuns()
    {
        AddSampleScripts();
        AddScript("slow-status.py", """
            import sys, time
            sys.stderr.write("reporter:status:warming up\n")
            sys.stderr.flush()
            time.sleep(3)
            for line in sys.stdin:
                pass
            """);
        var id = await engine.Client.SubmitAsync(new { mapper = "slow-status.py", reducer = "reducer.py", input = "books/pg-metamorphosis.txt", mapTasks = 1, reduceTasks = 1 });
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (true)
        {
            var details = await engine.Client.GetDetailsAsync(id);
            var map = details.Tasks.SingleOrDefault(t => t.Phase == TaskPhase.Map);
            if (map?.Status == "warming up")
            {
                Assert.Equal(TaskState.Running, map.State); // seen live, before the attempt ended
                break;
            }
            Assert.True(DateTime.UtcNow < deadline && !details.Status.IsTerminal, "The status never showed while the script ran.");
            await Task.Delay(100);
        }
        Assert.Equal(JobState.Succeeded, (await engine.Client.WaitAsync(id, TimeSpan.FromMinutes(1))).Status.State);
    }

    [Theory]
    [InlineData("{\"mapper\":\"nosuch.py\",\"reducer\":\"reducer.py\",\"data\":\"books\",\"m_num\":2,\"r_num\":1}", 422)]
    [InlineData("{\"mapper\":\"../../etc/passwd\",\"data\":\"books\"}", 400)]
    [InlineData("{\"mapper\":\"mapper.py\",\"data\":\"books\",\"m_num\":0}", 400)]
    [InlineData("{\"mapper\":\"mapper.py\",\"data\":\"books\",\"r_num\":10001}", 400)]
    [InlineData("{\"mapper\":\"mapper.py\",\"data\":\"nosuchdata\"}", 404)]
    [InlineData("{\"mapper\":\"mapper.py\",\"data\":\"books\",\"phase\":\"both\"}", 400)]
    [InlineData("{\"reducer\":\"reducer.py\",\"phase\":\"reduce\"}", 400)]
    [InlineData("{\"reducer\":\"reducer.py\",\"phase\":\"reduce\",\"job\":\"nosuchjob\"}", 404)]
    public async Task BadSeedRequestsGetProblemDetails(string body, int status)
    {
        AddSampleScripts();
        var response = await engine.Client.Http.PostAsync("/request", new StringContent(body, System.Text.Encoding.UTF8, "application/json"));
        Assert.Equal(status, (int)response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
    }

    private static bool ScriptStillRuns(string marker)
    {
        using var pgrep = Process.Start(new ProcessStartInfo("pgrep", $"-f {marker}") { RedirectStandardOutput = true });
        pgrep!.WaitForExit();
        return pgrep.ExitCode == 0;
    }
}
