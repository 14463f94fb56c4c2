using System.Globalization;
using System.Runtime.CompilerServices;
using Queue.Contracts.Apps;

namespace Queue.Worker.Apps;

/// <summary>Counts words: maximal runs of letters (<see cref="char.IsLetter(char)"/>), case-sensitive.</summary>
public sealed class WordCountApp : IMapReduceApp
{
    public bool HasCombiner => true;

    public bool CombinesBySum => true;

    public bool ReducesBySum => true;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Map(MapInput input, IMapEmitter emit)
    {
        var text = input.Text;
        var words = new WordTokenizer(text);
        while (words.Next(out var word))
        {
            emit.EmitCount(text[word], 1);
        }
    }

    public string Reduce(string key, IEnumerable<string> values)
    {
        long sum = 0;
        foreach (var value in values)
        {
            sum += long.Parse(value, NumberStyles.None, CultureInfo.InvariantCulture);
        }
        return sum.ToString(CultureInfo.InvariantCulture);
    }

    public string Combine(string key, IEnumerable<string> values) => Reduce(key, values);
}
