using System.Runtime.CompilerServices;
using Queue.Contracts.IO;
using Queue.Contracts.Ports;

namespace Queue.Adapters.Embedded;

/// <summary>
/// Blobs as plain files: <c>{root}/{container}/{name}</c>, so users can drop input files in.
/// Writes go to <c>{root}/.tmp</c> and are renamed into place on commit (atomic on one file system).
/// </summary>
public sealed class FileSystemBlobStore : IBlobStore
{
    private const string TempFolder = ".tmp";
    private readonly string root;

    public FileSystemBlobStore(string rootPath)
    {
        root = Path.GetFullPath(rootPath);
        Directory.CreateDirectory(Path.Combine(root, TempFolder));
    }

    public string RootPath => root;

    public Task CreateContainerIfMissingAsync(string container, CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(ContainerPath(container));
        return Task.CompletedTask;
    }

    public Task<Stream> OpenReadAsync(string container, string name, long offset, long? length, CancellationToken cancellationToken)
    {
        var path = BlobPath(container, name);
        FileStream file;
        try
        {
            file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1, FileOptions.Asynchronous | FileOptions.SequentialScan);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new BlobNotFoundException(container, name);
        }
        if (offset > 0)
        {
            file.Seek(offset, SeekOrigin.Begin);
        }
        return Task.FromResult<Stream>(length is { } l ? new ReadLimitStream(file, l) : file);
    }

    public Task<BlobItem?> GetPropertiesAsync(string container, string name, CancellationToken cancellationToken)
    {
        var info = new FileInfo(BlobPath(container, name));
        return Task.FromResult(info.Exists ? new BlobItem(container, name, info.Length) : null);
    }

    public async IAsyncEnumerable<BlobItem> ListAsync(string container, string prefix, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var containerPath = ContainerPath(container);
        if (!Directory.Exists(containerPath))
        {
            yield break;
        }
        // Walk only the folder the prefix points into, not the whole container.
        var slash = prefix.LastIndexOf('/');
        var start = slash < 0 ? containerPath : Path.Combine(containerPath, prefix[..slash]);
        if (!Directory.Exists(start))
        {
            yield break;
        }
        var items = new List<BlobItem>();
        foreach (var file in new DirectoryInfo(start).EnumerateFiles("*", SearchOption.AllDirectories))
        {
            var name = Path.GetRelativePath(containerPath, file.FullName).Replace(Path.DirectorySeparatorChar, '/');
            if (name.StartsWith(prefix, StringComparison.Ordinal))
            {
                items.Add(new BlobItem(container, name, file.Length));
            }
        }
        items.Sort(static (a, b) => string.CompareOrdinal(a.Name, b.Name));
        foreach (var item in items)
        {
            cancellationToken.ThrowIfCancellationRequested();
            yield return item;
        }
        await Task.CompletedTask;
    }

    public Task<bool> DeleteAsync(string container, string name, CancellationToken cancellationToken)
    {
        var path = BlobPath(container, name);
        if (!File.Exists(path))
        {
            return Task.FromResult(false);
        }
        File.Delete(path);
        RemoveEmptyFolders(Path.GetDirectoryName(path)!, ContainerPath(container));
        return Task.FromResult(true);
    }

    public Task<BlobWriter> OpenWriteAsync(string container, string name, CancellationToken cancellationToken)
    {
        var final = BlobPath(container, name);
        var temp = Path.Combine(root, TempFolder, Guid.NewGuid().ToString("N"));
        return Task.FromResult<BlobWriter>(new FileBlobWriter(temp, final));
    }

    private string ContainerPath(string container)
    {
        if (container.Length == 0 || container.StartsWith('.') || container.Contains('/') || container.Contains('\\'))
        {
            throw new ArgumentException($"'{container}' is not a container name.", nameof(container));
        }
        return Path.Combine(root, container);
    }

    private string BlobPath(string container, string name)
    {
        var containerPath = ContainerPath(container);
        var path = Path.GetFullPath(Path.Combine(containerPath, name));
        // A name must not escape its container (.., absolute paths).
        if (name.Length == 0 || !path.StartsWith(containerPath + Path.DirectorySeparatorChar, StringComparison.Ordinal))
        {
            throw new ArgumentException($"'{name}' is not a blob name inside '{container}'.", nameof(name));
        }
        return path;
    }

    private static void RemoveEmptyFolders(string folder, string stopAt)
    {
        while (folder.Length > stopAt.Length && folder.StartsWith(stopAt, StringComparison.Ordinal))
        {
            try
            {
                if (Directory.EnumerateFileSystemEntries(folder).Any())
                {
                    return;
                }
                Directory.Delete(folder);
            }
            catch (IOException)
            {
                return; // A concurrent writer put something there, or removed it first.
            }
            folder = Path.GetDirectoryName(folder)!;
        }
    }

    private sealed class FileBlobWriter(string tempPath, string finalPath) : BlobWriter
    {
        private readonly FileStream file = new(tempPath, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, FileOptions.Asynchronous);
        private bool committed;

        public override void Write(byte[] buffer, int offset, int count) => file.Write(buffer, offset, count);

        public override void Write(ReadOnlySpan<byte> buffer) => file.Write(buffer);

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) =>
            file.WriteAsync(buffer, cancellationToken);

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            file.WriteAsync(buffer, offset, count, cancellationToken);

        public override void Flush() => file.Flush();

        public override Task FlushAsync(CancellationToken cancellationToken) => file.FlushAsync(cancellationToken);

        public override async Task<bool> CommitAsync(bool overwrite, CancellationToken cancellationToken)
        {
            ObjectDisposedException.ThrowIf(committed, this);
            await file.FlushAsync(cancellationToken);
            file.Flush(flushToDisk: true);
            await file.DisposeAsync();
            committed = true;
            Directory.CreateDirectory(Path.GetDirectoryName(finalPath)!);
            try
            {
                // Without overwrite, .NET links then unlinks on Unix: the create-if-absent is atomic.
                File.Move(tempPath, finalPath, overwrite);
                return true;
            }
            catch (IOException) when (!overwrite && File.Exists(finalPath))
            {
                File.Delete(tempPath);
                return false;
            }
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                file.Dispose();
                if (!committed)
                {
                    File.Delete(tempPath);
                }
            }
            base.Dispose(disposing);
        }

        public override async ValueTask DisposeAsync()
        {
            await file.DisposeAsync();
            if (!committed)
            {
                File.Delete(tempPath);
            }
            committed = true;
            GC.SuppressFinalize(this);
        }
    }
}
