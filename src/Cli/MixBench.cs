using System.Globalization;
using Queue.Contracts.Jobs;

namespace Queue.Cli;

/// <summary>
/// <c>bench --mix</c>: several users' jobs on one pool. A small word count (the books, 8 × 2) alone; a
/// large one (the books ×30 in 240 files, 240 × 4) alone; then the large one with the small one
/// submitted once a fifth of its maps are done. Every output is checked. On the embedded engine it runs
/// with fair sharing and again first come, first served (<c>Queue:Coordinator:FairSharing</c> off), side
/// by side; on a cluster (<c>--cluster</c>) with whatever the cluster's leader is configured for.
/// </summary>
public static class MixBench
{
    /// <summary>A pool to run jobs on: submit returns the id, view reads the job.</summary>
    public sealed record Pool(string Label, Func<JobRequest, CancellationToken, Task<string>> Submit, Func<string, CancellationToken, Task<JobView>> View,
        Func<JobView, bool, CancellationToken, Task<string?>> Check);

    public sealed record Result(double SmallAlone, double LargeAlone, double SmallBehind, double LargeBeside);

    public static readonly JobRequest Small = new() { App = "wordcount", Input = "", MapTasks = 8, ReduceTasks = 2 };

    public static readonly JobRequest Large = new() { App = "wordcount", Input = "", MapTasks = 240, ReduceTasks = 4 };

    /// <summary>Runs the mix on one pool: medians of <paramref name="repeat"/> runs of each.</summary>
    public static async Task<Result> RunAsync(Pool pool, string smallInput, string largeInput, int repeat, CancellationToken ct)
    {
        var small = Small with { Input = smallInput };
        var large = Large with { Input = largeInput };
        // Warm: the first runs of a fresh engine compile its code.
        await WaitAsync(pool, await pool.Submit(small, ct), small: true, ct);
        await WaitAsync(pool, await pool.Submit(large, ct), small: false, ct);
        var smallAlone = new List<double>();
        var largeAlone = new List<double>();
        var smallBehind = new List<double>();
        var largeBeside = new List<double>();
        for (var i = 0; i < repeat; i++)
        {
            smallAlone.Add(Wall((await WaitAsync(pool, await pool.Submit(small, ct), small: true, ct)).Status));
            largeAlone.Add(Wall((await WaitAsync(pool, await pool.Submit(large, ct), small: false, ct)).Status));
            var largeId = await pool.Submit(large, ct);
            JobView view;
            while ((view = await pool.View(largeId, ct)).Status is { IsTerminal: false } s && !(s.Map.Total > 0 && s.Map.Done >= s.Map.Total / 5))
            {
                await Task.Delay(10, ct);
            }
            var smallId = await pool.Submit(small, ct);
            smallBehind.Add(Wall((await WaitAsync(pool, smallId, small: true, ct)).Status));
            largeBeside.Add(Wall((await WaitAsync(pool, largeId, small: false, ct)).Status));
        }
        return new Result(Median(smallAlone), Median(largeAlone), Median(smallBehind), Median(largeBeside));
    }

    public static void Print(string title, IReadOnlyList<(string Column, Result Result)> columns)
    {
        Console.WriteLine();
        Console.WriteLine(title);
        var header = $"{"wall seconds (median)",-34}";
        foreach (var (column, _) in columns)
        {
            header += $" {column,22}";
        }
        Console.WriteLine(header);
        void Row(string label, Func<Result, string> cell)
        {
            var line = $"{label,-34}";
            foreach (var (_, result) in columns)
            {
                line += $" {cell(result),22}";
            }
            Console.WriteLine(line);
        }
        static string S(double v) => v.ToString("0.000", CultureInfo.InvariantCulture);
        Row("small alone (8 x 2)", r => S(r.SmallAlone));
        Row("large alone (240 x 4)", r => S(r.LargeAlone));
        Row("small, submitted behind large", r => $"{S(r.SmallBehind)} ({(r.SmallBehind / r.SmallAlone).ToString("0.0", CultureInfo.InvariantCulture)}x alone)");
        Row("large, beside small", r => $"{S(r.LargeBeside)} (+{S(r.LargeBeside - r.LargeAlone)})");
    }

    private static async Task<JobView> WaitAsync(Pool pool, string id, bool small, CancellationToken ct)
    {
        JobView view;
        while (!(view = await pool.View(id, ct)).Status.IsTerminal)
        {
            await Task.Delay(10, ct);
        }
        if (view.Status.State != JobState.Succeeded)
        {
            throw new CliException($"A {(small ? "small" : "large")} job of the mix on {pool.Label} ended {view.Status.State}: {view.Status.Error}", 1);
        }
        if (await pool.Check(view, small, ct) is { } wrong)
        {
            throw new CliException($"A {(small ? "small" : "large")} job of the mix on {pool.Label} differs from the baseline: {wrong}", 1);
        }
        return view;
    }

    private static double Wall(JobStatus status) => (status.FinishedAt!.Value - status.SubmittedAt).TotalSeconds;

    private static double Median(List<double> values)
    {
        values.Sort();
        return values[values.Count / 2];
    }
}
