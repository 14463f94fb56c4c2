using System.Diagnostics;
using Queue.Contracts.Jobs;
using Queue.Tests.Infrastructure;
using Queue.Worker.Apps;

namespace Queue.Tests;

/// <summary>An embedded ingress whose leader sends backups for attempts running past 1 s (and twice the phase's median).</summary>
public sealed class BackupIngressFixture : EmbeddedEngineFixture
{
    protected override IReadOnlyDictionary<string, string> Settings { get; } = new Dictionary<string, string>
    {
        ["Queue__Coordinator__BackupFloor"] = "00:00:01",
        ["Queue__Coordinator__DeadLetterInterval"] = "00:00:00.250",
    };
}

/// <summary>
/// Backup tasks: one document's first attempt is slow but alive (the crash app's <c>slowFile</c>, its lease
/// renewed); the leader sends a backup once the phase has nothing left to queue and the straggler runs
/// past the threshold; the job finishes in a small fraction of the delay, its output exact.
/// </summary>
public sealed class BackupTaskTests(BackupIngressFixture engine) : IClassFixture<BackupIngressFixture>
{
    private static readonly List<string> Reference = SequentialReference.Run(new WordCountApp(), SequentialReference.ReadFolder(RepoPaths.Gutenberg));

    [Fact]
    public async Task AStragglerGetsABackupAndTheJobEndsLongBeforeIt()
    {
        var watch = Stopwatch.StartNew();
        var id = await engine.Client.SubmitAsync(new
        {
            app = "crash", input = "books", mapTasks = 8, reduceTasks = 2,
            args = new Dictionary<string, string> { ["slowFile"] = "pg-grimm.txt", ["slowSeconds"] = "120" },
        });
        var view = await engine.Client.WaitAsync(id, TimeSpan.FromSeconds(60));
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(30), $"The job took {watch.Elapsed}, waiting on its straggler (120 s).");
        Assert.Equal(Reference, await engine.Client.OutputAsync(id));
        Assert.True(view.Status.BackupAttempts >= 1, "No backup was launched.");
        Assert.True(view.Status.BackupWins >= 1, "The backup did not win.");
        var details = await engine.Client.GetDetailsAsync(id);
        Assert.Contains(details.Tasks, t => t.BackupAt is not null && t.Phase == TaskPhase.Map);
    }

    [Fact]
    public async Task AJobCanSwitchBackupsOff()
    {
        var watch = Stopwatch.StartNew();
        var id = await engine.Client.SubmitAsync(new
        {
            app = "crash", input = "books", mapTasks = 8, reduceTasks = 2, speculative = false,
            args = new Dictionary<string, string> { ["slowFile"] = "pg-grimm.txt", ["slowSeconds"] = "4" },
        });
        var view = await engine.Client.WaitAsync(id, TimeSpan.FromSeconds(60));
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        Assert.True(watch.Elapsed >= TimeSpan.FromSeconds(4), $"The job took {watch.Elapsed}: its straggler was not waited for.");
        Assert.Equal(0, view.Status.BackupAttempts);
        Assert.Equal(Reference, await engine.Client.OutputAsync(id));
    }
}
