using System.Text;
using Microsoft.Extensions.Options;
using Queue.Contracts;
using Queue.Contracts.Jobs;
using Queue.Contracts.Ports;

namespace Queue.Worker.Execution;

/// <summary>
/// A Hadoop-streaming map: the split's lines go to the mapper script, its output lines are
/// partitioned and sorted like any map output (spilling to the attempt's folder), then, with a
/// combiner, run through the combiner script partition by partition, and written as the attempt's one
/// map output file.
/// </summary>
public sealed class StreamingMapRunner(IBlobStore blobs, PartitionerCache partitioners, IOptions<StorageOptions> storage, IOptions<WorkerOptions> options, WorkerScratch scratch)
{
    private readonly StorageOptions storage = storage.Value;
    private readonly WorkerOptions options = options.Value;

    public async Task<TaskResult> RunAsync(TaskMessage task, string attemptId, string folder, Action<string>? onStatus, CancellationToken cancellationToken)
    {
        var splits = task.Pieces();
        var partitioner = await partitioners.GetAsync(task, cancellationToken);
        var script = await StreamingScript.FetchAsync(blobs, storage.ScriptsContainer, task.Mapper!, task.JobId, scratch.ScriptsFolder, Path.Combine(folder, "mapper"), onStatus, cancellationToken);
        using var collector = new MapOutputCollector(task.ReduceTasks, StreamingApp.Instance, options.SortBufferBytes, Path.Combine(folder, "spill"), partitioner);
        long bytesRead = 0, lines = 0;
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
        var user = script.UserCounters;
        MapOutputCollector? combined = null;
        if (task.Combiner is not null)
        {
            (combined, var combinerCounters) = await CombineAsync(task, collector, folder, partitioner, onStatus, cancellationToken);
            foreach (var (name, value) in combinerCounters)
            {
                user[name] = user.GetValueOrDefault(name) + value;
            }
        }
        using (combined)
        {
            using var commit = QueueTracing.Worker.StartActivity("map: merge, write and commit");
            var (length, outputBytes, outputRecords) = await MapOutputFile.CommitAsync(blobs, storage.IntermediateContainer, task, attemptId, combined ?? collector, cancellationToken);
            return new TaskResult(new TaskCounters
            {
                InputBytes = bytesRead,
                InputRecords = lines,
                OutputRecords = collector.OutputRecords,
                OutputBytes = outputBytes,
                CombineInputRecords = combined is null ? 0 : collector.OutputRecords,
                CombineOutputRecords = combined is null ? 0 : outputRecords,
                SpilledRecords = collector.SpilledRecords + (combined?.SpilledRecords ?? 0),
                User = user.Count > 0 ? user : null,
            }, length);
        }
    }

    /// <summary>
    /// Runs the combiner script once over the map's output, partition after partition, each in key
    /// order (so a key's records are adjacent, as the script expects); its output is partitioned
    /// and sorted again, since a combiner may emit any keys.
    /// </summary>
    private async Task<(MapOutputCollector Combined, Dictionary<string, long> Counters)> CombineAsync(
        TaskMessage task, MapOutputCollector collector, string folder, IPartitioner partitioner, Action<string>? onStatus, CancellationToken cancellationToken)
    {
        collector.Finish();
        var script = await StreamingScript.FetchAsync(blobs, storage.ScriptsContainer, task.Combiner!, task.JobId, scratch.ScriptsFolder, Path.Combine(folder, "combiner"), onStatus, cancellationToken);
        var combined = new MapOutputCollector(task.ReduceTasks, StreamingApp.Instance, options.SortBufferBytes, Path.Combine(folder, "combined-spill"), partitioner);
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
}
