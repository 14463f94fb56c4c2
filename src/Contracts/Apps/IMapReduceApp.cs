namespace Queue.Contracts.Apps;

/// <summary>
/// A user's MapReduce program. <see cref="Map"/> is called with consecutive chunks of whole lines
/// of one split; pairs go to <paramref name="emit"/>. <see cref="Reduce"/> gets every value of one
/// key (streamed, enumerate once) and returns the output value. Implementations hold no state
/// between calls other than what they were created with.
/// </summary>
public interface IMapReduceApp
{
    void Map(MapInput input, IMapEmitter emit);

    string Reduce(string key, IEnumerable<string> values);

    /// <summary>True when <see cref="Combine"/> may pre-aggregate map output (on any subset of a key's values).</summary>
    bool HasCombiner => false;

    string Combine(string key, IEnumerable<string> values) => throw new NotSupportedException("This app has no combiner.");

    /// <summary>
    /// True when every value is a decimal integer and <see cref="Combine"/> is their sum (Hadoop's
    /// LongSumReducer): the map side then keeps one running total per key instead of a list of values.
    /// </summary>
    bool CombinesBySum => false;

    /// <summary>
    /// True when every value is a decimal integer and <see cref="Reduce"/> writes their sum (Hadoop's
    /// LongSumReducer): the reduce side then adds the values as it reads them, with no string per key or value.
    /// </summary>
    bool ReducesBySum => false;

    /// <summary>
    /// True when the output is every map output record as it came, its key followed by its value with
    /// nothing between (the value carries its own separator), in key order — Hadoop's identity reducer
    /// over lines: the reduce side copies bytes and never calls <see cref="Reduce"/>.
    /// </summary>
    bool ReducesByIdentity => false;

    /// <summary>True when the app reads <see cref="MapInput.FirstLineNumber"/>; it costs a scan of the blob before the split.</summary>
    bool NeedsLineNumbers => false;
}

/// <summary>A chunk of whole lines ('\n'-terminated, the last one possibly not) from one input document.</summary>
public readonly ref struct MapInput(string fileName, ReadOnlySpan<char> text, long firstLineNumber)
{
    /// <summary>The blob name relative to the input container, e.g. <c>pg-grimm.txt</c>.</summary>
    public string FileName { get; } = fileName;

    public ReadOnlySpan<char> Text { get; } = text;

    /// <summary>1-based line number of the chunk's first line in its document; 0 when the app did not ask.</summary>
    public long FirstLineNumber { get; } = firstLineNumber;
}

/// <summary>Receives a map's output pairs. Spans are copied; callers may reuse their buffers.</summary>
public interface IMapEmitter
{
    void Emit(ReadOnlySpan<char> key, ReadOnlySpan<char> value);

    /// <summary>
    /// Emits <paramref name="amount"/> as the key's value (its decimal text), for apps that
    /// <see cref="IMapReduceApp.CombinesBySum"/>: a summing collector adds it without text in between.
    /// </summary>
    void EmitCount(ReadOnlySpan<char> key, long amount)
    {
        Span<char> digits = stackalloc char[20];
        amount.TryFormat(digits, out var written, default, System.Globalization.CultureInfo.InvariantCulture);
        Emit(key, digits[..written]);
    }
}

/// <summary>Creates an app by name for one task, with the job's arguments.</summary>
public interface IAppCatalog
{
    bool Exists(string name);

    IReadOnlyCollection<string> Names { get; }

    /// <exception cref="ArgumentException">Unknown app or bad arguments.</exception>
    IMapReduceApp Create(string name, IReadOnlyDictionary<string, string> args);
}
