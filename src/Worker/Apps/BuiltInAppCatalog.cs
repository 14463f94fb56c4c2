using Queue.Contracts.Apps;

namespace Queue.Worker.Apps;

/// <summary>The apps compiled into the worker.</summary>
public sealed class BuiltInAppCatalog : IAppCatalog
{
    private static readonly Dictionary<string, Func<IReadOnlyDictionary<string, string>, IMapReduceApp>> Factories = new(StringComparer.Ordinal)
    {
        ["wordcount"] = static _ => new WordCountApp(),
        ["indexer"] = static _ => new IndexerApp(),
        ["grep"] = static args => new GrepApp(args),
        ["crash"] = static args => new CrashApp(args),
    };

    public IReadOnlyCollection<string> Names => Factories.Keys;

    public bool Exists(string name) => Factories.ContainsKey(name);

    public IMapReduceApp Create(string name, IReadOnlyDictionary<string, string> args) =>
        Factories.TryGetValue(name, out var factory)
            ? factory(args)
            : throw new ArgumentException($"Unknown app '{name}'. Known apps: {string.Join(", ", Factories.Keys)}.");
}
