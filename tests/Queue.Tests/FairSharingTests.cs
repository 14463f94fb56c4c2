using System.Net.Http.Json;
using Queue.Contracts.Jobs;
using Queue.Coordinator;
using Queue.Tests.Infrastructure;
using Queue.Worker.Apps;

namespace Queue.Tests;

/// <summary>Fair sharing is judged by time: its tests run alone, not beside other test classes.</summary>
[CollectionDefinition("fair-sharing", DisableParallelization = true)]
public sealed class FairSharingCollection;

/// <summary>The books copied <see cref="Copies"/> times into a <c>big</c> container (≈40 MB in 96 files): a job that takes a while.</summary>
public static class BigInput
{
    public const int Copies = 12;

    public static void WriteTo(string dataPath)
    {
        var folder = Path.Combine(dataPath, "big");
        Directory.CreateDirectory(folder);
        foreach (var file in Directory.GetFiles(RepoPaths.Gutenberg, "*.txt"))
        {
            for (var copy = 0; copy < Copies; copy++)
            {
                File.Copy(file, Path.Combine(folder, $"copy-{copy:00}-{Path.GetFileName(file)}"));
            }
        }
    }

    /// <summary>The sequential reference over the very files the engine reads.</summary>
    public static readonly Lazy<List<string>> WordCount = new(() =>
        SequentialReference.Run(new WordCountApp(), Directory.GetFiles(RepoPaths.Gutenberg, "*.txt")
            .SelectMany(f => Enumerable.Range(0, Copies).Select(c => ($"copy-{c:00}-{Path.GetFileName(f)}", File.ReadAllText(f))))));

    public static readonly Lazy<List<string>> Books = new(() => SequentialReference.Run(new WordCountApp(), SequentialReference.ReadFolder(RepoPaths.Gutenberg)));
}

/// <summary>Reads what fair sharing did from the task records: slot-seconds per job within a window.</summary>
public static class Shares
{
    /// <summary>
    /// Slot-seconds of the job's map attempts the leader let in between <paramref name="from"/> and
    /// <paramref name="to"/>: what the job was granted while it competed.
    /// </summary>
    public static double SlotSeconds(JobDetails job, DateTimeOffset from, DateTimeOffset to)
    {
        var total = 0.0;
        foreach (var task in job.Tasks)
        {
            if (task is { Phase: TaskPhase.Map, QueuedAt: { } queued, StartedAt: { } start, FinishedAt: { } end } && queued >= from && queued <= to)
            {
                total += (end - start).TotalSeconds;
            }
        }
        return total;
    }

    /// <summary>
    /// The time both jobs had maps waiting to be let in: from the later job's first admission to the
    /// earlier of the two last map admissions. (Outside it one job is alone, or has no more maps to ask
    /// for and max-min fairness rightly gives the rest to the other.)
    /// </summary>
    public static (DateTimeOffset From, DateTimeOffset To) Overlap(JobDetails a, JobDetails b)
    {
        static (DateTimeOffset First, DateTimeOffset Last) Admissions(JobDetails job)
        {
            var maps = job.Tasks.Where(t => t.Phase == TaskPhase.Map && t.QueuedAt is not null).Select(t => t.QueuedAt!.Value).ToList();
            return (maps.Min(), maps.Max());
        }
        var (firstA, lastA) = Admissions(a);
        var (firstB, lastB) = Admissions(b);
        return (firstA > firstB ? firstA : firstB, lastA < lastB ? lastA : lastB);
    }

    public static double Wall(JobStatus status) => (status.FinishedAt!.Value - status.SubmittedAt).TotalSeconds;

    /// <summary>The median of three runs of a job alone (the first warms the engine up when asked).</summary>
    public static async Task<double> AloneAsync(JobClient client, object request, List<string> reference, int runs = 3)
    {
        var walls = new List<double>();
        for (var i = 0; i < runs; i++)
        {
            var id = await client.SubmitAsync(request);
            var view = await client.WaitAsync(id, TimeSpan.FromMinutes(3));
            Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
            Assert.Equal(reference, await client.OutputAsync(id));
            walls.Add(Wall(view.Status));
        }
        walls.Sort();
        return walls[walls.Count / 2];
    }

    private const int Rounds = 5;

    /// <summary>
    /// A large job, then a small one once a fifth of the large one's maps are done: the small one must
    /// finish within <paramref name="bound"/> (3) times its time alone, the large one take no longer than alone plus the small one's
    /// time alone (its work on the whole pool) plus 15 % and 0.1 s for this machine's run-to-run spread; both exact.
    /// Medians of five rounds, each the small job alone and then the pair, so both times of a round are
    /// taken in the same state of the engine and the machine: single runs of the cluster's small job took
    /// 0.074-0.264 s alone and 0.18-0.56 s behind, and with medians of three (alone runs first, then the
    /// pairs) the ratio ranged 1.5-3.6 from one run of this test to the next.
    /// </summary>
    public static async Task SmallBehindLargeAsync(JobClient client, object large, object small, double bound = 3)
    {
        await AloneAsync(client, small, BigInput.Books.Value, runs: 1);
        var largeAlone = await AloneAsync(client, large, BigInput.WordCount.Value);

        var alone = new List<double>();
        var behind = new List<double>();
        var beside = new List<double>();
        for (var run = 0; run < Rounds; run++)
        {
            alone.Add(await AloneAsync(client, small, BigInput.Books.Value, runs: 1));
            var largeId = await client.SubmitAsync(large);
            await client.WaitUntilAsync(largeId, s => s.Map.Total > 0 && s.Map.Done >= s.Map.Total / 5);
            var smallId = await client.SubmitAsync(small);
            var smallView = await client.WaitAsync(smallId, TimeSpan.FromMinutes(2));
            var largeView = await client.WaitAsync(largeId, TimeSpan.FromMinutes(3));
            Assert.True(smallView.Status.State == JobState.Succeeded, smallView.Status.Error);
            Assert.True(largeView.Status.State == JobState.Succeeded, largeView.Status.Error);
            Assert.Equal(BigInput.Books.Value, await client.OutputAsync(smallId));
            Assert.Equal(BigInput.WordCount.Value, await client.OutputAsync(largeId));
            Assert.True(largeView.Status.FinishedAt > smallView.Status.FinishedAt, "The small job should finish while the large one still runs.");
            behind.Add(Wall(smallView.Status));
            beside.Add(Wall(largeView.Status));
        }
        static string Times(List<double> walls) => string.Join(", ", walls.Select(static w => w.ToString("0.000", System.Globalization.CultureInfo.InvariantCulture)));
        var (aloneTimes, behindTimes) = (Times(alone), Times(behind));
        alone.Sort();
        behind.Sort();
        beside.Sort();
        var (smallAlone, smallShared, largeShared) = (alone[Rounds / 2], behind[Rounds / 2], beside[Rounds / 2]);
        Assert.True(smallShared <= bound * smallAlone,
            $"The small job took {smallShared:0.000} s behind the large one (median of {behindTimes}), {smallAlone:0.000} s alone (median of {aloneTimes}).");
        // Plus 0.1 s: the embedded large job takes 0.4 s alone, and a GC or the previous job's cleanup
        // (now beside the leader, not in its loop) moves a median of three runs of it by more than 15 %
        // (a full suite saw 0.583 s against a bound of 0.50 s once; the same test passed three times alone after).
        Assert.True(largeShared <= largeAlone * 1.15 + smallAlone + 0.1,
            $"The large job took {largeShared:0.000} s beside the small one (median of {Rounds}), {largeAlone:0.000} s alone; the small one alone {smallAlone:0.000} s.");
    }

    /// <summary>
    /// Two jobs submitted together, three times: the run whose ratio of slot-seconds (second / first) is
    /// the median, and the median run's map admissions by the same measure. One run's shares can be a
    /// third apart on this machine when a process stalls for a moment (CI saw 2.57 against 3.34 once);
    /// the scheduler's fairness shows in the typical run.
    /// </summary>
    public static async Task<Together> MedianTogetherAsync(JobClient client, object first, object second)
    {
        var runs = new List<Together>();
        for (var run = 0; run < 3; run++)
        {
            runs.Add(await TogetherAsync(client, first, second));
        }
        var byAdmissions = runs.OrderBy(static r => (double)r.SecondAdmitted / r.FirstAdmitted).ToList();
        runs.Sort(static (x, y) => (x.Second / x.First).CompareTo(y.Second / y.First));
        return runs[1] with { FirstAdmitted = byAdmissions[1].FirstAdmitted, SecondAdmitted = byAdmissions[1].SecondAdmitted };
    }

    /// <summary>Two jobs submitted together; each one's slot-seconds and map admissions while both competed, after checking both outputs.</summary>
    public static async Task<Together> TogetherAsync(JobClient client, object first, object second)
    {
        var a = await client.SubmitAsync(first);
        var b = await client.SubmitAsync(second);
        foreach (var id in new[] { a, b })
        {
            var view = await client.WaitAsync(id, TimeSpan.FromMinutes(3));
            Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
            Assert.Equal(BigInput.WordCount.Value, await client.OutputAsync(id));
        }
        var (da, db) = (await client.GetDetailsAsync(a), await client.GetDetailsAsync(b));
        var (from, to) = Overlap(da, db);
        return new Together(SlotSeconds(da, from, to), SlotSeconds(db, from, to), Admitted(da, from, to), Admitted(db, from, to));
    }

    /// <summary>Map tasks of the job the leader let in between <paramref name="from"/> and <paramref name="to"/>.</summary>
    public static int Admitted(JobDetails job, DateTimeOffset from, DateTimeOffset to) =>
        job.Tasks.Count(t => t is { Phase: TaskPhase.Map, QueuedAt: { } queued } && queued >= from && queued <= to);

    /// <summary>
    /// Two equal jobs' map admissions while both competed must be within a tenth of each other. The
    /// leader sends each round's tasks job by job into a first-in, first-out queue; when one job always
    /// went first its tasks waited least, ended first and were replaced first, and the later of two jobs
    /// submitted together was let in 16-26 % more often (190 maps against 151-161, embedded and cluster),
    /// though the slot-seconds, which also count how long tasks ran, did not always show it.
    /// </summary>
    public static void AssertEqualAdmissions(Together run) =>
        Assert.True(Math.Abs(run.FirstAdmitted - run.SecondAdmitted) <= 0.1 * Math.Max(run.FirstAdmitted, run.SecondAdmitted),
            $"Maps let in while both competed (the median of three runs): {run.FirstAdmitted} and {run.SecondAdmitted}.");

    /// <summary>One run of two jobs together: slot-seconds and map admissions of each while both competed.</summary>
    public sealed record Together(double First, double Second, int FirstAdmitted, int SecondAdmitted);
}

public sealed class FairSharingEngineFixture : EmbeddedEngineFixture
{
    public override async Task InitializeAsync()
    {
        await base.InitializeAsync();
        BigInput.WriteTo(DataPath);
    }
}

/// <summary>Fair admission on the embedded engine (one process, four slots).</summary>
[Collection("fair-sharing")]
public sealed class FairSharingTests(FairSharingEngineFixture engine) : IClassFixture<FairSharingEngineFixture>
{
    private static object Large(string? priority = null) => new { app = "wordcount", input = "big", mapTasks = 192, reduceTasks = 4, priority };

    private static readonly object Small = new { app = "wordcount", input = "books", mapTasks = 8, reduceTasks = 2 };

    [Fact]
    public Task ASmallJobBehindALargeOneSharesTheSlotsAndBothAreExact() =>
        Shares.SmallBehindLargeAsync(engine.Client, Large(), Small);

    [Fact]
    public async Task TwoEqualJobsSubmittedTogetherGetEqualSlotTime()
    {
        var run = await Shares.MedianTogetherAsync(engine.Client, Large(), Large());
        var (first, second) = (run.First, run.Second);
        Assert.True(Math.Abs(first - second) <= 0.2 * Math.Max(first, second), $"Slot-seconds granted while both competed (the median of three runs): {first:0.00} and {second:0.00}.");
        Shares.AssertEqualAdmissions(run);
    }

    [Fact]
    public async Task AHighPriorityJobGetsAboutTwiceTheSlotsOfANormalOne()
    {
        var (normal, high, _, _) = await Shares.MedianTogetherAsync(engine.Client, Large(), Large("high"));
        var ratio = high / normal;
        Assert.True(ratio is > 1.5 and < 2.7, $"Slot-seconds granted while both competed (the median of three runs): high {high:0.00}, normal {normal:0.00} (ratio {ratio:0.00}).");
    }

    [Fact]
    public async Task MaxRunningTasksCapsAJobAndTheStatusShowsItsShare()
    {
        var id = await engine.Client.SubmitAsync(new { app = "wordcount", input = "big", mapTasks = 96, reduceTasks = 4, maxRunningTasks = 1, priority = 3 });
        var most = 0;
        var sawPending = false;
        JobView view;
        while (!(view = await engine.Client.GetAsync(id)).Status.IsTerminal)
        {
            var s = view.Status;
            most = Math.Max(most, s.Map.Running + s.Map.Queued + s.Reduce.Running + s.Reduce.Queued);
            sawPending |= s.PendingTasks > 0;
            Assert.Equal(3, s.Weight);
            await Task.Delay(20);
        }
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        Assert.Equal(BigInput.WordCount.Value, await engine.Client.OutputAsync(id));
        Assert.Equal(1, most);
        Assert.True(sawPending, "The status never showed the tasks held back.");
        Assert.Equal("3", view.Spec.Priority);
    }

    /// <summary>In headless Chromium: the jobs table shows each job's share, and the load plots slots per job.</summary>
    [Fact]
    public async Task TheDashboardShowsEachJobsShareAndPlotsItsSlots()
    {
        await using var browser = await HeadlessChromium.StartAsync();
        await browser.NavigateAsync(engine.Ingress.BaseAddress);
        await browser.WaitForAsync("document.getElementById('refreshed')?.textContent?.startsWith('updated') || null");
        // Capped at two tasks at a time, each sleeping half a second, the job holds tasks back for about
        // four seconds however fast the machine: long enough for the page's one-second samples.
        var id = await engine.Client.SubmitAsync(new
        {
            app = "crash", input = "books", mapTasks = 16, reduceTasks = 4, maxRunningTasks = 2, priority = "high",
            args = new Dictionary<string, string> { ["stallRate"] = "1", ["stallSeconds"] = "0.5" },
        });
        var share = await browser.WaitForAsync($$"""(() => { const c = document.querySelector('tr[data-job="{{id}}"] td.share'); return c && Number(c.dataset.pending) > 0 ? c.textContent : null; })()""");
        Assert.Contains("pending, high (2)", (string)share!, StringComparison.Ordinal);
        var slots = await browser.WaitForAsync($$"""(() => { const s = JSON.parse(document.getElementById('load').dataset.jobSlots || '{}'); return s["{{id}}"] >= 1 ? s["{{id}}"] : null; })()""");
        Assert.InRange((int)slots!, 1, 2);
        var view = await engine.Client.WaitAsync(id, TimeSpan.FromMinutes(2));
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
    }

    [Theory]
    [InlineData("\"urgent\"")]
    [InlineData("0")]
    [InlineData("1000")]
    [InlineData("true")]
    [InlineData("[2]")]
    public async Task ABadPriorityIsA400NamingIt(string priority)
    {
        using var body = new StringContent($$"""{"app":"wordcount","input":"books","priority":{{priority}}}""", System.Text.Encoding.UTF8, "application/json");
        using var response = await engine.Client.Http.PostAsync("/jobs", body);
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("'priority'", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task ScaleCountsTheTasksTheLeaderHoldsBack()
    {
        var id = await engine.Client.SubmitAsync(new { app = "wordcount", input = "big", mapTasks = 96, reduceTasks = 4 });
        await engine.Client.WaitUntilAsync(id, s => s.State == JobState.Mapping && s.Map.Pending > 40);
        var scale = await engine.Client.Http.GetFromJsonAsync("/scale", Queue.Contracts.QueueJsonContext.Default.ScaleSignal);
        Assert.True(scale!.PendingTasks > 40, $"/scale counted {scale.PendingTasks} pending tasks.");
        Assert.True(scale.QueuedTasks <= 6, $"The queue held {scale.QueuedTasks} tasks: admission should keep it just ahead of the 4 slots (4 + 2 ahead).");
        Assert.Equal(Math.Min(scale.MaxWorkers, (scale.QueuedTasks + scale.LeasedTasks + scale.PendingTasks + scale.SlotsPerWorker - 1) / scale.SlotsPerWorker), scale.DesiredWorkers);
        var view = await engine.Client.WaitAsync(id, TimeSpan.FromMinutes(2));
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
    }
}

public sealed class FairSharingClusterFixture : ClusterFixture
{
    protected override async Task StartStorageAsync()
    {
        await base.StartStorageAsync();
        BigInput.WriteTo(Path.Combine(Folder, "data"));
    }

    /// <summary>
    /// etcd's history compacted at the default interval (a minute), not every 2 s as the other cluster
    /// tests do: these tests time tenths of a second against each other, and compacting a large job's
    /// churn is work etcd does between the leader's writes. With it every 2 s, the small job's time
    /// behind the large one over its time alone went from 2.2-2.5 (three runs) to 2.6-4.3 (six runs).
    /// </summary>
    protected override Dictionary<string, string> AdapterEnvironment()
    {
        var environment = base.AdapterEnvironment();
        environment.Remove("Queue__Coordinator__HistoryCompactionInterval");
        return environment;
    }
}

/// <summary>Fair admission through etcd and RabbitMQ: two coordinators, two workers of two slots.</summary>
[Collection("fair-sharing")]
public sealed class FairSharingClusterTests(FairSharingClusterFixture cluster) : IClassFixture<FairSharingClusterFixture>
{
    private static readonly object Large = new { app = "wordcount", input = "big", mapTasks = 192, reduceTasks = 4 };

    private static readonly object Small = new { app = "wordcount", input = "books", mapTasks = 8, reduceTasks = 2 };

    [Fact]
    public Task ASmallJobBehindALargeOneSharesTheSlotsAndBothAreExact() =>
        Shares.SmallBehindLargeAsync(cluster.Client, Large, Small);

    [Fact]
    public async Task TwoEqualJobsSubmittedTogetherGetEqualSlotTime()
    {
        var run = await Shares.MedianTogetherAsync(cluster.Client, Large, Large);
        var (first, second) = (run.First, run.Second);
        Assert.True(Math.Abs(first - second) <= 0.2 * Math.Max(first, second), $"Slot-seconds granted while both competed (the median of three runs): {first:0.00} and {second:0.00}.");
        Shares.AssertEqualAdmissions(run);
    }

    [Fact]
    public async Task AHighPriorityJobGetsAboutTwiceTheSlotsOfANormalOne()
    {
        var (normal, high, _, _) = await Shares.MedianTogetherAsync(cluster.Client, Large, new { app = "wordcount", input = "big", mapTasks = 192, reduceTasks = 4, priority = "high" });
        var ratio = high / normal;
        Assert.True(ratio is > 1.5 and < 2.7, $"Slot-seconds granted while both competed (the median of three runs): high {high:0.00}, normal {normal:0.00} (ratio {ratio:0.00}).");
    }

    [Fact]
    public async Task KillingTheLeaderMidwayThroughAMixLeavesBothOutputsExact()
    {
        var largeId = await cluster.Client.SubmitAsync(Large);
        await cluster.Client.WaitUntilAsync(largeId, s => s.Map.Total > 0 && s.Map.Done >= s.Map.Total / 5);
        var smallId = await cluster.Client.SubmitAsync(Small);
        await cluster.Client.WaitUntilAsync(smallId, s => s.State == JobState.Mapping);
        var leader = await cluster.LeaderAsync();
        leader.Kill();
        foreach (var (id, reference) in new[] { (largeId, BigInput.WordCount.Value), (smallId, BigInput.Books.Value) })
        {
            var view = await cluster.Client.WaitAsync(id, TimeSpan.FromMinutes(3));
            Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
            Assert.Equal(reference, await cluster.Client.OutputAsync(id));
        }
        var index = cluster.Coordinators.IndexOf(leader);
        cluster.Coordinators[index] = await cluster.StartAsync("Queue.Coordinator", new() { ["Queue__Coordinator__CandidateId"] = $"coordinator-{index}-r" });
    }
}
