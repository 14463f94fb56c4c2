using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using Queue.Contracts.Apps;

namespace Queue.Worker.Apps;

/// <summary>An inverted index: for each word, <c>N doc1,doc2,...</c> — how many documents hold it and which, sorted ordinally.</summary>
public sealed class IndexerApp : IMapReduceApp
{
    // Per-chunk de-duplication keeps map output near one record per distinct word and document.
    private readonly HashSet<string> seen = new(StringComparer.Ordinal);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Map(MapInput input, IMapEmitter emit)
    {
        seen.Clear();
        var lookup = seen.GetAlternateLookup<ReadOnlySpan<char>>();
        var text = input.Text;
        var words = new WordTokenizer(text);
        while (words.Next(out var word))
        {
            if (lookup.Add(text[word]))
            {
                emit.Emit(text[word], input.FileName);
            }
        }
    }

    public string Reduce(string key, IEnumerable<string> values)
    {
        var documents = new SortedSet<string>(values, StringComparer.Ordinal);
        var result = new StringBuilder();
        result.Append(documents.Count.ToString(CultureInfo.InvariantCulture)).Append(' ');
        result.AppendJoin(',', documents);
        return result.ToString();
    }
}
