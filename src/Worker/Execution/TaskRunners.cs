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

/// <summary>Runs map and reduce tasks against the blob store. Stateless; one call per attempt.</summary>
public sealed class TaskRunner(IBlobStore blobs, IAppCatalog apps, IOptions<StorageOptions> storage, IOptions<WorkerOptions> options)
{
    private readonly StorageOptions storage = storage.Value;
    private readonly WorkerOptions options = options.Value;

    /// <param name="onStatus">Receives streaming scripts' <c>reporter:status:</c> lines as they come.</param>
    public Task<TaskCounters> RunAsync(TaskMessage task, string attemptId, Action<string>? onStatus, CancellationToken cancellationToken)
    {
        statusSink.Value = onStatus;
        return task.Phase == TaskPhase.Map ? MapAsync(task, attemptId, cancellationToken) : ReduceAsync(task, cancellationToken);
    }

    // Flows with the attempt's async calls, so concurrent slots keep their own sink.
    private readonly AsyncLocal<Action<string>?> statusSink = new();

    /// <summary>
    /// Reads the task's splits (one blob range, or several small blobs packed together) in turn, maps
    /// them, and writes one sorted intermediate blob per partition, scoped to this attempt. Each piece
    /// keeps its own document name and line numbers.
    /// </summary>
    public async Task<TaskCounters> MapAsync(TaskMessage task, string attemptId, CancellationToken cancellationToken)
    {
        var splits = Pieces(task);
        if (task.App == JobRequestValidator.StreamingApp)
        {
            return await MapWithScriptAsync(task, splits, attemptId, cancellationToken);
        }
        var app = apps.Create(task.App, AppArgs(task));
        using var collector = new MapOutputCollector(task.ReduceTasks, app, options.SortBufferBytes, Path.Combine(options.TempPath, attemptId));
        var skipper = task.SkipBadRecords ? new BadRecordSkipper(app, collector) : null;
        long bytesRead = 0, lines = 0;
        foreach (var split in splits)
        {
            long firstLine = 0;
            if (app.NeedsLineNumbers)
            {
                firstLine = await CountLinesBeforeAsync(task.InputContainer, split, cancellationToken);
            }
            var stream = await blobs.OpenReadAsync(task.InputContainer, split.Blob, Math.Max(0, split.Offset - 1), null, cancellationToken);
            using var reader = new SplitReader(stream, split.Offset, split.Length);
            while (true)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var before = reader.Lines;
                if (!reader.TryReadChunk(out var text))
                {
                    break;
                }
                var input = new MapInput(split.Blob, text.Span, firstLine == 0 ? 0 : firstLine + before);
                if (skipper is null)
                {
                    app.Map(input, collector);
                }
                else
                {
                    skipper.Map(input);
                }
            }
            bytesRead += reader.BytesRead;
            lines += reader.Lines;
        }
        var (outputBytes, outputRecords) = await WriteMapOutputAsync(task, attemptId, collector, cancellationToken);
        return new TaskCounters
        {
            InputBytes = bytesRead,
            InputRecords = lines,
            OutputRecords = collector.OutputRecords,
            OutputBytes = outputBytes,
            CombineInputRecords = app.HasCombiner ? collector.OutputRecords : 0,
            CombineOutputRecords = app.HasCombiner ? outputRecords : 0,
            SpilledRecords = collector.SpilledRecords,
            SkippedRecords = skipper?.Skipped ?? 0,
            SkippedSamples = skipper?.Samples,
        };
    }

    private static List<InputSplit> Pieces(TaskMessage task) =>
        task.Splits is { Count: > 0 } many ? many : [task.Split ?? throw new InvalidDataException("A map task needs a split.")];

    /// <summary>Sorts, combines and writes one intermediate blob per partition, each committed on its own.</summary>
    private async Task<(long Bytes, long Records)> WriteMapOutputAsync(TaskMessage task, string attemptId, MapOutputCollector collector, CancellationToken cancellationToken)
    {
        collector.Finish();
        long outputBytes = 0, outputRecords = 0;
        for (var partition = 0; partition < task.ReduceTasks; partition++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            await using var blob = await blobs.OpenWriteAsync(storage.IntermediateContainer, TaskNames.MapOutput(task.JobId, task.Index, attemptId, partition), cancellationToken);
            using (var writer = new RecordWriter(blob))
            {
                collector.WritePartition(partition, writer);
                writer.Flush();
                outputBytes += writer.Bytes;
                outputRecords += writer.Records;
            }
            await blob.CommitAsync(overwrite: true, cancellationToken);
        }
        return (outputBytes, outputRecords);
    }

    /// <summary>A streaming map: the split's lines go to the mapper script, its output lines are partitioned and sorted like any map output.</summary>
    private async Task<TaskCounters> MapWithScriptAsync(TaskMessage task, List<InputSplit> splits, string attemptId, CancellationToken cancellationToken)
    {
        var work = Path.Combine(options.TempPath, attemptId);
        var script = await StreamingScript.FetchAsync(blobs, storage.ScriptsContainer, task.Mapper!, task.JobId, options.TempPath, work, statusSink.Value, cancellationToken);
        using var collector = new MapOutputCollector(task.ReduceTasks, StreamingApp.Instance, options.SortBufferBytes, work);
        long bytesRead = 0, lines = 0;
        try
        {
            await script.RunAsync(async (stdin, ct) =>
            {
                // Packed small blobs reach the script one after the other, as Hadoop's combined splits do.
                foreach (var split in splits)
                {
                    var stream = await blobs.OpenReadAsync(task.InputContainer, split.Blob, Math.Max(0, split.Offset - 1), null, ct);
                    using var reader = new SplitReader(stream, split.Offset, split.Length);
                    while (reader.TryReadChunk(out var text))
                    {
                        await stdin.WriteAsync(text, ct);
                    }
                    bytesRead += reader.BytesRead;
                    lines += reader.Lines;
                }
            }, line =>
            {
                var (key, value) = StreamingScript.Split(line);
                collector.Emit(key, value);
            }, new Dictionary<string, string>
            {
                ["mapreduce_map_input_file"] = splits[0].Blob,
                ["mapreduce_task_id"] = TaskNames.TaskId(TaskPhase.Map, task.Index),
            }, cancellationToken);
            var final = collector;
            MapOutputCollector? combined = null;
            var user = script.UserCounters;
            if (task.Combiner is not null)
            {
                (combined, var combinerCounters) = await CombineWithScriptAsync(task, collector, work, cancellationToken);
                final = combined;
                foreach (var (name, value) in combinerCounters)
                {
                    user[name] = user.GetValueOrDefault(name) + value;
                }
            }
            using (combined)
            {
                var (outputBytes, outputRecords) = await WriteMapOutputAsync(task, attemptId, final, cancellationToken);
                return new TaskCounters
                {
                    InputBytes = bytesRead,
                    InputRecords = lines,
                    OutputRecords = collector.OutputRecords,
                    OutputBytes = outputBytes,
                    CombineInputRecords = combined is null ? 0 : collector.OutputRecords,
                    CombineOutputRecords = combined is null ? 0 : outputRecords,
                    SpilledRecords = collector.SpilledRecords + (combined?.SpilledRecords ?? 0),
                    User = user.Count > 0 ? user : null,
                };
            }
        }
        finally
        {
            TryDeleteFolder(work);
        }
    }

    /// <summary>
    /// Runs the combiner script once over the map's output, partition after partition, each in key
    /// order (so a key's records are adjacent, as the script expects); its output is partitioned
    /// and sorted again, since a combiner may emit any keys.
    /// </summary>
    private async Task<(MapOutputCollector Combined, Dictionary<string, long> Counters)> CombineWithScriptAsync(
        TaskMessage task, MapOutputCollector collector, string work, CancellationToken cancellationToken)
    {
        collector.Finish();
        var script = await StreamingScript.FetchAsync(blobs, storage.ScriptsContainer, task.Combiner!, task.JobId, options.TempPath, Path.Combine(work, "combine"), statusSink.Value, cancellationToken);
        var combined = new MapOutputCollector(task.ReduceTasks, StreamingApp.Instance, options.SortBufferBytes, Path.Combine(work, "combine"));
        try
        {
            await script.RunAsync(async (stdin, ct) =>
            {
                for (var partition = 0; partition < task.ReduceTasks; partition++)
                {
                    using var records = collector.ReadPartition(partition);
                    while (records.MoveNext())
                    {
                        await stdin.WriteAsync(Encoding.UTF8.GetString(records.Key));
                        await stdin.WriteAsync('\t');
                        await stdin.WriteAsync(Encoding.UTF8.GetString(records.Value));
                        await stdin.WriteAsync('\n');
                    }
                    ct.ThrowIfCancellationRequested();
                }
            }, line =>
            {
                var (key, value) = StreamingScript.Split(line);
                combined.Emit(key, value);
            }, new Dictionary<string, string> { ["mapreduce_task_id"] = TaskNames.TaskId(TaskPhase.Map, task.Index) }, cancellationToken);
            return (combined, script.UserCounters);
        }
        catch
        {
            combined.Dispose();
            throw;
        }
    }

    private static void TryDeleteFolder(string folder)
    {
        try
        {
            if (Directory.Exists(folder))
            {
                Directory.Delete(folder, recursive: true);
            }
        }
        catch (IOException)
        {
        }
    }

    /// <summary>Merges the winning map outputs of one partition, reduces each key, and commits the part once.</summary>
    public async Task<TaskCounters> ReduceAsync(TaskMessage task, CancellationToken cancellationToken)
    {
        var streaming = task.App == JobRequestValidator.StreamingApp;
        var app = streaming ? StreamingApp.Instance : apps.Create(task.App, AppArgs(task));
        var source = task.IntermediatesOf ?? task.JobId;
        var manifestBytes = await blobs.ReadAllBytesAsync(storage.IntermediateContainer, TaskNames.MapManifest(source), cancellationToken);
        var manifest = JsonSerializer.Deserialize(manifestBytes, QueueJsonContext.Default.MapManifest)
            ?? throw new InvalidDataException("Empty map manifest.");
        var spillFolder = Path.Combine(options.TempPath, $"{task.JobId}-r{task.Index}-{Guid.NewGuid():N}");
        var inputs = new List<IRecordSource>(manifest.Attempts.Count);
        var counting = new List<RecordReader>(manifest.Attempts.Count);
        try
        {
            for (var m = 0; m < manifest.Attempts.Count; m++)
            {
                var stream = await blobs.OpenReadAsync(storage.IntermediateContainer, TaskNames.MapOutput(source, m, manifest.Attempts[m], task.Index), 0, null, cancellationToken);
                var reader = new RecordReader(stream);
                counting.Add(reader);
                inputs.Add(reader);
                if (inputs.Count == options.MergeFactor)
                {
                    // Too many inputs for one pass: merge this batch into a local run first.
                    inputs = [PreMerge(inputs, spillFolder, cancellationToken)];
                }
            }

            await using var output = await blobs.OpenWriteAsync(storage.OutputContainer, TaskNames.OutputPart(task.JobId, task.Index), cancellationToken);
            long groups, records, outputBytes, outputRecords;
            Dictionary<string, long>? user = null;
            using (var merged = new RecordGroups(new RecordMerger(inputs)))
            {
                inputs = [];
                if (app.ReducesBySum)
                {
                    (groups, outputBytes) = SumGroups(merged, output, cancellationToken);
                    outputRecords = groups;
                }
                else
                {
                    using var text = new StreamWriter(output, new UTF8Encoding(false), 1 << 16, leaveOpen: true);
                    if (streaming)
                    {
                        (groups, outputRecords, outputBytes, user) = await ReduceWithScriptAsync(task, merged, text, spillFolder, cancellationToken);
                    }
                    else
                    {
                        (groups, outputBytes) = ReduceGroups(app, merged, text, cancellationToken);
                        outputRecords = groups;
                    }
                }
                records = merged.Records;
            }
            // The first committed attempt wins; a later one finds the part there and reports the same result.
            await output.CommitAsync(overwrite: false, cancellationToken);
            long inputBytes = 0;
            foreach (var reader in counting)
            {
                inputBytes += reader.BytesRead;
            }
            return new TaskCounters { InputBytes = inputBytes, InputRecords = records, InputGroups = groups, OutputRecords = outputRecords, OutputBytes = outputBytes, User = user };
        }
        finally
        {
            foreach (var input in inputs)
            {
                input.Dispose();
            }
            if (Directory.Exists(spillFolder))
            {
                Directory.Delete(spillFolder, recursive: true);
            }
        }
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
        var buffer = ArrayPool<byte>.Shared.Rent(1 << 16);
        var used = 0;
        long groups = 0, bytes = 0;
        try
        {
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
                var need = key.Length + 23;
                if (buffer.Length - used < need)
                {
                    output.Write(buffer, 0, used);
                    used = 0;
                    if (buffer.Length < need)
                    {
                        ArrayPool<byte>.Shared.Return(buffer);
                        buffer = ArrayPool<byte>.Shared.Rent(need);
                    }
                }
                key.CopyTo(buffer.AsSpan(used));
                used += key.Length;
                buffer[used++] = (byte)'\t';
                sum.TryFormat(buffer.AsSpan(used), out var digits, default, CultureInfo.InvariantCulture);
                used += digits;
                buffer[used++] = (byte)'\n';
                groups++;
                bytes += key.Length + digits + 2;
                if ((groups & 0xFFF) == 0)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                }
            }
            output.Write(buffer, 0, used);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        return (groups, bytes);
    }

    /// <summary>
    /// A streaming reduce: the partition's records go to the reducer script as <c>key&lt;TAB&gt;value</c>
    /// lines sorted by key; its output lines are the job's output. Without a reducer the sorted
    /// lines are the output (Hadoop's identity reducer).
    /// </summary>
    private async Task<(long Groups, long Records, long Bytes, Dictionary<string, long>? User)> ReduceWithScriptAsync(
        TaskMessage task, RecordGroups merged, StreamWriter output, string work, CancellationToken cancellationToken)
    {
        long groups = 0, records = 0, bytes = 0;
        if (task.Reducer is null)
        {
            while (merged.NextGroup())
            {
                groups++;
                var key = Encoding.UTF8.GetString(merged.Key);
                foreach (var value in merged.Values)
                {
                    output.Write(key);
                    output.Write('\t');
                    output.Write(value);
                    output.Write('\n');
                    records++;
                    bytes += Encoding.UTF8.GetByteCount(key) + Encoding.UTF8.GetByteCount(value) + 2;
                }
            }
            return (groups, records, bytes, null);
        }
        var script = await StreamingScript.FetchAsync(blobs, storage.ScriptsContainer, task.Reducer, task.JobId, options.TempPath, work, statusSink.Value, cancellationToken);
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

    private static IRecordSource PreMerge(List<IRecordSource> batch, string folder, CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(folder);
        var path = Path.Combine(folder, $"run-{Guid.NewGuid():N}");
        using (var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
        using (var writer = new RecordWriter(file))
        using (var merger = new RecordMerger(batch))
        {
            while (merger.MoveNext())
            {
                writer.Write(merger.Key, merger.Value);
                if ((writer.Records & 0xFFFF) == 0)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                }
            }
            writer.Flush();
        }
        return new RecordReader(new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, 1 << 16, FileOptions.DeleteOnClose | FileOptions.SequentialScan));
    }

    /// <summary>1-based number of the split's first line: newlines before offset-1, plus the one the split skips through, plus one.</summary>
    private async Task<long> CountLinesBeforeAsync(string container, InputSplit split, CancellationToken cancellationToken)
    {
        if (split.Offset == 0)
        {
            return 1;
        }
        await using var stream = await blobs.OpenReadAsync(container, split.Blob, 0, split.Offset - 1, cancellationToken);
        var buffer = new byte[1 << 16];
        long lines = 0;
        int read;
        while ((read = await stream.ReadAsync(buffer, cancellationToken)) > 0)
        {
            lines += buffer.AsSpan(0, read).Count((byte)'\n');
        }
        return lines + 2;
    }

    /// <summary>The job's arguments, plus what the app may know of its attempt (<c>attempt.backup</c>).</summary>
    private static Dictionary<string, string> AppArgs(TaskMessage task) =>
        task.Backup ? new Dictionary<string, string>(task.Args, StringComparer.Ordinal) { [JobRequestValidator.BackupArg] = "true" } : task.Args;

}
