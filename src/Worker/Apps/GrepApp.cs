using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text.RegularExpressions;
using Queue.Contracts.Apps;

namespace Queue.Worker.Apps;

/// <summary>Lines matching <c>args.pattern</c>: key <c>fileName:lineNumber</c>, value the line.</summary>
public sealed class GrepApp : IMapReduceApp
{
    private readonly Regex pattern;

    public GrepApp(IReadOnlyDictionary<string, string> args)
    {
        if (!args.TryGetValue("pattern", out var text) || text.Length == 0)
        {
            throw new ArgumentException("grep needs args.pattern (a regular expression).");
        }
        try
        {
            // A match time-out keeps a pathological pattern from hanging a task.
            pattern = new Regex(text, RegexOptions.CultureInvariant, TimeSpan.FromSeconds(2));
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"grep: args.pattern is not a valid regular expression: {e.Message}");
        }
    }

    public bool NeedsLineNumbers => true;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Map(MapInput input, IMapEmitter emit)
    {
        var text = input.Text;
        var lineNumber = input.FirstLineNumber;
        Span<char> key = stackalloc char[input.FileName.Length + 21];
        input.FileName.AsSpan().CopyTo(key);
        key[input.FileName.Length] = ':';
        while (!text.IsEmpty)
        {
            var newline = text.IndexOf('\n');
            var line = newline < 0 ? text : text[..newline];
            text = newline < 0 ? default : text[(newline + 1)..];
            if (line.EndsWith('\r'))
            {
                line = line[..^1];
            }
            if (pattern.IsMatch(line))
            {
                lineNumber.TryFormat(key[(input.FileName.Length + 1)..], out var digits, default, CultureInfo.InvariantCulture);
                emit.Emit(key[..(input.FileName.Length + 1 + digits)], line);
            }
            lineNumber++;
        }
    }

    public string Reduce(string key, IEnumerable<string> values)
    {
        foreach (var value in values)
        {
            return value;
        }
        return "";
    }
}
