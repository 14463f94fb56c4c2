using System.Text.RegularExpressions;
using Queue.Contracts.Jobs;
using Queue.Tests.Infrastructure;
using Queue.Worker.Apps;

namespace Queue.Tests;

/// <summary>
/// <c>scripts/cluster.sh up 1 azure</c>: its closing line says how input gets in (blobs live in Azurite,
/// not in .cluster/data), and the command it prints, run as printed, puts the books in for a job. Shares
/// port 5000 with the README test, so it runs in that collection.
/// </summary>
[Collection("readme")]
public sealed partial class ClusterScriptTests : IAsyncLifetime
{
    private readonly ScriptedCluster cluster = new("queue-azure-cluster");

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await cluster.DisposeAsync();

    [Fact]
    public async Task TheAzureModeSaysHowToUploadAndThatCommandWorks()
    {
        var (exit, output) = await cluster.RunAsync("up 1 azure", TimeSpan.FromMinutes(5));
        Assert.True(exit == 0, output);
        Assert.DoesNotContain("put input under", output, StringComparison.Ordinal);
        var upload = UploadCommand().Match(output);
        Assert.True(upload.Success, output);
        var command = upload.Groups[1].Value.Replace("<folder>", $"'{RepoPaths.Gutenberg}'", StringComparison.Ordinal).Replace("<container>", "books", StringComparison.Ordinal);
        var (uploaded, log) = await OsProcess.BashAsync(command, RepoPaths.Root, TimeSpan.FromMinutes(2));
        Assert.True(uploaded == 0, log);

        using var client = new JobClient(new Uri("http://127.0.0.1:5000"));
        var id = await client.SubmitAsync(new { app = "wordcount", input = "books", mapTasks = 8, reduceTasks = 2 });
        var view = await client.WaitAsync(id, TimeSpan.FromMinutes(2));
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        Assert.Equal(SequentialReference.Run(new WordCountApp(), SequentialReference.ReadFolder(RepoPaths.Gutenberg)), await client.OutputAsync(id));
    }

    [GeneratedRegex(@"put input in with: (dotnet \S+ upload <folder> --container <container> --url \S+)\)")]
    private static partial Regex UploadCommand();
}
