using System.CommandLine;
using Queue.Contracts.Jobs;

namespace Queue.Cli;

/// <summary>
/// <c>queue gen sort</c> writes gensort-style records (<see cref="SortRecords"/>) and uploads them through
/// the ingress (or into a local folder); <c>queue validate sort JOB</c> is TeraValidate: the job's
/// output, all parts in order, is globally sorted by key and holds exactly the input's records
/// (count and an order-independent checksum).
/// </summary>
public static class SortCommands
{
    /// <summary>Records per generated file: 128 MB, so inputs come as several blobs as a real data set would.</summary>
    private const long RecordsPerFile = 1_280_000;

    public static void AddTo(RootCommand root)
    {
        root.Subcommands.Add(new Command("gen", "Generate benchmark input.") { Generate() });
        root.Subcommands.Add(new Command("validate", "Check a benchmark job's output.") { Validate() });
    }

    private static Command Generate()
    {
        var megabytes = new Option<int>("--mb") { Description = "Size in MB (1,000,000 bytes: 10,000 records of 100 bytes each).", Required = true };
        var seed = new Option<ulong>("--seed") { Description = "Seed: the same seed and size give the same bytes.", DefaultValueFactory = _ => 1 };
        var container = new Option<string>("--container") { Description = "Container to upload to (through the ingress).", DefaultValueFactory = _ => "sortin" };
        var to = new Option<string?>("--to") { Description = "Write the files into this local folder instead of uploading (e.g. ./data/sortin for the embedded default)." };
        var command = new Command("sort", "gensort-style records for the sort benchmark: a 10-character key, a tab, a row id and filler; 100 bytes a line.") { megabytes, seed, container, to };
        command.SetAction(async (parse, ct) =>
        {
            var mb = parse.GetValue(megabytes);
            if (mb is < 1 or > 1_000_000)
            {
                await Console.Error.WriteLineAsync("error: --mb must be between 1 and 1000000.");
                return 2;
            }
            var records = mb * 10_000L;
            if (parse.GetValue(to) is { } folder)
            {
                foreach (var file in await WriteFilesAsync(Path.GetFullPath(folder), records, parse.GetValue(seed), ct))
                {
                    Console.WriteLine(file);
                }
                return 0;
            }
            return await JobCommands.RunAsync(parse, async client =>
            {
                var scratch = Path.Combine(Path.GetTempPath(), "queue-gen-" + Guid.NewGuid().ToString("N"));
                try
                {
                    foreach (var file in await WriteFilesAsync(scratch, records, parse.GetValue(seed), ct))
                    {
                        var name = Path.GetFileName(file);
                        await client.UploadAsync(parse.GetValue(container)!, name, file, _ => { }, ct);
                        File.Delete(file);
                        Console.WriteLine($"{parse.GetValue(container)}/{name}");
                    }
                }
                finally
                {
                    Directory.Delete(scratch, recursive: true);
                }
                return 0;
            });
        });
        return command;
    }

    /// <summary>Writes <paramref name="records"/> rows as files of at most <see cref="RecordsPerFile"/>; returns their paths.</summary>
    public static async Task<List<string>> WriteFilesAsync(string folder, long records, ulong seed, CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(folder);
        var files = new List<string>();
        for (long first = 0, n = 0; first < records; first += RecordsPerFile, n++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var path = Path.Combine(folder, $"part-{n:D5}.txt");
            await using (var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
            {
                SortRecords.Write(file, first, Math.Min(RecordsPerFile, records - first), seed);
            }
            files.Add(path);
        }
        return files;
    }

    private static Command Validate()
    {
        var id = new Argument<string>("job") { Description = "The sort job's id." };
        var command = new Command("sort", "TeraValidate: the job's parts, in order, are one sorted output with exactly the input's records.") { id };
        command.SetAction((parse, ct) => JobCommands.RunAsync(parse, async client =>
        {
            var job = await client.GetAsync(parse.GetValue(id)!, ct);
            if (job.Status.State != JobState.Succeeded)
            {
                throw new CliException($"Job {job.Spec.Id} is {job.Status.State}; only a succeeded job has output to validate.", 1);
            }
            var input = new SortRecords.Summary();
            foreach (var blob in await client.ListBlobsAsync(job.Spec.InputContainer, ct))
            {
                if (blob.Name.StartsWith(job.Spec.InputPrefix, StringComparison.Ordinal))
                {
                    await using var stream = await client.OpenReadAsync(job.Spec.InputContainer, blob.Name, ct);
                    await SortRecords.SummarizeAsync(stream, input, ct);
                    input.Finish();
                }
            }
            var output = new SortRecords.Summary();
            await using (var stream = await client.OpenOutputAsync(job.Spec.Id, ct))
            {
                await SortRecords.SummarizeAsync(stream, output, ct);
            }
            output.Finish();
            return Report(input, output, job.Status.Outputs.Count);
        }));
        return command;
    }

    /// <summary>Prints the comparison; 0 when the output is valid.</summary>
    public static int Report(SortRecords.Summary input, SortRecords.Summary output, int parts)
    {
        Console.WriteLine($"input:  {input.Records} records, checksum {input.Checksum:x16}");
        Console.WriteLine($"output: {output.Records} records, checksum {output.Checksum:x16}, {parts} parts");
        var problems = new List<string>();
        if (output.Disorder is { } disorder)
        {
            problems.Add($"out of order at {disorder}");
        }
        if (output.Records != input.Records)
        {
            problems.Add($"{output.Records} records out, {input.Records} in");
        }
        if (output.Checksum != input.Checksum)
        {
            problems.Add("the checksums differ: records were changed, lost or repeated");
        }
        foreach (var problem in problems)
        {
            Console.Error.WriteLine($"invalid: {problem}");
        }
        if (problems.Count == 0)
        {
            Console.WriteLine("valid: globally sorted, every input record once");
        }
        return problems.Count == 0 ? 0 : 1;
    }
}
