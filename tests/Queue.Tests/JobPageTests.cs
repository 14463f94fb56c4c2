using System.Text.Json.Nodes;
using Queue.Contracts.Jobs;
using Queue.Tests.Infrastructure;

namespace Queue.Tests;

/// <summary>The embedded engine with a short backup floor, so a straggler gets its backup within the test.</summary>
public sealed class JobPageEngineFixture : EmbeddedEngineFixture
{
    protected override IReadOnlyDictionary<string, string> Settings { get; } = new Dictionary<string, string>
    {
        ["Queue__Coordinator__BackupFloor"] = "00:00:01",
        ["Queue__Coordinator__DeadLetterInterval"] = "00:00:00.200",
    };
}

/// <summary>A job's page in headless Chromium: its timeline drawn from the task records, live and after the end.</summary>
public sealed class JobPageTests(JobPageEngineFixture engine) : IClassFixture<JobPageEngineFixture>
{
    [Fact]
    public async Task TheTimelineDrawsEveryAttemptOnItsWorkersSlotsLiveAndAfterTheEnd()
    {
        // A straggler (its first attempt sleeps 4 s, so it gets a backup), and attempts that fail at
        // random (a third of them; twenty attempts allowed, so the job still succeeds).
        var id = await engine.Client.SubmitAsync(new
        {
            app = "crash", input = "books", mapTasks = 16, reduceTasks = 2, maxAttempts = 20,
            args = new Dictionary<string, string> { ["failRate"] = "0.35", ["slowFile"] = "pg-grimm.txt", ["slowSeconds"] = "4" },
        });
        await using var browser = await HeadlessChromium.StartAsync();
        await browser.NavigateAsync(new Uri(engine.Ingress.BaseAddress, $"/ui/jobs/{id}"));

        // Live: bars drawn while the job still runs.
        await browser.WaitForAsync("(window.jobTimeline?.drawn > 0 && ['Mapping', 'Reducing'].includes(document.getElementById('job-state').dataset.state)) || null");
        await browser.WaitForAsync("document.getElementById('job-state').dataset.state === 'Succeeded' || null", TimeSpan.FromSeconds(60));
        // The page's last refresh came after the end: what it drew is what the records hold.
        var drawn = (await browser.EvaluateAsync("""
            JSON.stringify({
              lanes: window.jobTimeline.timeline.lanes,
              bars: window.jobTimeline.lanesBars.flat().map(b => ({ attempt: b.attempt, task: b.task, lane: b.lane, outcome: b.outcome, backup: b.backup, won: b.won,
                start: Date.parse(b.startedAt), end: Date.parse(b.endedAt) })),
            })
            """))!.GetValue<string>();
        var page = JsonNode.Parse(drawn)!;
        var details = await engine.Client.GetDetailsAsync(id);
        var attempts = details.Tasks.SelectMany(t => (t.History ?? []).Select(a => (Task: TaskNames.TaskId(t.Phase, t.Index), Attempt: a, Won: t.WinningAttempt == a.Id))).ToList();
        var bars = page["bars"]!.AsArray();
        Assert.Equal(attempts.Count, bars.Count);
        foreach (var (task, attempt, won) in attempts)
        {
            var bar = bars.Single(b => b!["attempt"]!.GetValue<string>() == attempt.Id);
            Assert.Equal(task, bar!["task"]!.GetValue<string>());
            // An attempt still running when its job ended is drawn as killed.
            Assert.Equal((attempt.Outcome == AttemptOutcome.Running ? AttemptOutcome.Killed : attempt.Outcome).ToString(), bar["outcome"]!.GetValue<string>());
            Assert.Equal(attempt.Backup, bar["backup"]!.GetValue<bool>());
            Assert.Equal(won, bar["won"]!.GetValue<bool>());
        }
        Assert.Equal(details.Tasks.Count, attempts.Where(a => a.Won).Count());
        Assert.Contains(attempts, a => a.Attempt.Outcome == AttemptOutcome.Failed);
        Assert.Contains(attempts, a => a.Attempt.Backup);
        // One row per slot: a worker never shows more rows than it has slots (4), and the attempts on a
        // row never overlap in time (a bar is at least a pixel wide, so very short ones may touch on screen).
        var lanes = page["lanes"]!.AsArray();
        Assert.All(lanes.GroupBy(l => l!["worker"]!.GetValue<string>()), g => Assert.InRange(g.Count(), 1, 4));
        foreach (var lane in bars.GroupBy(b => b!["lane"]!.GetValue<int>()))
        {
            var ordered = lane.OrderBy(b => b!["start"]!.GetValue<double>()).ToList();
            for (var i = 1; i < ordered.Count; i++)
            {
                Assert.True(ordered[i]!["start"]!.GetValue<double>() >= ordered[i - 1]!["end"]!.GetValue<double>(), "Two attempts overlap on one row.");
            }
        }

        // Hover over a backup attempt (the longest, so no thin neighbour shares its first pixel): the tip names it.
        var backup = attempts.Where(a => a.Attempt.Backup).Select(a => a.Attempt.Id)
            .OrderByDescending(id => bars.Where(b => b!["attempt"]!.GetValue<string>() == id).Select(b => b!["end"]!.GetValue<double>() - b["start"]!.GetValue<double>()).Single())
            .First();
        var tip = await browser.EvaluateAsync($$"""
            (() => {
              const b = window.jobTimeline.lanesBars.flat().find(b => b.attempt === '{{backup}}');
              const canvas = document.getElementById('timeline'), rect = canvas.getBoundingClientRect();
              const y = window.jobTimeline.top + b.lane * window.jobTimeline.rowHeight + window.jobTimeline.rowHeight / 2;
              canvas.dispatchEvent(new MouseEvent('mousemove', { clientX: Math.ceil(rect.left + b.x0), clientY: rect.top + y }));
              const tip = document.getElementById('tip');
              return tip.hidden ? null : tip.textContent;
            })()
            """);
        Assert.Contains(backup, tip!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Contains("(backup)", tip.GetValue<string>(), StringComparison.Ordinal);
        // Every bar names itself under the pointer wherever no other bar shares that pixel (mouse
        // positions are whole pixels: a bar is hovered at the first whole pixel inside it).
        var misses = (await browser.EvaluateAsync("""
            (() => {
              const canvas = document.getElementById('timeline'), rect = canvas.getBoundingClientRect(), t = window.jobTimeline;
              const misses = [];
              let checked = 0;
              for (const lane of t.lanesBars) for (const b of lane) {
                const clientX = Math.ceil(rect.left + b.x0), px = clientX - rect.left;
                if (px > b.x1 || lane.some((o) => o !== b && px >= o.x0 && px <= o.x1)) continue;
                const y = t.top + b.lane * t.rowHeight + t.rowHeight / 2;
                canvas.dispatchEvent(new MouseEvent('mousemove', { clientX, clientY: rect.top + y }));
                const tip = document.getElementById('tip');
                checked++;
                if (tip.hidden || !tip.textContent.includes(b.attempt)) misses.push(`${b.attempt} at ${px.toFixed(2)} in ${b.x0.toFixed(2)}-${b.x1.toFixed(2)}: ${tip.hidden ? 'no tip' : tip.textContent.slice(0, 40)}`);
              }
              return JSON.stringify({ checked, misses });
            })()
            """))!.GetValue<string>();
        var hover = JsonNode.Parse(misses)!;
        Assert.True(hover["checked"]!.GetValue<int>() >= bars.Count / 2, misses);
        Assert.True(hover["misses"]!.AsArray().Count == 0, misses);
        // The counters, the error of a failed attempt and the output parts with their sizes show too.
        Assert.Contains("crash app: simulated failure", (await browser.EvaluateAsync("document.querySelector('#errors tbody').textContent"))!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal(2, (await browser.EvaluateAsync("document.querySelectorAll('#outputs tbody tr').length"))!.GetValue<int>());

        var png = await browser.ScreenshotAsync();
        var folder = Path.Combine(RepoPaths.Root, "artifacts", "screenshots");
        Directory.CreateDirectory(folder);
        await File.WriteAllBytesAsync(Path.Combine(folder, "job-page.png"), png);
    }

    [Fact]
    public async Task APageOfTwoThousandTasksDrawsQuickly()
    {
        var id = await engine.Client.SubmitAsync(new { app = "wordcount", input = "books", mapTasks = 2000, reduceTasks = 4 });
        var view = await engine.Client.WaitAsync(id, TimeSpan.FromMinutes(2));
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        Assert.True(view.Status.Map.Total >= 2000, $"{view.Status.Map.Total} maps.");
        await using var browser = await HeadlessChromium.StartAsync();
        await browser.NavigateAsync(new Uri(engine.Ingress.BaseAddress, $"/ui/jobs/{id}"));
        await browser.WaitForAsync("window.jobTimeline?.drawn >= 2004 || null", TimeSpan.FromSeconds(30));
        // One canvas, no element per attempt; a redraw (as on resize) and a hover stay well under a frame budget of 100 ms.
        var millis = (await browser.EvaluateAsync("""
            (() => {
              const t0 = performance.now();
              for (let i = 0; i < 5; i++) draw();
              const canvas = document.getElementById('timeline'), rect = canvas.getBoundingClientRect();
              for (let i = 0; i < 50; i++) canvas.dispatchEvent(new MouseEvent('mousemove', { clientX: rect.left + 200 + i * 5, clientY: rect.top + 20 }));
              return (performance.now() - t0) / 5;
            })()
            """))!.GetValue<double>();
        Assert.True(millis < 100, $"A redraw of the 2,004-attempt timeline took {millis:0.0} ms.");
        Assert.True((await browser.EvaluateAsync("document.getElementsByTagName('*').length"))!.GetValue<int>() < 500, "The page should not hold an element per attempt.");
    }
}
