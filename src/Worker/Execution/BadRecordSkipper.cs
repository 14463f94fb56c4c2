using Queue.Contracts.Apps;

namespace Queue.Worker.Execution;

/// <summary>
/// Hadoop's bad-record skipping for apps that throw on a record: a chunk's output is held back until
/// the app has mapped the whole chunk; if it throws, the chunk is mapped again line by line and the
/// lines it throws on are skipped, counted and (the first few) listed. Nothing a skipped record
/// emitted before throwing reaches the output.
/// </summary>
public sealed class BadRecordSkipper(IMapReduceApp app, IMapEmitter output)
{
    private const int MaxSamples = 10;
    private readonly Pending pending = new();

    public long Skipped { get; private set; }

    public List<string>? Samples { get; private set; }

    public void Map(MapInput input)
    {
        pending.Clear();
        try
        {
            app.Map(input, pending);
            pending.FlushTo(output);
            return;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            pending.Clear();
        }
        var text = input.Text;
        var lineNumber = input.FirstLineNumber;
        while (!text.IsEmpty)
        {
            var newline = text.IndexOf('\n');
            var line = newline < 0 ? text : text[..(newline + 1)];
            text = newline < 0 ? default : text[(newline + 1)..];
            try
            {
                app.Map(new MapInput(input.FileName, line, lineNumber), pending);
                pending.FlushTo(output);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                pending.Clear();
                Skipped++;
                if ((Samples ??= []).Count < MaxSamples)
                {
                    var shown = line.TrimEnd("\r\n");
                    Samples.Add($"{input.FileName}: \"{(shown.Length > 80 ? string.Concat(shown[..80], "...") : shown)}\": {e.GetType().Name}: {e.Message}");
                }
            }
            if (lineNumber > 0)
            {
                lineNumber++;
            }
        }
    }

    /// <summary>Output held back until the record (or chunk) that produced it is known to be good.</summary>
    private sealed class Pending : IMapEmitter
    {
        private readonly List<(string Key, string Value)> pairs = [];

        public void Emit(ReadOnlySpan<char> key, ReadOnlySpan<char> value) => pairs.Add((key.ToString(), value.ToString()));

        public void Clear() => pairs.Clear();

        public void FlushTo(IMapEmitter output)
        {
            foreach (var (key, value) in pairs)
            {
                output.Emit(key, value);
            }
            pairs.Clear();
        }
    }
}
