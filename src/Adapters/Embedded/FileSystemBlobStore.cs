using System.Runtime.CompilerServices;
using Queue.Contracts.IO;
using Queue.Contracts.Ports;

namespace Queue.Adapters.Embedded;

/// <summary>
/// Blobs as plain files: <c>{root}/{container}/{name}</c>, so users can drop input files in.
/// Writes go to <c>{root}/.tmp</c> and are renamed into place on commit (atomic on one file system).
/// A write whose process was killed before it committed or discarded leaves its file there; as Azure
/// Blob drops uncommitted blocks a week after their last write, opening the store deletes those
/// untouched for <see cref="AbandonedWriteAge"/> (several processes may share the folder, and a live
/// write can be quiet for hours: a reduce holds its output open while it merges).
/// </summary>
public sealed class FileSystemBlobStore : IBlobStore
{
    public static readonly TimeSpan AbandonedWriteAge = TimeSpan.FromDays(7);
    private const string TempFolder = ".tmp";
    private readonly string root;

    public FileSystemBlobStore(string rootPath)
    {
        root = Path.GetFullPath(rootPath);
        var temp = Path.Combine(root, TempFolder);
        Directory.CreateDirectory(temp);
        RemoveAbandonedWrites(temp, DateTime.UtcNow - AbandonedWriteAge);
    }

    private static void RemoveAbandonedWrites(string temp, DateTime untouchedSince)
    {
        foreach (var file in Directory.EnumerateFiles(temp))
        {
            // Only what this store names its writes: 32 hex digits.
            var name = Path.GetFileName(file.AsSpan());
            if (name.Length != 32 || name.ContainsAnyExcept("0123456789abcdef"))
            {
                continue;
            }
            try
            {
                if (File.GetLastWriteTimeUtc(file) < untouchedSince)
                {
                    File.Delete(file);
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Gone already, or not ours to delete.
            }
        }
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
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException || (e is UnauthorizedAccessException && Directory.Exists(path)))
        {
            // A folder of other blobs is not a blob.
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
        BlobNames.ValidatePrefix(prefix);
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
        var containerPath = ContainerPath(container);
        // Folders and files share one namespace here (not in Azure): refuse a clash before writing anything.
        ThrowIfConflict(containerPath, final, name);
        var temp = Path.Combine(root, TempFolder, Guid.NewGuid().ToString("N"));
        return Task.FromResult<BlobWriter>(new FileBlobWriter(temp, final, containerPath, name));
    }

    private static void ThrowIfConflict(string containerPath, string final, string name)
    {
        if (Directory.Exists(final))
        {
            throw new BlobConflictException($"'{name}' is a folder of other blobs; a blob cannot have that name.");
        }
        for (var folder = Path.GetDirectoryName(final); folder is not null && folder.Length > containerPath.Length; folder = Path.GetDirectoryName(folder))
        {
            if (File.Exists(folder))
            {
                var blob = Path.GetRelativePath(containerPath, folder).Replace(Path.DirectorySeparatorChar, '/');
                throw new BlobConflictException($"'{blob}' is a blob, so nothing can be stored under '{blob}/'.");
            }
        }
    }

    private string ContainerPath(string container)
    {
        BlobNames.ValidateContainer(container);
        return Path.Combine(root, container);
    }

    private string BlobPath(string container, string name)
    {
        var containerPath = ContainerPath(container);
        BlobNames.ValidateName(name);
        var path = Path.GetFullPath(Path.Combine(containerPath, name));
        // The rules already exclude escapes (.., absolute paths); this guards the file system regardless.
        if (!path.StartsWith(containerPath + Path.DirectorySeparatorChar, StringComparison.Ordinal))
        {
            throw new InvalidBlobNameException($"'{name}' is not a blob name inside '{container}'.");
        }
        return path;
    }

    private static void RemoveEmptyFolders(string folder, string stopAt)
    {
        while (folder.Length > stopAt.Length && folder.StartsWith(stopAt, StringComparison.Ordinal))
        {
            try
            {
                // rmdir refuses a folder that is not empty, and finds that out at its first entry; listing
                // the folder first read all of it (ext4 builds a hashed directory's whole tree to list it),
                // once per delete: deleting a 2,000-map job's outputs was 8 % of the engine's CPU beside the next job.
                Directory.Delete(folder);
            }
            catch (IOException)
            {
                return; // Not empty, or a concurrent writer put something there, or removed it first.
            }
            folder = Path.GetDirectoryName(folder)!;
        }
    }

    private sealed class FileBlobWriter(string tempPath, string finalPath, string containerPath, string name) : BlobWriter
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
            if (Durable)
            {
                file.Flush(flushToDisk: true);
            }
            await file.DisposeAsync();
            try
            {
                ThrowIfConflict(containerPath, finalPath, name);
                Directory.CreateDirectory(Path.GetDirectoryName(finalPath)!);
                // Without overwrite, .NET links then unlinks on Unix: the create-if-absent is atomic.
                File.Move(tempPath, finalPath, overwrite);
                committed = true;
                return true;
            }
            catch (IOException) when (!overwrite && File.Exists(finalPath))
            {
                return false;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // A concurrent writer made a clash after the check: report it as one.
                ThrowIfConflict(containerPath, finalPath, name);
                throw;
            }
            finally
            {
                // A failed commit leaves nothing: no temp file, no folders made for it.
                if (!committed)
                {
                    File.Delete(tempPath);
                    committed = true;
                    RemoveEmptyFolders(Path.GetDirectoryName(finalPath)!, containerPath);
                }
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
