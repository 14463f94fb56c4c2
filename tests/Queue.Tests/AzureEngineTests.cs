using Microsoft.Extensions.Options;
using Queue.Adapters.Azure;
using Queue.Contracts.Jobs;
using Queue.Contracts.Ports;
using Queue.Tests.Infrastructure;
using Queue.Worker.Apps;

namespace Queue.Tests;

/// <summary>Azure Storage Queues and Azure Blob (Azurite) with etcd: the Azure-native path, as processes.</summary>
public sealed class AzureClusterFixture : ProcessClusterFixture
{
    public AzuriteServer Azurite { get; private set; } = null!;

    protected override int EtcdMembers => 1;

    protected override async Task StartStorageAsync()
    {
        Azurite = await AzuriteServer.StartAsync();
        var client = new AzureStorageClients(Options.Create(new AzureStorageOptions { ConnectionString = Azurite.ConnectionString() }));
        var blobs = new AzureBlobStore(client);
        await blobs.CreateContainerIfMissingAsync("books", CancellationToken.None);
        foreach (var file in Directory.GetFiles(RepoPaths.Gutenberg, "*.txt"))
        {
            await using var content = File.OpenRead(file);
            await blobs.PutAsync("books", Path.GetFileName(file), content, CancellationToken.None);
        }
    }

    protected override ValueTask StopStorageAsync() => Azurite?.DisposeAsync() ?? ValueTask.CompletedTask;

    protected override Dictionary<string, string> AdapterEnvironment() => new()
    {
        ["Queue__Adapters__WorkQueue"] = "azurequeue",
        ["Queue__Adapters__BlobStore"] = "azureblob",
        ["Queue__Azure__ConnectionString"] = Azurite.ConnectionString(),
        ["Queue__Azure__MaxPollInterval"] = "00:00:00.200",
        // A short visibility timeout so a killed worker's task comes back within seconds; live workers renew it.
        ["Queue__WorkQueue__LeaseDuration"] = "00:00:03",
    };
}

public sealed class AzureEngineTests(AzureClusterFixture cluster) : IClassFixture<AzureClusterFixture>
{
    private static readonly Lazy<List<(string Name, string Text)>> Books = new(() => SequentialReference.ReadFolder(RepoPaths.Gutenberg).ToList());

    [Fact]
    public async Task WordCountOnAzureStorageEqualsTheReference()
    {
        var id = await cluster.Client.SubmitAsync(new { app = "wordcount", input = "books", mapTasks = 8, reduceTasks = 3 });
        var view = await cluster.Client.WaitAsync(id, TimeSpan.FromMinutes(2));
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        Assert.Equal(SequentialReference.Run(new WordCountApp(), Books.Value), await cluster.Client.OutputAsync(id));
        Assert.Equal("dfs-dest", view.Status.OutputContainer);
    }

    [Fact]
    public async Task WorkersKilledMidTaskStillGiveTheReference()
    {
        var args = new Dictionary<string, string> { ["stallRate"] = "1", ["stallSeconds"] = "1" };
        var id = await cluster.Client.SubmitAsync(new { app = "crash", input = "books", mapTasks = 10, reduceTasks = 3, args, maxAttempts = 20 });
        var kills = 0;
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(3);
        JobView view;
        while (!(view = await cluster.Client.GetAsync(id)).Status.IsTerminal)
        {
            Assert.True(DateTime.UtcNow < deadline, "The job did not end.");
            await Task.Delay(700);
            if (kills < 3 && view.Status.State is JobState.Mapping or JobState.Reducing && view.Status.Map.Running + view.Status.Reduce.Running > 0)
            {
                var index = kills % cluster.Workers.Count;
                cluster.Workers[index].Kill();
                kills++;
                cluster.Workers[index] = await cluster.StartWorkerAsync(index);
            }
        }
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        Assert.True(kills >= 2, $"Only {kills} kills happened.");
        Assert.Equal(SequentialReference.Run(new WordCountApp(), Books.Value), await cluster.Client.OutputAsync(id));
    }
}
