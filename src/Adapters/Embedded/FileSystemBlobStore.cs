using System.Collections.Concurrent;
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
/// <para>
/// Blobs deleted from the <c>recycled</c> container (the intermediates: thousands of small map outputs
/// per job, made and deleted by the thousand) keep their file: it is moved to <c>.tmp/free</c>
/// (at most <see cref="MaxFree"/> there), emptied, and the next write takes it instead of creating a
/// file. Creating files right after deleting thousands is slow on ext4 without a journal (allocating
/// an inode skips, one lookup each, every inode freed in the last minute or more: a third of an
/// engine's CPU on 2,000-map jobs back to back); a reused file allocates no inode. Safe across the
/// processes sharing the folder: a free file is claimed by renaming it away, which one process wins.
/// Only intermediates are recycled: a reader still holding a deleted one sees it emptied, where a
/// deleted file's readers keep its content; an intermediate is deleted only once its job has ended.
/// </para>
/// </summary>
public sealed class FileSystemBlobStore : IBlobStore
{
    public static readonly TimeSpan AbandonedWriteAge = TimeSpan.FromDays(7);
    /// <summary>Emptied files kept for reuse, at most (across the processes sharing the folder, roughly).</summary>
    public const int MaxFree = 4096;
    private const string TempFolder = ".tmp";
    private const string FreeFolder = "free";
    /// <summary>How often, at most, a process lists the free folder for files others left there.</summary>
    public static readonly TimeSpan FreeListingInterval = TimeSpan.FromSeconds(1);
    private readonly string root;
    private readonly string freePath;
    private readonly string? recycled;
    // Free files this process knows of; others' deletes are found by listing the folder, at most once per interval.
    private readonly ConcurrentQueue<string> free = new();
    private int freeCount;
    private long nextFreeListing;

    /// <summary>A store over <paramref name="rootPath"/>; blobs deleted from <paramref name="recycledContainer"/> keep their files for reuse.</summary>
    public FileSystemBlobStore(string rootPath, string? recycledContainer = null)
    {
        root = Path.GetFullPath(rootPath);
        var temp = Path.Combine(root, TempFolder);
        freePath = Path.Combine(temp, FreeFolder);
        Directory.CreateDirectory(temp);
        RemoveAbandonedWrites(temp, DateTime.UtcNow - AbandonedWriteAge);
        if (recycledContainer is not null)
        {
            BlobNames.ValidateContainer(recycledContainer);
            Directory.CreateDirectory(freePath);
            recycled = recycledContainer;
        }
    }

    private static void RemoveAbandonedWrites(string temp, DateTime untouchedSince)
    {
        foreach (var file in Directory.EnumerateFiles(temp))
        {
            if (!IsStoreFileName(Path.GetFileName(file.AsSpan())))
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

    /// <summary>What this store names its temp and free files: 32 hex digits.</summary>
    private static bool IsStoreFileName(ReadOnlySpan<char> name) => name.Length == 32 && !name.ContainsAnyExcept("0123456789abcdef");

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
        try
        {
            foreach (var file in new DirectoryInfo(start).EnumerateFiles("*", SearchOption.AllDirectories))
            {
                var name = Path.GetRelativePath(containerPath, file.FullName).Replace(Path.DirectorySeparatorChar, '/');
                if (!name.StartsWith(prefix, StringComparison.Ordinal))
                {
                    continue;
                }
                long length;
                try
                {
                    length = file.Length;
                }
                catch (FileNotFoundException)
                {
                    // Deleted since the folder was read (a job's cleanup while the leader sweeps): not a blob any more.
                    continue;
                }
                items.Add(new BlobItem(container, name, length));
            }
        }
        catch (DirectoryNotFoundException)
        {
            // The folder itself went with its last blob's delete after the check above: what was listed stands.
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
        bool deleted;
        if (container == recycled && HasRoomToRecycle())
        {
            deleted = Recycle(path);
        }
        else if (deleted = File.Exists(path))
        {
            File.Delete(path);
        }
        if (deleted)
        {
            RemoveEmptyFolders(Path.GetDirectoryName(path)!, ContainerPath(container));
        }
        return Task.FromResult(deleted);
    }

    public Task<BlobWriter> OpenWriteAsync(string container, string name, CancellationToken cancellationToken)
    {
        var final = BlobPath(container, name);
        var containerPath = ContainerPath(container);
        // Folders and files share one namespace here (not in Azure): refuse a clash before writing anything.
        ThrowIfConflict(containerPath, final, name);
        var temp = Path.Combine(root, TempFolder, Guid.NewGuid().ToString("N"));
        if (recycled is not null && TryReuse(temp))
        {
            try
            {
                return Task.FromResult<BlobWriter>(new FileBlobWriter(temp, reused: true, final, containerPath, name));
            }
            catch (IOException)
            {
                // The process that freed it still had it open to empty it: write a new file instead.
                File.Delete(temp);
            }
        }
        return Task.FromResult<BlobWriter>(new FileBlobWriter(temp, reused: false, final, containerPath, name));
    }

    /// <summary>Moves a deleted intermediate's file to the free folder and empties it; false when there was no such blob.</summary>
    private bool Recycle(string path)
    {
        var spare = Guid.NewGuid().ToString("N");
        var spared = Path.Combine(freePath, spare);
        try
        {
            // File.Move refuses a folder (a folder of other blobs is not a blob) as a missing file.
            File.Move(path, spared);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            if (!File.Exists(path))
            {
                return false;
            }
            // The free folder itself is gone (removed by hand): make it again, and delete this one outright.
            Directory.CreateDirectory(freePath);
            File.Delete(path);
            return true;
        }
        try
        {
            // The blob's bytes go now; only the file is kept.
            new FileStream(spared, FileMode.Truncate, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete, 1).Dispose();
        }
        catch (FileNotFoundException)
        {
            return true; // another process took it for a write already, which empties it too
        }
        free.Enqueue(spare);
        Interlocked.Increment(ref freeCount);
        return true;
    }

    /// <summary>Claims a free file as <paramref name="temp"/> by renaming it there; false when none is left.</summary>
    private bool TryReuse(string temp)
    {
        for (var tries = 0; tries < 16; tries++)
        {
            if (!free.TryDequeue(out var spare))
            {
                if (!ListFree())
                {
                    return false;
                }
                continue;
            }
            Interlocked.Decrement(ref freeCount);
            try
            {
                File.Move(Path.Combine(freePath, spare), temp);
                return true;
            }
            catch (FileNotFoundException)
            {
                // Another process claimed it first.
            }
        }
        return false;
    }

    private bool HasRoomToRecycle() => Volatile.Read(ref freeCount) < MaxFree || (ListFree() && Volatile.Read(ref freeCount) < MaxFree);

    /// <summary>
    /// Learns the free files other processes left (the leader deletes what workers write), at most once per
    /// <see cref="FreeListingInterval"/>; true when it listed.
    /// </summary>
    private bool ListFree()
    {
        var now = Environment.TickCount64;
        var due = Volatile.Read(ref nextFreeListing);
        if (now < due || Interlocked.CompareExchange(ref nextFreeListing, now + (long)FreeListingInterval.TotalMilliseconds, due) != due)
        {
            return false;
        }
        free.Clear();
        var count = 0;
        try
        {
            foreach (var file in Directory.EnumerateFiles(freePath))
            {
                var name = Path.GetFileName(file);
                if (IsStoreFileName(name))
                {
                    free.Enqueue(name);
                    count++;
                }
            }
        }
        catch (DirectoryNotFoundException)
        {
            Directory.CreateDirectory(freePath);
        }
        Volatile.Write(ref freeCount, count);
        return true;
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

    /// <summary>A write to <paramref name="tempPath"/>: a new file, or a free one claimed for it (<paramref name="reused"/>).</summary>
    private sealed class FileBlobWriter(string tempPath, bool reused, string finalPath, string containerPath, string name) : BlobWriter
    {
        // A free file is empty (opened without O_TRUNC: ext4 then flushes the file on close, as it does for
        // every file truncated to nothing and rewritten); what a process killed mid-recycle left is cut at commit.
        private readonly FileStream file = new(tempPath, reused ? FileMode.Open : FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, FileOptions.Asynchronous);
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
            if (reused && file.Length > file.Position)
            {
                file.SetLength(file.Position);
            }
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
