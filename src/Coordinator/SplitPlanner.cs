using Queue.Contracts.Jobs;
using Queue.Contracts.Ports;

namespace Queue.Coordinator;

/// <summary>
/// Cuts the input into map splits. Every blob gets at least one split (small files are never merged),
/// and a large blob is cut into equal byte ranges no larger than the split size; readers move each
/// cut to a line boundary, so the planner never reads data.
/// </summary>
public static class SplitPlanner
{
    public static List<InputSplit> Plan(IReadOnlyList<BlobItem> blobs, int? mapTasks, long? splitSizeBytes)
    {
        long total = 0;
        foreach (var blob in blobs)
        {
            total += blob.Length;
        }
        var splitSize = splitSizeBytes ?? Math.Max(1, (total + mapTasks!.Value - 1) / mapTasks.Value);
        var splits = new List<InputSplit>();
        foreach (var blob in blobs)
        {
            var pieces = Math.Max(1, (blob.Length + splitSize - 1) / splitSize);
            var size = (blob.Length + pieces - 1) / pieces;
            for (long offset = 0, i = 0; i < pieces; i++, offset += size)
            {
                splits.Add(new InputSplit(blob.Name, offset, Math.Min(size, blob.Length - offset)));
            }
        }
        return splits;
    }
}
