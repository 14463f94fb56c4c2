using System.CommandLine;
using System.Globalization;
using Queue.Contracts.Jobs;

namespace Queue.Cli;

/// <summary>The commands that talk to a running ingress: submit, status, watch, output, cancel, list, upload, download.</summary>
public static class JobCommands
{
    internal static readonly Option<string> Url = new("--url")
    {
        Description = "Ingress URL (default: $QUEUE_URL or http://127.0.0.1:5000).",
        DefaultValueFactory = _ => Environment.GetEnvironmentVariable("QUEUE_URL") is { Length: > 0 } url ? url : "http://127.0.0.1:5000",
        Recursive = true,
    };

    internal static readonly Option<string?> ApiKey = new("--api-key")
    {
        Description = "API key, or an OAuth 2.0 bearer token, sent with every call (default: $QUEUE_API_KEY).",
        DefaultValueFactory = _ => Environment.GetEnvironmentVariable("QUEUE_API_KEY"),
        Recursive = true,
    };

    public static void AddTo(RootCommand root)
    {
        root.Options.Add(Url);
        root.Options.Add(ApiKey);
        root.Subcommands.Add(Submit());
        root.Subcommands.Add(Status());
        root.Subcommands.Add(Watch());
        root.Subcommands.Add(Output());
        root.Subcommands.Add(Cancel());
        root.Subcommands.Add(List());
        root.Subcommands.Add(Upload());
        root.Subcommands.Add(Download());
    }

    private static Command Submit()
    {
        var app = new Option<string?>("--app") { Description = "Built-in app: wordcount, indexer, grep, sort." };
        var mapper = new Option<string?>("--mapper") { Description = "Streaming mapper script (in the scripts container) instead of --app." };
        var reducer = new Option<string?>("--reducer") { Description = "Streaming reducer script." };
        var input = new Option<string>("--input") { Description = "Input: container[/prefix].", Required = true };
        var maps = new Option<int?>("--maps") { Description = "Target number of map tasks." };
        var reduces = new Option<int?>("--reduces") { Description = "Reduce tasks (partitions)." };
        var partitioner = new Option<string?>("--partitioner") { Description = "hash (default) or range: total order, the parts concatenated are one sorted output." };
        var args = new Option<string[]>("--arg") { Description = "App argument key=value (repeatable).", AllowMultipleArgumentsPerToken = false };
        var wait = new Option<bool>("--wait") { Description = "Watch the job until it ends." };
        var command = new Command("submit", "Submit a job; prints its id.") { app, mapper, reducer, input, maps, reduces, partitioner, args, wait };
        command.SetAction((parse, ct) => RunAsync(parse, async client =>
        {
            var arguments = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var pair in parse.GetValue(args) ?? [])
            {
                var eq = pair.IndexOf('=');
                if (eq <= 0)
                {
                    throw new CliException($"--arg '{pair}' is not key=value.", 2);
                }
                arguments[pair[..eq]] = pair[(eq + 1)..];
            }
            var id = await client.SubmitAsync(new JobRequest
            {
                App = parse.GetValue(app),
                Mapper = parse.GetValue(mapper),
                Reducer = parse.GetValue(reducer),
                Input = parse.GetValue(input),
                MapTasks = parse.GetValue(maps),
                ReduceTasks = parse.GetValue(reduces),
                Partitioner = parse.GetValue(partitioner),
                Args = arguments,
            }, ct);
            Console.WriteLine(id);
            return parse.GetValue(wait) ? await WatchAsync(client, id, ct) : 0;
        }));
        return command;
    }

    private static Argument<string> JobId() => new("job") { Description = "Job id." };

    private static Command Status()
    {
        var id = JobId();
        var command = new Command("status", "Show a job's state, progress, counters and errors.") { id };
        command.SetAction((parse, ct) => RunAsync(parse, async client =>
        {
            var job = await client.GetAsync(parse.GetValue(id)!, ct);
            var s = job.Status;
            Console.WriteLine($"{job.Spec.Id}  {s.State}  app {job.Spec.App}  input {job.Spec.InputContainer}/{job.Spec.InputPrefix}");
            Console.WriteLine($"  map    {Bar(s.Map)}  {s.Map.Done}/{s.Map.Total} done, {s.Map.Running} running, {s.Map.Queued} queued, {s.Map.Failed} failed");
            Console.WriteLine($"  reduce {Bar(s.Reduce)}  {s.Reduce.Done}/{s.Reduce.Total} done, {s.Reduce.Running} running, {s.Reduce.Queued} queued, {s.Reduce.Failed} failed");
            Console.WriteLine($"  attempts {s.Attempts} ({s.FailedAttempts} failed); map in {s.MapCounters.InputRecords} records / {s.MapCounters.InputBytes} bytes, out {s.MapCounters.OutputRecords}; reduce out {s.ReduceCounters.OutputRecords} records");
            if (s.Error is not null)
            {
                Console.WriteLine($"  error: {s.Error}");
            }
            foreach (var part in s.Outputs)
            {
                Console.WriteLine($"  output: {s.OutputContainer}/{part}");
            }
            return s.State == JobState.Failed ? 1 : 0;
        }));
        return command;
    }

    private static Command Watch()
    {
        var id = JobId();
        var command = new Command("watch", "Show live progress bars until the job ends; exits 0 only if it succeeded.") { id };
        command.SetAction((parse, ct) => RunAsync(parse, client => WatchAsync(client, parse.GetValue(id)!, ct)));
        return command;
    }

    private static async Task<int> WatchAsync(IngressClient client, string id, CancellationToken ct)
    {
        var interactive = !Console.IsOutputRedirected;
        var last = "";
        while (true)
        {
            // The view without its tasks: a job of thousands of tasks is not read whole four times a second.
            var s = (await client.GetViewAsync(id, ct)).Status;
            var line = $"{s.State,-9} map {Bar(s.Map)} {s.Map.Done,5}/{s.Map.Total,-5} reduce {Bar(s.Reduce)} {s.Reduce.Done,5}/{s.Reduce.Total,-5}";
            if (line != last)
            {
                if (interactive)
                {
                    Console.Write("\r" + line);
                }
                else
                {
                    Console.WriteLine(line);
                }
                last = line;
            }
            if (s.IsTerminal)
            {
                if (interactive)
                {
                    Console.WriteLine();
                }
                if (s.Error is not null)
                {
                    await Console.Error.WriteLineAsync($"error: {s.Error}");
                }
                return s.State == JobState.Succeeded ? 0 : 1;
            }
            await Task.Delay(250, ct);
        }
    }

    private static Command Output()
    {
        var id = JobId();
        var file = new Option<string?>("--out") { Description = "Write to this file instead of standard output." };
        var command = new Command("output", "Print a succeeded job's output (all parts, key<TAB>value).") { id, file };
        command.SetAction((parse, ct) => RunAsync(parse, async client =>
        {
            var path = parse.GetValue(file);
            await using var target = path is null ? Console.OpenStandardOutput() : File.Create(path);
            await client.CopyOutputAsync(parse.GetValue(id)!, target, ct);
            return 0;
        }));
        return command;
    }

    private static Command Cancel()
    {
        var id = JobId();
        var command = new Command("cancel", "Cancel a job.") { id };
        command.SetAction((parse, ct) => RunAsync(parse, async client =>
        {
            await client.CancelAsync(parse.GetValue(id)!, ct);
            Console.WriteLine($"cancel requested for {parse.GetValue(id)}");
            return 0;
        }));
        return command;
    }

    private static Command List()
    {
        var command = new Command("list", "List jobs, newest first.");
        command.SetAction((parse, ct) => RunAsync(parse, async client =>
        {
            foreach (var job in await client.ListAsync(ct))
            {
                var s = job.Status;
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{job.Spec.Id}  {s.State,-9}  {job.Spec.App,-10}  map {s.Map.Done}/{s.Map.Total}  reduce {s.Reduce.Done}/{s.Reduce.Total}  {s.SubmittedAt:u}"));
            }
            return 0;
        }));
        return command;
    }

    private static Command Upload()
    {
        var source = new Argument<string>("path") { Description = "A file or a folder (uploaded recursively)." };
        var container = new Option<string>("--container") { Description = "Target container (e.g. dfs-source, dfs-scripts).", Required = true };
        var prefix = new Option<string>("--prefix") { Description = "Name prefix inside the container.", DefaultValueFactory = _ => "" };
        var command = new Command("upload", "Upload input data or scripts through the ingress.") { source, container, prefix };
        command.SetAction((parse, ct) => RunAsync(parse, async client =>
        {
            var path = Path.GetFullPath(parse.GetValue(source)!);
            var files = File.Exists(path) ? [path] : Directory.Exists(path)
                ? Directory.GetFiles(path, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal).ToArray()
                : throw new CliException($"'{path}' is neither a file nor a folder.", 2);
            var root = File.Exists(path) ? Path.GetDirectoryName(path)! : path;
            long total = files.Sum(f => new FileInfo(f).Length), done = 0;
            var interactive = !Console.IsOutputRedirected;
            foreach (var file in files)
            {
                var name = parse.GetValue(prefix) + Path.GetRelativePath(root, file).Replace(Path.DirectorySeparatorChar, '/');
                var before = done;
                await client.UploadAsync(parse.GetValue(container)!, name, file, sent =>
                {
                    if (interactive)
                    {
                        Console.Write($"\r{Bar(before + sent, total)} {(before + sent) / 1_000_000.0,8:0.0} / {total / 1_000_000.0:0.0} MB  {name}".PadRight(100)[..100]);
                    }
                }, ct);
                done += new FileInfo(file).Length;
                if (!interactive)
                {
                    Console.WriteLine($"uploaded {parse.GetValue(container)}/{name}");
                }
            }
            if (interactive)
            {
                Console.WriteLine();
            }
            Console.WriteLine($"{files.Length} files, {total} bytes uploaded to {parse.GetValue(container)}");
            return 0;
        }));
        return command;
    }

    private static Command Download()
    {
        var id = JobId();
        var to = new Option<string>("--to") { Description = "Folder to write the output parts into.", DefaultValueFactory = _ => "." };
        var command = new Command("download", "Download a succeeded job's output parts.") { id, to };
        command.SetAction((parse, ct) => RunAsync(parse, async client =>
        {
            var job = await client.GetAsync(parse.GetValue(id)!, ct);
            if (job.Status.State != JobState.Succeeded || job.Status.OutputContainer is null)
            {
                throw new CliException($"Job {job.Spec.Id} is {job.Status.State}; only a succeeded job has output.", 1);
            }
            foreach (var part in job.Status.Outputs)
            {
                var target = Path.Combine(parse.GetValue(to)!, part);
                await client.DownloadAsync(job.Status.OutputContainer, part, target, ct);
                Console.WriteLine(target);
            }
            return 0;
        }));
        return command;
    }

    internal static async Task<int> RunAsync(ParseResult parse, Func<IngressClient, Task<int>> action)
    {
        try
        {
            using var client = new IngressClient(parse.GetValue(Url)!, parse.GetValue(ApiKey));
            return await action(client);
        }
        catch (CliException e)
        {
            await Console.Error.WriteLineAsync($"error: {e.Message}");
            return e.ExitCode;
        }
    }

    private static string Bar(PhaseProgress progress) => Bar(progress.Done, progress.Total);

    private static string Bar(long done, long total)
    {
        const int width = 20;
        var filled = total == 0 ? 0 : (int)(width * done / total);
        return "[" + new string('#', filled) + new string('.', width - filled) + "]";
    }
}
