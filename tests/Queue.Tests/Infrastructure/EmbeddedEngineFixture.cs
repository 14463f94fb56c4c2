namespace Queue.Tests.Infrastructure;

/// <summary>
/// The ingress as a real process in its embedded default (coordinator and workers in-process over a
/// filesystem data folder), with the gutenberg books in the <c>books</c> container.
/// </summary>
public sealed class EmbeddedEngineFixture : IAsyncLifetime
{
    public string Folder { get; } = Path.Combine(Path.GetTempPath(), "queue-e2e", Guid.NewGuid().ToString("N"));

    public string DataPath => Path.Combine(Folder, "data");

    public ServiceProcess Ingress { get; private set; } = null!;

    public JobClient Client { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        var books = Path.Combine(DataPath, "books");
        Directory.CreateDirectory(books);
        foreach (var file in Directory.GetFiles(RepoPaths.Gutenberg, "*.txt"))
        {
            File.Copy(file, Path.Combine(books, Path.GetFileName(file)));
        }
        Ingress = await ServiceProcess.StartAsync("Queue.Ingress", Folder, new Dictionary<string, string>
        {
            ["Queue__Adapters__DataPath"] = DataPath,
            ["Queue__Worker__Slots"] = "4",
            ["Queue__Worker__TempPath"] = Path.Combine(Folder, "tmp"),
            ["Queue__Worker__CancelCheckInterval"] = "00:00:00.200",
            ["Queue__WorkQueue__LeaseDuration"] = "00:00:02",
            ["Queue__Coordinator__PollInterval"] = "00:00:00.100",
        });
        Client = new JobClient(Ingress.BaseAddress);
    }

    public async Task DisposeAsync()
    {
        Client.Dispose();
        await Ingress.DisposeAsync();
        Directory.Delete(Folder, recursive: true);
    }
}
