using System.Text;
using Queue.Contracts.Apps;

namespace Queue.Tests.Infrastructure;

/// <summary>
/// The reference the engine is judged against (like the MIT lab's mrsequential): one pass over every
/// document, all pairs in memory, sorted by key in UTF-8 byte order, grouped and reduced.
/// </summary>
public static class SequentialReference
{
    public static List<string> Run(IMapReduceApp app, IEnumerable<(string Name, string Text)> documents)
    {
        var pairs = new Collector();
        foreach (var (name, text) in documents)
        {
            app.Map(new MapInput(name, text, 1), pairs);
        }
        pairs.Items.Sort((a, b) => a.Key.AsSpan().SequenceCompareTo(b.Key));
        var output = new List<string>();
        for (var i = 0; i < pairs.Items.Count;)
        {
            var j = i;
            var values = new List<string>();
            while (j < pairs.Items.Count && pairs.Items[j].Key.AsSpan().SequenceEqual(pairs.Items[i].Key))
            {
                values.Add(pairs.Items[j].Value);
                j++;
            }
            var key = Encoding.UTF8.GetString(pairs.Items[i].Key);
            output.Add($"{key}\t{app.Reduce(key, values)}");
            i = j;
        }
        return output;
    }

    public static IEnumerable<(string Name, string Text)> ReadFolder(string folder)
    {
        foreach (var path in Directory.GetFiles(folder).Order(StringComparer.Ordinal))
        {
            yield return (Path.GetFileName(path), File.ReadAllText(path, Encoding.UTF8));
        }
    }

    /// <summary>Output lines sorted by key (the text before the first tab) in UTF-8 byte order, as the reference is.</summary>
    public static List<string> SortByKey(IEnumerable<string> lines)
    {
        var list = lines.Where(l => l.Length > 0).ToList();
        list.Sort((a, b) => Encoding.UTF8.GetBytes(KeyOf(a)).AsSpan().SequenceCompareTo(Encoding.UTF8.GetBytes(KeyOf(b))));
        return list;
    }

    private static string KeyOf(string line)
    {
        var tab = line.IndexOf('\t');
        return tab < 0 ? line : line[..tab];
    }

    private sealed class Collector : IMapEmitter
    {
        public List<(byte[] Key, string Value)> Items { get; } = [];

        public void Emit(ReadOnlySpan<char> key, ReadOnlySpan<char> value) =>
            Items.Add((Encoding.UTF8.GetBytes(key.ToString()), value.ToString()));
    }
}
