using Queue.Contracts.Jobs;
using Queue.Contracts.Ports;

namespace Queue.Coordinator;

/// <summary>
/// Cuts the input into map tasks of equal size, however many blobs it has and however their sizes
/// fall: the blobs, in name order, are read as one run of bytes cut into <c>mapTasks</c> equal
/// segments (or as many as <c>splitSizeBytes</c> needs), each cut moved to the nearer blob boundary
/// when within 10 % of a segment of one (Hadoop's split slop), so small blobs stay whole and no task
/// gets a sliver. A task is then a list of pieces (byte ranges of blobs), as Hadoop's
/// CombineFileInputFormat packs blocks; each piece keeps its blob's name, so apps still see document
/// names and line numbers. Readers move each cut to a line boundary, so the planner never reads data.
/// Equal tasks keep every slot busy to the end: cutting each large blob on its own and packing the
/// rest left 11 tasks of 4–14 MB for 8 asked on the books corpus, with one slot idle at the tail.
/// </summary>
public static class SplitPlanner
{
    private const double Slop = 0.1;

    /// <summary>How many tasks <see cref="Plan"/> makes at most, without making them (to refuse absurd plans cheaply).</summary>
    public static long TaskCount(long totalBytes, int? mapTasks, long? splitSizeBytes) =>
        Math.Max(1, splitSizeBytes is { } size ? (totalBytes + size - 1) / size : Math.Min(mapTasks!.Value, totalBytes));

    public static List<List<InputSplit>> Plan(IReadOnlyList<BlobItem> blobs, int? mapTasks, long? splitSizeBytes)
    {
        // starts[i]: where blob i begins in the run of all blobs; starts[^1]: the total.
        var starts = new long[blobs.Count + 1];
        for (var i = 0; i < blobs.Count; i++)
        {
            starts[i + 1] = starts[i] + blobs[i].Length;
        }
        var total = starts[^1];
        var count = TaskCount(total, mapTasks, splitSizeBytes);
        var slop = (long)(total / (double)count * Slop);
        var cuts = new List<long>((int)Math.Min(count + 1, 1 << 20)) { 0 };
        var blob = 0;
        for (long k = 1; k < count; k++)
        {
            var target = (long)((Int128)total * k / count);
            while (starts[blob + 1] <= target)
            {
                blob++;
            }
            var (before, after) = (target - starts[blob], starts[blob + 1] - target);
            var cut = before <= after ? (before <= slop ? starts[blob] : target) : (after <= slop ? starts[blob + 1] : target);
            if (cut > cuts[^1])
            {
                cuts.Add(cut);
            }
        }
        if (total > cuts[^1] || cuts.Count == 1)
        {
            cuts.Add(total);
        }
        var tasks = new List<List<InputSplit>>(cuts.Count - 1);
        for (var t = 0; t < cuts.Count - 1; t++)
        {
            tasks.Add([]);
        }
        var task = 0;
        for (var i = 0; i < blobs.Count; i++)
        {
            var length = blobs[i].Length;
            long offset = 0;
            do
            {
                // The task whose segment holds this byte; an empty blob goes with the bytes that follow it.
                while (task < tasks.Count - 1 && cuts[task + 1] <= starts[i] + offset)
                {
                    task++;
                }
                var take = Math.Min(length - offset, cuts[task + 1] - (starts[i] + offset));
                tasks[task].Add(new InputSplit(blobs[i].Name, offset, take));
                offset += take;
            }
            while (offset < length);
        }
        return tasks;
    }
}
