using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Queue.Contracts.Jobs;

namespace Queue.Cli;

/// <summary><c>queue demo</c>: generates a sample corpus, runs wordcount on the embedded engine, prints the top words.</summary>
public static class DemoCommand
{
    public static Command Create()
    {
        var megabytes = new Option<int>("--mb") { Description = "Size of the generated corpus in MB.", DefaultValueFactory = _ => 20 };
        var slots = new Option<int>("--slots") { Description = "Worker slots.", DefaultValueFactory = _ => Math.Max(2, Environment.ProcessorCount) };
        var data = new Option<string>("--data") { Description = "Data folder of the embedded blob store.", DefaultValueFactory = _ => "data" };
        var command = new Command("demo", "Generate sample text into <data>/sample and run wordcount on the embedded engine.") { megabytes, slots, data };
        command.SetAction(async (parse, ct) =>
        {
            var mb = parse.GetValue(megabytes);
            if (mb is < 1 or > 10_000)
            {
                await Console.Error.WriteLineAsync("--mb must be between 1 and 10000.");
                return 2;
            }
            var dataPath = Path.GetFullPath(parse.GetValue(data)!);
            // The engine first: it locks the data folder before anything is written there.
            await using var engine = await EmbeddedEngine.StartOrReportAsync(dataPath, parse.GetValue(slots), ct);
            if (engine is null)
            {
                return 1;
            }
            var corpus = Path.Combine(dataPath, "sample", "corpus.txt");
            Console.WriteLine($"Generating {mb} MB of sample text in {corpus} ...");
            await SampleText.WriteAsync(corpus, mb * 1_000_000L, seed: 42, ct);
            var watch = Stopwatch.StartNew();
            var request = new JobRequest { App = "wordcount", Input = "sample", MapTasks = 8, ReduceTasks = 4 };
            var last = "";
            var view = await engine.RunAsync(request, status =>
            {
                var line = $"  {status.State,-9} map {status.Map.Done}/{status.Map.Total}  reduce {status.Reduce.Done}/{status.Reduce.Total}";
                if (line != last)
                {
                    Console.WriteLine(line);
                    last = line;
                }
            }, ct);
            if (view.Status.State != JobState.Succeeded)
            {
                await Console.Error.WriteLineAsync($"Job {view.Spec.Id} ended {view.Status.State}: {view.Status.Error}");
                return 1;
            }
            Console.WriteLine($"Job {view.Spec.Id} succeeded in {watch.Elapsed.TotalSeconds:0.00} s " +
                $"({view.Status.Map.Total} map tasks, {view.Status.Reduce.Total} reduce tasks, {view.Status.Attempts} attempts).");

            var top = new List<(string Word, long Count)>();
            foreach (var part in view.Status.Outputs)
            {
                foreach (var line in File.ReadLines(Path.Combine(dataPath, view.Status.OutputContainer!, part)))
                {
                    var tab = line.IndexOf('\t');
                    top.Add((line[..tab], long.Parse(line.AsSpan(tab + 1), CultureInfo.InvariantCulture)));
                }
            }
            top.Sort((a, b) => b.Count != a.Count ? b.Count.CompareTo(a.Count) : string.CompareOrdinal(a.Word, b.Word));
            Console.WriteLine("Top words:");
            for (var i = 0; i < Math.Min(10, top.Count); i++)
            {
                Console.WriteLine($"  {top[i].Count,10}  {top[i].Word}");
            }
            Console.WriteLine($"{top.Count} distinct words. Output: {Path.Combine(dataPath, view.Status.OutputContainer!, view.Spec.Id)}/part-*");
            return 0;
        });
        return command;
    }
}
