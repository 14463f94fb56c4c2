namespace Queue.Tests.Infrastructure;

/// <summary>
/// The ingress as a real process in its embedded default (coordinator and workers in-process over a
/// filesystem data folder), with the gutenberg books in the <c>books</c> container. Fixtures that need
/// other settings derive and add them in <see cref="Settings"/>.
/// </summary>
public class EmbeddedEngineFixture : IAsyncLifetime
{
    public string Folder { get; } = Path.Combine(Path.GetTempPath(), "queue-e2e", Guid.NewGuid().ToString("N"));

    public string DataPath => Path.Combine(Folder, "data");

    public ServiceProcess Ingress { get; private set; } = null!;

    public JobClient Client { get; private set; } = null!;

    /// <summary>Configuration the ingress gets besides (or instead of) the defaults below.</summary>
    protected virtual IReadOnlyDictionary<string, string> Settings { get; } = new Dictionary<string, string>();

    public virtual async Task InitializeAsync()
    {
        RepoPaths.CopyBooksTo(Path.Combine(DataPath, "books"));
        var environment = new Dictionary<string, string>
        {
            ["Queue__Adapters__DataPath"] = DataPath,
            ["Queue__Worker__Slots"] = "4",
            ["Queue__Worker__TempPath"] = Path.Combine(Folder, "tmp"),
            ["Queue__Worker__CancelCheckInterval"] = "00:00:00.200",
            ["Queue__WorkQueue__LeaseDuration"] = "00:00:02",
            ["Queue__Coordinator__PollInterval"] = "00:00:00.100",
        };
        foreach (var (key, value) in Settings)
        {
            environment[key] = value;
        }
        Ingress = await ServiceProcess.StartAsync("Queue.Ingress", Folder, environment);
        Client = new JobClient(Ingress.BaseAddress);
    }

    public async Task DisposeAsync()
    {
        Client.Dispose();
        await Ingress.DisposeAsync();
        Directory.Delete(Folder, recursive: true);
    }
}
