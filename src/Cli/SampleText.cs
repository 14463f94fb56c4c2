using System.Text;

namespace Queue.Cli;

/// <summary>
/// Generates English-looking ASCII text of a given size, deterministically from a seed: words drawn
/// with a Zipf-like skew from a made-up vocabulary, lines of varying length, some capitals and
/// punctuation. The project makes its own sample data rather than shipping books.
/// </summary>
public static class SampleText
{
    private static readonly string[] Common =
    [
        "the", "of", "and", "to", "a", "in", "that", "it", "was", "he", "for", "on", "with", "as", "his", "at", "by",
        "queue", "worker", "lease", "map", "reduce", "task", "message", "river", "stone", "light", "winter", "garden",
    ];

    private static readonly string[] Syllables =
    [
        "ka", "lo", "mi", "ren", "tor", "sa", "vel", "qu", "an", "dor", "el", "is", "om", "pra", "tes", "ul", "yn", "zo",
        "bri", "cal", "den", "fi", "gor", "hal", "jun", "kre", "lim", "nox", "ost", "pel",
    ];

    public static async Task WriteAsync(string path, long bytes, int seed, CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        var random = new Random(seed);
        var vocabulary = new string[20_000];
        for (var i = 0; i < vocabulary.Length; i++)
        {
            vocabulary[i] = i < Common.Length ? Common[i] : MakeWord(random);
        }
        await using var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20, useAsync: true);
        var line = new StringBuilder(256);
        var buffer = new byte[1 << 20];
        var used = 0;
        long written = 0;
        while (written < bytes)
        {
            line.Clear();
            var words = random.Next(4, 16);
            for (var w = 0; w < words; w++)
            {
                // Squaring a uniform draw skews towards low ranks: a few words are very common.
                var u = random.NextDouble();
                var word = vocabulary[(int)(u * u * u * vocabulary.Length)];
                if (w > 0)
                {
                    line.Append(random.Next(12) == 0 ? ", " : " ");
                }
                line.Append(w == 0 || random.Next(20) == 0 ? char.ToUpperInvariant(word[0]) + word[1..] : word);
            }
            line.Append(random.Next(3) == 0 ? ".\n" : "\n");
            var need = Encoding.ASCII.GetByteCount(line.ToString());
            if (used + need > buffer.Length)
            {
                await file.WriteAsync(buffer.AsMemory(0, used), cancellationToken);
                used = 0;
            }
            used += Encoding.ASCII.GetBytes(line.ToString(), buffer.AsSpan(used));
            written += need;
        }
        await file.WriteAsync(buffer.AsMemory(0, used), cancellationToken);
    }

    private static string MakeWord(Random random)
    {
        var parts = random.Next(1, 4);
        var word = new StringBuilder();
        for (var i = 0; i < parts; i++)
        {
            word.Append(Syllables[random.Next(Syllables.Length)]);
        }
        return word.ToString();
    }
}
