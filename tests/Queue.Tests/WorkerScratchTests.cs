using Queue.Contracts.Jobs;
using Queue.Tests.Infrastructure;

namespace Queue.Tests;

/// <summary>
/// A worker killed mid-spill leaves its scratch folder (spills, merge runs) behind; the next worker to
/// start on that temp path removes it — and only it: a live worker's folder stays while its lock is
/// held, and a worker that stops cleanly takes its own folder with it. Fetched streaming scripts stay
/// while their job uses them.
/// </summary>
public sealed class WorkerScratchTests : IAsyncLifetime
{
    private readonly string folder = Path.Combine(Path.GetTempPath(), "queue-scratch", Guid.NewGuid().ToString("N"));

    private string DataPath => Path.Combine(folder, "data");

    private string TempPath => Path.Combine(folder, "tmp");

    public Task InitializeAsync()
    {
        RepoPaths.CopyBooksTo(Path.Combine(DataPath, "books"));
        var scripts = Path.Combine(DataPath, "dfs-scripts");
        Directory.CreateDirectory(scripts);
        // Every line out (far more than the tiny sort buffer, so the map spills), then a long wait with the spills on disk.
        File.WriteAllText(Path.Combine(scripts, "spill-then-wait.py"),
            "import sys, time\nfor line in sys.stdin:\n    sys.stdout.write(line)\nsys.stdout.flush()\ntime.sleep(60)\n");
        File.WriteAllText(Path.Combine(scripts, "cat.py"), "import sys\nfor line in sys.stdin:\n    sys.stdout.write(line)\n");
        return Task.CompletedTask;
    }

    public Task DisposeAsync()
    {
        Directory.Delete(folder, recursive: true);
        return Task.CompletedTask;
    }

    private Task<ServiceProcess> StartIngressAsync() => ServiceProcess.StartAsync("Queue.Ingress", folder, new Dictionary<string, string>
    {
        ["Queue__Adapters__DataPath"] = DataPath,
        ["Queue__Worker__Slots"] = "1",
        ["Queue__Worker__TempPath"] = TempPath,
        ["Queue__Worker__SortBufferBytes"] = "65536",
        ["Queue__Coordinator__PollInterval"] = "00:00:00.100",
    });

    private List<string> ScratchFolders() => [.. Directory.GetDirectories(TempPath, "w*").Order(StringComparer.Ordinal)];

    private static List<string> Spills(string scratch) =>
        Directory.Exists(Path.Combine(scratch, "attempts")) ? [.. Directory.GetFiles(Path.Combine(scratch, "attempts"), "*", SearchOption.AllDirectories)] : [];

    [Fact]
    public async Task AKilledWorkersSpillsAreRemovedByTheNextStartAndALiveWorkersStay()
    {
        // Another worker on the same temp path, alive: it holds its lock.
        Directory.CreateDirectory(TempPath);
        var live = Path.Combine(TempPath, "w1-0123456789abcdef01234");
        Directory.CreateDirectory(Path.Combine(live, "attempts", "a1"));
        File.WriteAllText(Path.Combine(live, "attempts", "a1", "spill-0"), "still needed");
        await using var liveLock = new FileStream(live + ".lock", FileMode.Create, FileAccess.ReadWrite, FileShare.None);
        // Something else in a shared temp path, with a lock no one holds: not named as a worker names its scratch, so not touched.
        var foreign = Path.Combine(TempPath, "work");
        Directory.CreateDirectory(foreign);
        File.WriteAllText(Path.Combine(foreign, "keep.txt"), "not the worker's");
        File.WriteAllText(foreign + ".lock", "");

        string job, dead = "";
        var ingress = await StartIngressAsync();
        try
        {
            using var client = new JobClient(ingress.BaseAddress);
            job = await client.SubmitAsync(new { mapper = "spill-then-wait.py", input = "books/pg-metamorphosis.txt", mapTasks = 1, reduceTasks = 1 });
            for (var i = 0; i < 300 && (dead.Length == 0 || Spills(dead).Count == 0); i++)
            {
                await Task.Delay(100);
                var others = ScratchFolders().Where(f => f != live && f != foreign).ToList();
                dead = others.Count == 1 ? others[0] : "";
            }
            Assert.True(dead.Length > 0 && Spills(dead).Count > 0, "The map did not spill into one worker scratch folder within 30 s.");
            ingress.Kill(); // SIGKILL, the script with it: nothing runs the attempt's cleanup.
            Assert.True(await ingress.WaitForExitAsync(TimeSpan.FromSeconds(10)));
        }
        finally
        {
            await ingress.DisposeAsync();
        }
        Assert.NotEmpty(Spills(dead));

        var again = await StartIngressAsync();
        try
        {
            // The new worker swept on start: the dead one's folder and lock are gone, the live one's are not.
            Assert.False(Directory.Exists(dead), "The killed worker's scratch folder was left.");
            Assert.False(File.Exists(dead + ".lock"));
            Assert.Equal("still needed", File.ReadAllText(Path.Combine(live, "attempts", "a1", "spill-0")));
            var own = Assert.Single(ScratchFolders(), f => f != live && f != foreign);
            Assert.True(File.Exists(own + ".lock"));

            // The job's new attempt waits a minute: cancel it.
            using var client = new JobClient(again.BaseAddress);
            Assert.Equal(System.Net.HttpStatusCode.Accepted, (await client.Http.DeleteAsync($"/jobs/{job}")).StatusCode);
            Assert.Equal(JobState.Cancelled, (await client.WaitAsync(job, TimeSpan.FromMinutes(1))).Status.State);

            // Fetched scripts stay while their job uses them; a job's first script drops those unused for an hour.
            var idle = Path.Combine(own, "scripts", "20200101-000000-000001");
            Directory.CreateDirectory(idle);
            File.WriteAllText(Path.Combine(idle, "old.py"), "print()\n");
            Directory.SetLastWriteTimeUtc(idle, DateTime.UtcNow.AddHours(-2));
            var quick = await client.SubmitAsync(new { mapper = "cat.py", input = "books/pg-metamorphosis.txt", mapTasks = 1, reduceTasks = 1 });
            Assert.Equal(JobState.Succeeded, (await client.WaitAsync(quick, TimeSpan.FromMinutes(1))).Status.State);
            Assert.False(Directory.Exists(idle), "An hour-idle job's scripts were kept.");
            Assert.True(File.Exists(Path.Combine(own, "scripts", quick, "cat.py")));

            // A clean stop takes the worker's own folder with it.
            again.Signal("TERM");
            Assert.True(await again.WaitForExitAsync(TimeSpan.FromSeconds(30)), "The ingress did not stop on SIGTERM.");
            Assert.False(Directory.Exists(own), "A cleanly stopped worker left its scratch folder.");
            Assert.False(File.Exists(own + ".lock"));
        }
        finally
        {
            await again.DisposeAsync();
        }
        Assert.Equal([live, foreign], ScratchFolders());
        Assert.True(File.Exists(Path.Combine(foreign, "keep.txt")) && File.Exists(foreign + ".lock"));
    }
}
