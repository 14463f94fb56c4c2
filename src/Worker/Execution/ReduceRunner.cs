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
public sealed class ReduceRunner(IBlobStore blobs, IAppCatalog apps, ShuffleFetcher shuffle, IOptions<StorageOptions> storage, IOptions<WorkerOptions> options, WorkerScratch scratch)
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
        using var reduce = QueueTracing.Worker.StartActivity("reduce: merge and reduce");
        long groups, records, outputBytes, outputRecords, spilled = 0;
        Dictionary<string, long>? user = null;
        BlobWriter output;
        try
        {
            output = await blobs.OpenWriteAsync(storage.OutputContainer, TaskNames.OutputPart(task.JobId, task.Index), cancellationToken);
        }
        catch
        {
            foreach (var input in inputs)
            {
                input.Dispose();
            }
            throw;
        }
        await using (output)
        {
            if (app.ReducesBySum)
            {
                // By hash, not merged: it owns the inputs from here and disposes them.
                (groups, records, outputBytes, spilled) = SumAggregator.Run(inputs, options.SortBufferBytes, options.MergeFactor, Path.Combine(folder, "sum"), output, cancellationToken);
                outputRecords = groups;
            }
            else
            {
                // The merger owns the inputs from here: whatever fails below, disposing it closes them all.
                using var merged = new RecordGroups(new RecordMerger(inputs));
                (groups, records, outputRecords, outputBytes, user) = await ReduceMergedAsync(task, app, streaming, merged, output, folder, onStatus, cancellationToken);
            }
            reduce?.Dispose();
            // The first committed attempt wins; a later one finds the part there and reports the same result.
            using (QueueTracing.Worker.StartActivity("reduce: commit"))
            {
                await output.CommitAsync(overwrite: false, cancellationToken);
            }
        }
        return new TaskResult(new TaskCounters { InputBytes = inputBytes, InputRecords = records, InputGroups = groups, OutputRecords = outputRecords, OutputBytes = outputBytes, SpilledRecords = spilled, User = user });
    }

    /// <summary>A reduce over the merged records: the identity, the app's reduce per key, or a reducer script.</summary>
    private async Task<(long Groups, long Records, long OutputRecords, long OutputBytes, Dictionary<string, long>? User)> ReduceMergedAsync(
        TaskMessage task, IMapReduceApp app, bool streaming, RecordGroups merged, Stream output, string folder, Action<string>? onStatus, CancellationToken cancellationToken)
    {
        long groups, outputBytes, outputRecords;
        Dictionary<string, long>? user = null;
        if (app.ReducesByIdentity || (streaming && task.Reducer is null))
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
        return (groups, merged.Records, outputRecords, outputBytes, user);
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
                sum += SumAggregator.Amount(value);
            }
            lines.WriteSum(merged.Key, sum);
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

    /// <summary>
    /// A streaming reduce: the partition's records go to the reducer script as <c>key&lt;TAB&gt;value</c>
    /// lines sorted by key; its output lines are the job's output. (Without a reducer the sorted lines
    /// are the output, Hadoop's identity reducer: <see cref="IdentityGroups"/>.)
    /// </summary>
    private async Task<(long Groups, long Records, long Bytes, Dictionary<string, long>? User)> ReduceWithScriptAsync(
        TaskMessage task, RecordGroups merged, StreamWriter output, string work, Action<string>? onStatus, CancellationToken cancellationToken)
    {
        long groups = 0, records = 0, bytes = 0;
        var script = await StreamingScript.FetchAsync(blobs, storage.ScriptsContainer, task.Reducer!, task.JobId, scratch.ScriptsFolder, work, onStatus, cancellationToken);
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
