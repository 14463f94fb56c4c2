namespace Queue.Tests.Infrastructure;

/// <summary>Locations of the repository, the built services and the shared test data.</summary>
public static class RepoPaths
{
    public static string Root { get; } = FindRoot();

    /// <summary>The build configuration the tests were built with (debug or release).</summary>
    public static string Configuration { get; } = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar)).Name;

    public static string ServiceDll(string project) =>
        Path.Combine(Root, "artifacts", "bin", project, Configuration, project + ".dll");

    /// <summary>The eight public-domain books in <c>../shared/data/gutenberg</c>.</summary>
    public static string Gutenberg { get; } = Path.GetFullPath(Path.Combine(Root, "..", "shared", "data", "gutenberg"));

    /// <summary>Copies the books into <paramref name="folder"/> (created if missing), as a user drops input files in.</summary>
    public static void CopyBooksTo(string folder)
    {
        Directory.CreateDirectory(folder);
        foreach (var file in Directory.GetFiles(Gutenberg, "*.txt"))
        {
            File.Copy(file, Path.Combine(folder, Path.GetFileName(file)));
        }
    }

    private static string FindRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Queue.sln")))
        {
            dir = dir.Parent;
        }
        return dir?.FullName ?? throw new InvalidOperationException("Queue.sln not found above the test binaries.");
    }
}
