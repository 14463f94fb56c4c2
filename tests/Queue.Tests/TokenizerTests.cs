using System.Text;
using Queue.Tests.Infrastructure;
using Queue.Worker.Apps;
using Queue.Worker.Execution;

namespace Queue.Tests;

/// <summary>The map hot path's tokeniser and count table, each against the plain code it replaces.</summary>
public sealed partial class TokenizerTests
{
    /// <summary>The definition, by other means: a word is a maximal run of chars in a letter category (what char.IsLetter tests), per UTF-16 char.</summary>
    private static List<string> ReferenceWords(string text)
    {
        var words = new List<string>();
        foreach (System.Text.RegularExpressions.Match match in LetterRuns().Matches(text))
        {
            words.Add(match.Value);
        }
        return words;
    }

    private static List<string> TokenizerWords(string text)
    {
        var words = new List<string>();
        var tokenizer = new WordTokenizer(text);
        while (tokenizer.Next(out var word))
        {
            words.Add(text[word]);
        }
        return words;
    }

    [Theory]
    [InlineData("")]
    [InlineData("a")]
    [InlineData(" ")]
    [InlineData("hello, world")]
    [InlineData("Ünïcödé wörds — naïve café; Ελληνικά Кириллица 日本語 ÆØÅ")]
    [InlineData("x\u0301y \ud83d\ude00z \u00a0\u2028q")] // combining mark, surrogate pair, no-break and line separators split words
    [InlineData("@[`{AZaz")] // the ASCII neighbours of the letter ranges
    public void SplitsLikeCharIsLetter(string text) => Assert.Equal(ReferenceWords(text), TokenizerWords(text));

    [Fact]
    public void WordsAcrossEveryBlockBoundary()
    {
        // Words of every length from 1 to 150 at every offset around the 64-char blocks, non-ASCII mixed in.
        var random = new Random(11);
        const string alphabet = "abcXYZéßж  ,.\n1-\u00ad\u3042";
        for (var round = 0; round < 400; round++)
        {
            var length = random.Next(0, 300);
            var text = new StringBuilder(length);
            for (var i = 0; i < length; i++)
            {
                text.Append(random.Next(4) == 0 ? alphabet[random.Next(alphabet.Length)] : (char)('a' + random.Next(26)));
            }
            var s = text.ToString();
            Assert.Equal(ReferenceWords(s), TokenizerWords(s));
        }
        foreach (var size in new[] { 63, 64, 65, 127, 128, 129, 192 })
        {
            var all = new string('w', size);
            Assert.Equal(ReferenceWords(all), TokenizerWords(all));
            Assert.Equal(ReferenceWords(all + " "), TokenizerWords(all + " "));
            Assert.Equal(ReferenceWords(" " + all), TokenizerWords(" " + all));
        }
    }

    [Fact]
    public void TheBooksTokeniseAsTheDefinitionSays()
    {
        foreach (var book in Directory.GetFiles(RepoPaths.Gutenberg, "*.txt"))
        {
            var text = File.ReadAllText(book);
            Assert.Equal(ReferenceWords(text), TokenizerWords(text));
        }
    }

    [Fact]
    public void CountTableCountsAsADictionaryDoesByCharsAndByUtf8Bytes()
    {
        // The map side's combiner counts char keys, a summing reduce UTF-8 bytes: one table, both ways.
        var table = new CountTable<char>();
        var bytes = new CountTable<byte>();
        var reference = new Dictionary<string, long>(StringComparer.Ordinal);
        void Add(string key, long amount)
        {
            table.GetOrAdd(key, out var added) += amount;
            Assert.Equal(!reference.ContainsKey(key), added);
            bytes.GetOrAdd(System.Text.Encoding.UTF8.GetBytes(key), out var addedBytes) += amount;
            Assert.Equal(added, addedBytes);
            reference[key] = reference.GetValueOrDefault(key) + amount;
        }
        // Keys that share their first and last four chars (eight bytes), differ only in the middle or the
        // length, empty, of every length up to past sixteen bytes, long, and non-ASCII.
        Add("", 1);
        Add("", 2);
        foreach (var middle in new[] { "", "x", "xy", "yx", "xyz", "ü", new string('m', 1000) })
        {
            Add($"abcd{middle}wxyz", 1);
            Add($"abcd{middle}wxyz", 5);
            Add($"abcdefgh{middle}stuvwxyz", 2);
        }
        for (var length = 1; length <= 20; length++)
        {
            Add(new string('a', length), length);
            Add(new string('a', length - 1) + "b", length);
            Add("b" + new string('a', length - 1), length);
        }
        foreach (var book in Directory.GetFiles(RepoPaths.Gutenberg, "*.txt"))
        {
            foreach (var word in ReferenceWords(File.ReadAllText(book)))
            {
                Add(word, 1);
            }
        }
        for (var i = 0; i < 100_000; i++)
        {
            // Enough distinct keys to grow the table several times.
            Add(i.ToString(System.Globalization.CultureInfo.InvariantCulture), i);
        }
        AssertCounts(reference, table);
        Assert.Equal(reference.Count, bytes.Count);
        var seen = 0;
        var cursor = 0;
        while (bytes.Next(ref cursor, out var key, out var total))
        {
            Assert.Equal(reference[System.Text.Encoding.UTF8.GetString(key)], total);
            seen++;
        }
        Assert.Equal(reference.Count, seen);
        table.Clear();
        Assert.Equal(0, table.Count);
        table.GetOrAdd("the", out var fresh) += 1;
        Assert.True(fresh);
    }

    /// <summary>
    /// One table through tasks of every size, as the pool passes it on: after a large task a small one
    /// uses a small part of its memory, and a larger one grows back through memory the large task left
    /// (stale slots beyond the part in use must never be read); every round counts exactly.
    /// </summary>
    [Fact]
    public void ACountTableReusedAfterTasksOfOtherSizesCountsExactly()
    {
        var table = new CountTable<char>();
        var round = 0;
        foreach (var keys in new[] { 100_000, 1_000, 30, 50_000, 2_000, 300_000, 10 })
        {
            round++;
            var reference = new Dictionary<string, long>(StringComparer.Ordinal);
            for (var i = 0; i < keys * 2; i++)
            {
                // Each key twice; the keys of a round differ from the last round's (the round in the key).
                var key = $"{round}-{i % keys}";
                table.GetOrAdd(key, out var added) += i;
                Assert.Equal(!reference.ContainsKey(key), added);
                reference[key] = reference.GetValueOrDefault(key) + i;
            }
            AssertCounts(reference, table);
            table.Clear();
            var cursor = 0;
            Assert.False(table.Next(ref cursor, out _, out _));
        }
    }

    /// <summary>The table holds exactly the reference's keys and totals, each walked once.</summary>
    private static void AssertCounts(Dictionary<string, long> reference, CountTable<char> table)
    {
        Assert.Equal(reference.Count, table.Count);
        var seen = 0;
        var cursor = 0;
        while (table.Next(ref cursor, out var key, out var total))
        {
            Assert.Equal(reference[key.ToString()], total);
            seen++;
        }
        Assert.Equal(reference.Count, seen);
    }

    [Fact]
    public void APooledCountTableComesBackEmptyAndAGrownOneIsNotKept()
    {
        var small = CountTable<char>.Rent();
        small.GetOrAdd("river", out _) += 3;
        CountTable<char>.Return(small);
        // Whichever table comes next (another test may have returned one), it holds nothing.
        var next = CountTable<char>.Rent();
        Assert.Equal(0, next.Count);
        var cursor = 0;
        Assert.False(next.Next(ref cursor, out _, out _));
        next.GetOrAdd("river", out var added) += 1;
        Assert.True(added);
        CountTable<char>.Return(next);

        var grown = CountTable<char>.Rent();
        for (var i = 0; i < 200_000; i++)
        {
            grown.GetOrAdd(i.ToString(System.Globalization.CultureInfo.InvariantCulture), out _)++;
        }
        CountTable<char>.Return(grown);
        // A table grown past the pooled size (a task of many distinct keys) is left to the GC.
        for (var i = 0; i < 16; i++)
        {
            Assert.NotSame(grown, CountTable<char>.Rent());
        }
    }

    [Fact]
    public void ACollectorDisposedTwiceReturnsItsTableOnce()
    {
        // Two returns would let two later tasks share one table and mix their counts.
        var folder = Path.Combine(Path.GetTempPath(), "queue-tests", Guid.NewGuid().ToString("N"));
        var collector = new MapOutputCollector(1, new WordCountApp(), 1 << 20, folder);
        collector.EmitCount("word", 1);
        collector.Dispose();
        collector.Dispose();
        var tables = new HashSet<CountTable<char>>(ReferenceEqualityComparer.Instance);
        for (var i = 0; i < 16; i++)
        {
            Assert.True(tables.Add(CountTable<char>.Rent()));
        }
    }

    [System.Text.RegularExpressions.GeneratedRegex(@"[\p{Lu}\p{Ll}\p{Lt}\p{Lm}\p{Lo}]+")]
    private static partial System.Text.RegularExpressions.Regex LetterRuns();
}
