using System.Buffers;
using System.Buffers.Text;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Options;
using Queue.Contracts;
using Queue.Contracts.Apps;
using Queue.Contracts.Jobs;
using Queue.Contracts.Ports;

namespace Queue.Worker.Execution;

/// <summary>
/// A reduce (Hadoop's ReduceTask): fetches its partition's segment of every winning map output
/// (<see cref="ShuffleFetcher"/>), merges them streaming, reduces each key — a built-in app, a sum
/// without strings, a reducer script, or the identity — and commits the part only if no earlier
/// attempt did.
/// </summary>
public sealed class ReduceRunner(IBlobStore blobs, IAppCatalog apps, ShuffleFetcher shuffle, IOptions<StorageOptions> storage, IOptions<WorkerOptions> options)
{
    private readonly StorageOptions storage = storage.Value;
    private readonly WorkerOptions options = options.Value;

    public async Task<TaskResult> RunAsync(TaskMessage task, string folder, Action<string>? onStatus, CancellationToken cancellationToken)
    {
        var streaming = task.App == JobRequestValidator.StreamingApp;
        var app = streaming ? StreamingApp.Instance : apps.Create(task.App, task.AppArgs());
        var source = task.IntermediatesOf ?? task.JobId;
        var manifestBytes = await blobs.ReadAllBytesAsync(storage.IntermediateContainer, TaskNames.MapManifest(source), cancellationToken);
        var manifest = JsonSerializer.Deserialize(manifestBytes, QueueJsonContext.Default.MapManifest)
            ?? throw new InvalidDataException("Empty map manifest.");
        using var fetch = QueueTracing.Worker.StartActivity("reduce: fetch");
        var (inputs, inputBytes) = await shuffle.FetchAsync(source, manifest, task.Index, task.ReduceTasks, Path.Combine(folder, "merge"), cancellationToken);
        fetch?.SetTag("queue.bytes", inputBytes);
        fetch?.Dispose();
        // The merger owns the inputs from here: whatever fails below, disposing it closes them all.
        using var merged = new RecordGroups(new RecordMerger(inputs));
        using var reduce = QueueTracing.Worker.StartActivity("reduce: merge and reduce");
        await using var output = await blobs.OpenWriteAsync(storage.OutputContainer, TaskNames.OutputPart(task.JobId, task.Index), cancellationToken);
        long groups, records, outputBytes, outputRecords;
        Dictionary<string, long>? user = null;
        {
            if (app.ReducesBySum)
            {
                (groups, outputBytes) = SumGroups(merged, output, cancellationToken);
                outputRecords = groups;
            }
            else if (app.ReducesByIdentity || (streaming && task.Reducer is null))
            {
                // Records as they came, as bytes: the app's value carries its separator; streaming's identity adds a tab.
                (groups, outputRecords, outputBytes) = IdentityGroups(merged, output, app.ReducesByIdentity ? null : (byte)'\t', cancellationToken);
            }
            else
            {
                using var text = new StreamWriter(output, new UTF8Encoding(false), 1 << 16, leaveOpen: true);
                if (streaming)
                {
                    (groups, outputRecords, outputBytes, user) = await ReduceWithScriptAsync(task, merged, text, Path.Combine(folder, "reducer"), onStatus, cancellationToken);
                }
                else
                {
                    (groups, outputBytes) = ReduceGroups(app, merged, text, cancellationToken);
                    outputRecords = groups;
                }
            }
            records = merged.Records;
        }
        reduce?.Dispose();
        // The first committed attempt wins; a later one finds the part there and reports the same result.
        using (QueueTracing.Worker.StartActivity("reduce: commit"))
        {
            await output.CommitAsync(overwrite: false, cancellationToken);
        }
        return new TaskResult(new TaskCounters { InputBytes = inputBytes, InputRecords = records, InputGroups = groups, OutputRecords = outputRecords, OutputBytes = outputBytes, User = user });
    }

    /// <summary>Calls the app's reduce once per key and writes <c>key&lt;TAB&gt;value</c> lines.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static (long Groups, long Bytes) ReduceGroups(IMapReduceApp app, RecordGroups merged, StreamWriter text, CancellationToken cancellationToken)
    {
        long groups = 0, bytes = 0;
        while (merged.NextGroup())
        {
            cancellationToken.ThrowIfCancellationRequested();
            var key = Encoding.UTF8.GetString(merged.Key);
            var value = app.Reduce(key, merged.Values);
            text.Write(key);
            text.Write('\t');
            text.Write(value);
            text.Write('\n');
            groups++;
            bytes += Encoding.UTF8.GetByteCount(key) + Encoding.UTF8.GetByteCount(value) + 2;
        }
        return (groups, bytes);
    }

    /// <summary>
    /// A summing reduce (<see cref="IMapReduceApp.ReducesBySum"/>): each key's values are added as
    /// they are read and its line is written as UTF-8 bytes, with no string per key or value.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static (long Groups, long Bytes) SumGroups(RecordGroups merged, Stream output, CancellationToken cancellationToken)
    {
        using var lines = new LineWriter(output);
        long groups = 0;
        while (merged.NextGroup())
        {
            long sum = 0;
            while (merged.NextValue(out var value))
            {
                if (!Utf8Parser.TryParse(value, out long amount, out var consumed) || consumed != value.Length)
                {
                    throw new FormatException($"The app reduces by sum, but a value is not an integer: '{Encoding.UTF8.GetString(value)}'.");
                }
                sum += amount;
            }
            var key = merged.Key;
            // Key, tab, at most 20 digits and a sign, newline.
            var line = lines.Reserve(key.Length + 23);
            key.CopyTo(line);
            line[key.Length] = (byte)'\t';
            sum.TryFormat(line[(key.Length + 1)..], out var digits, default, CultureInfo.InvariantCulture);
            line[key.Length + 1 + digits] = (byte)'\n';
            lines.Advance(key.Length + digits + 2);
            if ((++groups & 0xFFF) == 0)
            {
                cancellationToken.ThrowIfCancellationRequested();
            }
        }
        lines.Flush();
        return (groups, lines.Bytes);
    }

    /// <summary>Writes every record as <c>key[separator]value</c> lines, in merge order, as UTF-8 bytes with no string per record.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static (long Groups, long Records, long Bytes) IdentityGroups(RecordGroups merged, Stream output, byte? separator, CancellationToken cancellationToken)
    {
        using var lines = new LineWriter(output);
        long groups = 0, records = 0;
        var gap = separator is null ? 0 : 1;
        while (merged.NextGroup())
        {
            groups++;
            while (merged.NextValue(out var value))
            {
                var key = merged.Key;
                var line = lines.Reserve(key.Length + gap + value.Length + 1);
                key.CopyTo(line);
                if (separator is { } tab)
                {
                    line[key.Length] = tab;
                }
                value.CopyTo(line[(key.Length + gap)..]);
                line[key.Length + gap + value.Length] = (byte)'\n';
                lines.Advance(key.Length + gap + value.Length + 1);
                if ((++records & 0xFFFF) == 0)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                }
            }
        }
        lines.Flush();
        return (groups, records, lines.Bytes);
    }

    /// <summary>Output lines assembled in a pooled buffer and written to the part in large pieces.</summary>
    private sealed class LineWriter(Stream output) : IDisposable
    {
        private byte[] buffer = ArrayPool<byte>.Shared.Rent(1 << 16);
        private int used;

        public long Bytes { get; private set; }

        /// <summary>Room for a line of at most <paramref name="need"/> bytes; <see cref="Advance"/> by what was written.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Span<byte> Reserve(int need)
        {
            if (buffer.Length - used < need)
            {
                Flush();
                if (buffer.Length < need)
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                    buffer = ArrayPool<byte>.Shared.Rent(need);
                }
            }
            return buffer.AsSpan(used);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Advance(int written)
        {
            used += written;
            Bytes += written;
        }

        public void Flush()
        {
            output.Write(buffer, 0, used);
            used = 0;
        }

        public void Dispose() => ArrayPool<byte>.Shared.Return(buffer);
    }

    /// <summary>
    /// A streaming reduce: the partition's records go to the reducer script as <c>key&lt;TAB&gt;value</c>
    /// lines sorted by key; its output lines are the job's output. (Without a reducer the sorted lines
    /// are the output, Hadoop's identity reducer: <see cref="IdentityGroups"/>.)
    /// </summary>
    private async Task<(long Groups, long Records, long Bytes, Dictionary<string, long>? User)> ReduceWithScriptAsync(
        TaskMessage task, RecordGroups merged, StreamWriter output, string work, Action<string>? onStatus, CancellationToken cancellationToken)
    {
        long groups = 0, records = 0, bytes = 0;
        var script = await StreamingScript.FetchAsync(blobs, storage.ScriptsContainer, task.Reducer!, task.JobId, options.TempPath, work, onStatus, cancellationToken);
        await script.RunAsync(async (stdin, ct) =>
        {
            while (merged.NextGroup())
            {
                groups++;
                var key = Encoding.UTF8.GetString(merged.Key);
                foreach (var value in merged.Values)
                {
                    await stdin.WriteAsync(key);
                    await stdin.WriteAsync('\t');
                    await stdin.WriteAsync(value);
                    await stdin.WriteAsync('\n');
                }
                ct.ThrowIfCancellationRequested();
            }
        }, line =>
        {
            // Output lines come from the script's stdout reader, one at a time.
            output.Write(line);
            output.Write('\n');
            records++;
            bytes += Encoding.UTF8.GetByteCount(line) + 1;
        }, new Dictionary<string, string>
        {
            ["mapreduce_task_partition"] = task.Index.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["mapreduce_task_id"] = TaskNames.TaskId(TaskPhase.Reduce, task.Index),
        }, cancellationToken);
        return (groups, records, bytes, script.UserCounters.Count > 0 ? script.UserCounters : null);
    }
}
