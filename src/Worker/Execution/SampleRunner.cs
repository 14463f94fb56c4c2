using Microsoft.Extensions.Options;
using Queue.Contracts;
using Queue.Contracts.Apps;
using Queue.Contracts.Jobs;
using Queue.Contracts.Ports;

namespace Queue.Worker.Execution;

/// <summary>
/// A range-partitioned job's sampling task (Hadoop's InputSampler, TeraSort's sampler): runs the map
/// — the built-in app, or the mapper script — over the start of splits spread across the input and
/// keeps the keys it emits (at most <see cref="MaxKeys"/>, drawn evenly), for the leader to choose the
/// cut points from. The keys are the map output's, so any app or script partitions by what it emits.
/// </summary>
public sealed class SampleRunner(IBlobStore blobs, IAppCatalog apps, IOptions<StorageOptions> storage, WorkerScratch scratch)
{
    public const int MaxKeys = 100_000;
    private readonly StorageOptions storage = storage.Value;

    public async Task<TaskResult> RunAsync(TaskMessage task, string attemptId, string folder, Action<string>? onStatus, CancellationToken cancellationToken)
    {
        var keys = new KeySample();
        long bytesRead = 0, lines = 0;
        if (task.App == JobRequestValidator.StreamingApp)
        {
            var script = await StreamingScript.FetchAsync(blobs, storage.ScriptsContainer, task.Mapper!, task.JobId, scratch.ScriptsFolder, Path.Combine(folder, "mapper"), onStatus, cancellationToken);
            await script.RunAsync(async (stdin, ct) =>
            {
                foreach (var split in task.Pieces())
                {
                    using var reader = await OpenAsync(task, split, ct);
                    while (reader.TryReadChunk(out var text))
                    {
                        await stdin.WriteAsync(text, ct);
                    }
                    bytesRead += reader.BytesRead;
                    lines += reader.Lines;
                }
            }, line => keys.Emit(StreamingScript.Split(line).Key, default), new Dictionary<string, string>
            {
                ["mapreduce_task_id"] = TaskNames.TaskId(TaskPhase.Sample, task.Index),
            }, cancellationToken);
        }
        else
        {
            var app = apps.Create(task.App, task.AppArgs());
            foreach (var split in task.Pieces())
            {
                using var reader = await OpenAsync(task, split, cancellationToken);
                while (reader.TryReadChunk(out var text))
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    // Line numbers are not worth a scan of every blob for a sample: the keys' spread is what counts.
                    app.Map(new MapInput(split.Blob, text.Span, 0), keys);
                }
                bytesRead += reader.BytesRead;
                lines += reader.Lines;
            }
        }
        var drawn = keys.Draw();
        await blobs.PutAsync(storage.IntermediateContainer, TaskNames.SampleKeys(task.JobId, attemptId), PartitionCuts.Write(drawn), cancellationToken);
        return new TaskResult(new TaskCounters { InputBytes = bytesRead, InputRecords = lines, OutputRecords = drawn.Count });
    }

    private async Task<SplitReader> OpenAsync(TaskMessage task, InputSplit split, CancellationToken cancellationToken) =>
        new(await blobs.OpenReadAsync(task.InputContainer, split.Blob, Math.Max(0, split.Offset - 1), null, cancellationToken), split.Offset, split.Length);

    /// <summary>Every key emitted, as UTF-8 bytes; past the limit every second one is dropped, so what is kept stays spread over the whole sample.</summary>
    private sealed class KeySample : IMapEmitter
    {
        private List<byte[]> keys = [];
        private int stride = 1;
        private long seen;

        public void Emit(ReadOnlySpan<char> key, ReadOnlySpan<char> value)
        {
            if (seen++ % stride != 0)
            {
                return;
            }
            keys.Add(System.Text.Encoding.UTF8.GetBytes(key.ToArray()));
            if (keys.Count >= MaxKeys * 2)
            {
                var halved = new List<byte[]>(MaxKeys);
                for (var i = 0; i < keys.Count; i += 2)
                {
                    halved.Add(keys[i]);
                }
                keys = halved;
                stride *= 2;
            }
        }

        public List<byte[]> Draw() => keys;
    }
}
