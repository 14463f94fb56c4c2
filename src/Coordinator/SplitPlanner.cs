using Queue.Contracts.Jobs;
using Queue.Contracts.Ports;

namespace Queue.Coordinator;

/// <summary>
/// Cuts the input into map tasks of about one split size each (the input over <c>mapTasks</c>, or
/// <c>splitSizeBytes</c>), however many blobs it has — as Hadoop's CombineFileInputFormat does: a blob
/// larger than the split size is cut into equal byte ranges, each its own task; smaller blobs are packed,
/// whole and in name order, into tasks of up to one split size (a blob up to 10 % over it stays whole). Readers move each cut to a line
/// boundary, so the planner never reads data; each piece keeps its blob's name, so apps still see their
/// document names and line numbers.
/// </summary>
public static class SplitPlanner
{
    /// <summary>A blob up to 10 % over the split size stays whole (Hadoop's SPLIT_SLOP), rather than leaving a sliver task.</summary>
    private const double Slop = 1.1;

    public static List<List<InputSplit>> Plan(IReadOnlyList<BlobItem> blobs, int? mapTasks, long? splitSizeBytes)
    {
        long total = 0;
        foreach (var blob in blobs)
        {
            total += blob.Length;
        }
        var splitSize = splitSizeBytes ?? Math.Max(1, (total + mapTasks!.Value - 1) / mapTasks.Value);
        var tasks = new List<List<InputSplit>>();
        var packing = new List<InputSplit>();
        long packed = 0;
        foreach (var blob in blobs)
        {
            if (blob.Length > splitSize * Slop)
            {
                var pieces = (blob.Length + splitSize - 1) / splitSize;
                var size = (blob.Length + pieces - 1) / pieces;
                for (long offset = 0, i = 0; i < pieces; i++, offset += size)
                {
                    tasks.Add([new InputSplit(blob.Name, offset, Math.Min(size, blob.Length - offset))]);
                }
                continue;
            }
            if (packing.Count > 0 && packed + blob.Length > splitSize)
            {
                tasks.Add(packing);
                packing = [];
                packed = 0;
            }
            packing.Add(new InputSplit(blob.Name, 0, blob.Length));
            packed += blob.Length;
        }
        if (packing.Count > 0)
        {
            tasks.Add(packing);
        }
        return tasks;
    }
}
