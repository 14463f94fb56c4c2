namespace Queue.Tests.Infrastructure;

/// <summary><c>scripts/cluster.sh</c> run as a user runs it, in a folder of its own (<c>QUEUE_CLUSTER_DIR</c>), brought down and removed at the end.</summary>
public sealed class ScriptedCluster(string name, IReadOnlyDictionary<string, string>? environment = null) : IAsyncDisposable
{
    public string Root { get; } = CreateRoot(name);

    public Task<(int Exit, string Output)> RunAsync(string arguments, TimeSpan timeout)
    {
        var variables = new Dictionary<string, string> { ["QUEUE_CLUSTER_DIR"] = Root };
        foreach (var (key, value) in environment ?? new Dictionary<string, string>())
        {
            variables[key] = value;
        }
        return OsProcess.BashAsync($"scripts/cluster.sh {arguments}", RepoPaths.Root, timeout, variables);
    }

    public async ValueTask DisposeAsync()
    {
        await RunAsync("down", TimeSpan.FromMinutes(2));
        Directory.Delete(Root, recursive: true);
    }

    private static string CreateRoot(string name)
    {
        var root = Path.Combine(Path.GetTempPath(), name, Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(root);
        return root;
    }
}
