using System.Globalization;
using Queue.Contracts.Apps;

namespace Queue.Worker.Apps;

/// <summary>
/// Word count that misbehaves, for fault tests: each task attempt (one app instance) throws with
/// probability <c>args.failRate</c>, or hangs (ignoring cancellation, like stuck user code) for
/// <c>args.stallSeconds</c> with probability <c>args.stallRate</c>, at its first Map or Reduce call.
/// <c>args.poisonFile</c> makes every map of that document throw, so its task can never succeed;
/// <c>args.badRecord</c> makes a map throw on any input holding that text (for bad-record skipping).
/// <c>args.slowFile</c> makes the first attempt of that document's map slow but alive for
/// <c>args.slowSeconds</c> (a straggler on a bad machine: its lease is renewed, it would finish);
/// backup attempts run at full speed.
/// </summary>
public sealed class CrashApp(IReadOnlyDictionary<string, string> args) : IMapReduceApp
{
    private readonly WordCountApp inner = new();
    private readonly double failRate = Read(args, "failRate");
    private readonly double stallRate = Read(args, "stallRate");
    private readonly TimeSpan stall = TimeSpan.FromSeconds(Read(args, "stallSeconds"));
    private readonly string? poisonFile = args.GetValueOrDefault("poisonFile");
    private readonly string? badRecord = args.GetValueOrDefault("badRecord");
    private readonly string? slowFile = args.GetValueOrDefault("slowFile");
    private readonly TimeSpan slow = TimeSpan.FromSeconds(Read(args, "slowSeconds"));
    private readonly bool backup = args.GetValueOrDefault(Queue.Contracts.Jobs.JobRequestValidator.BackupArg) == "true";
    private readonly double roll = Random.Shared.NextDouble();
    private bool rolled;
    private bool slept;

    public bool HasCombiner => true;

    public void Map(MapInput input, IMapEmitter emit)
    {
        if (input.FileName == poisonFile)
        {
            throw new InvalidOperationException($"crash app: '{input.FileName}' is poison.");
        }
        Misbehave("map");
        if (input.FileName == slowFile && !backup && !slept)
        {
            slept = true;
            Thread.Sleep(slow);
        }
        inner.Map(input, emit);
        // Throw after emitting, so output of a bad record must be held back, not merely not produced.
        if (badRecord is not null && input.Text.Contains(badRecord, StringComparison.Ordinal))
        {
            throw new FormatException($"crash app: a record contains '{badRecord}'.");
        }
    }

    public string Reduce(string key, IEnumerable<string> values)
    {
        Misbehave("reduce");
        return inner.Reduce(key, values);
    }

    public string Combine(string key, IEnumerable<string> values) => inner.Combine(key, values);

    private void Misbehave(string where)
    {
        // One roll per attempt, acted on at its first call (a map task may make only one).
        if (rolled)
        {
            return;
        }
        rolled = true;
        if (roll < failRate)
        {
            throw new InvalidOperationException($"crash app: simulated failure in {where}.");
        }
        if (roll < failRate + stallRate)
        {
            Thread.Sleep(stall);
        }
    }

    private static double Read(IReadOnlyDictionary<string, string> args, string name)
    {
        if (!args.TryGetValue(name, out var text))
        {
            return 0;
        }
        return double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) && value is >= 0 and <= 3600
            ? value
            : throw new ArgumentException($"crash: args.{name} must be a number between 0 and 3600.");
    }
}
