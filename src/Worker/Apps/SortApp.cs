using System.Runtime.CompilerServices;
using Queue.Contracts.Apps;

namespace Queue.Worker.Apps;

/// <summary>
/// Sort (MapReduce §5.3, Hadoop's TeraSort): the output is the input lines unchanged, each once, in
/// ordinal byte order of their keys — a line's key is the line up to its first tab, or the whole line.
/// With <c>"partitioner": "range"</c> the parts concatenated are one sorted output.
/// </summary>
public sealed class SortApp : IMapReduceApp
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Map(MapInput input, IMapEmitter emit)
    {
        var text = input.Text;
        while (!text.IsEmpty)
        {
            var end = text.IndexOf('\n');
            var line = end < 0 ? text : text[..end];
            text = end < 0 ? default : text[(end + 1)..];
            var tab = line.IndexOf('\t');
            // The value keeps the tab, so key + value is the line as it came.
            if (tab < 0)
            {
                emit.Emit(line, default);
            }
            else
            {
                emit.Emit(line[..tab], line[tab..]);
            }
        }
    }

    public string Reduce(string key, IEnumerable<string> values) =>
        throw new NotSupportedException("sort writes its records as they came (ReducesByIdentity); Reduce is never called.");

    public bool ReducesByIdentity => true;
}
