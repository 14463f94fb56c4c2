using Microsoft.Extensions.Options;
using Queue.Contracts;
using Queue.Contracts.Apps;
using Queue.Contracts.Jobs;
using Queue.Contracts.Ports;

namespace Queue.Worker.Execution;

/// <summary>
/// A built-in app's map (Hadoop's MapTask): reads the task's splits in turn (one blob range, or small
/// blobs packed together, each keeping its document name and line numbers), maps them into a
/// bounded sort buffer that spills sorted runs to the attempt's folder, and writes the attempt's one
/// map output file.
/// </summary>
public sealed class MapRunner(IBlobStore blobs, IAppCatalog apps, PartitionerCache partitioners, IOptions<StorageOptions> storage, IOptions<WorkerOptions> options)
{
    private readonly StorageOptions storage = storage.Value;
    private readonly WorkerOptions options = options.Value;

    public async Task<TaskResult> RunAsync(TaskMessage task, string attemptId, string folder, CancellationToken cancellationToken)
    {
        var app = apps.Create(task.App, task.AppArgs());
        var partitioner = await partitioners.GetAsync(task, cancellationToken);
        using var collector = new MapOutputCollector(task.ReduceTasks, app, options.SortBufferBytes, Path.Combine(folder, "spill"), partitioner);
        var skipper = task.SkipBadRecords ? new BadRecordSkipper(app, collector) : null;
        long bytesRead = 0, lines = 0;
        // Ended explicitly below on success; the using ends it when the map throws (Stop is idempotent).
        using var read = QueueTracing.Worker.StartActivity("map: read, map and spill");
        foreach (var split in task.Pieces())
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
        read?.Dispose();
        using var commit = QueueTracing.Worker.StartActivity("map: merge, write and commit");
        var (length, outputBytes, outputRecords) = await MapOutputFile.CommitAsync(blobs, storage.IntermediateContainer, task, attemptId, collector, cancellationToken);
        return new TaskResult(new TaskCounters
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
        }, length);
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
}
