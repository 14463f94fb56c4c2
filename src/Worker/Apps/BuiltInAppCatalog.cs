using Queue.Contracts.Apps;

namespace Queue.Worker.Apps;

/// <summary>The apps that ship with the engine, by name, each with the arguments it takes.</summary>
public sealed class BuiltInAppCatalog : IAppCatalog
{
    private static readonly Dictionary<string, (string[] Args, Func<IReadOnlyDictionary<string, string>, IMapReduceApp> Create)> Apps = new(StringComparer.Ordinal)
    {
        ["wordcount"] = ([], static _ => new WordCountApp()),
        ["indexer"] = ([], static _ => new IndexerApp()),
        ["grep"] = (["pattern"], static args => new GrepApp(args)),
        ["sort"] = ([], static _ => new SortApp()),
        ["crash"] = (["failRate", "stallRate", "stallSeconds", "poisonFile", "badRecord", "slowFile", "slowSeconds"], static args => new CrashApp(args)),
    };

    public IReadOnlyCollection<string> Names => Apps.Keys;

    public bool Exists(string name) => Apps.ContainsKey(name);

    /// <summary>Creates the app; an unknown app, an argument it does not take or a bad value is an <see cref="ArgumentException"/> naming it.</summary>
    public IMapReduceApp Create(string name, IReadOnlyDictionary<string, string> args)
    {
        if (!Apps.TryGetValue(name, out var app))
        {
            throw new ArgumentException($"Unknown app '{name}'. Known apps: {string.Join(", ", Apps.Keys)}.");
        }
        foreach (var key in args.Keys)
        {
            if (Array.IndexOf(app.Args, key) < 0 && !key.StartsWith(Queue.Contracts.Jobs.JobRequestValidator.AttemptArgPrefix, StringComparison.Ordinal))
            {
                // A misspelt argument would otherwise be ignored silently.
                throw new ArgumentException(app.Args.Length == 0
                    ? $"{name} takes no arguments; 'args.{key}' is not one."
                    : $"{name} takes no argument 'args.{key}'; it takes {string.Join(", ", app.Args)}.");
            }
        }
        return app.Create(args);
    }
}
