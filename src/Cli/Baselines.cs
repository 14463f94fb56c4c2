using System.Buffers;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using Queue.Worker.Apps;
using Queue.Worker.Execution;

namespace Queue.Cli;

/// <summary>What the engine is measured against.</summary>
public static class Baselines
{
    /// <summary>
    /// Single-process, single-pass word count over the files one after the other, as fast as plain C#
    /// goes: 1 MiB sequential reads, one decode per buffer, spans for words, and a dictionary looked up
    /// by span so a word seen before costs no allocation. Same tokenisation as the engine's wordcount.
    /// </summary>
    public static Dictionary<string, long> WordCount(IReadOnlyList<string> paths)
    {
        var counts = new DictionaryCounter();
        foreach (var path in paths)
        {
            // The whole file is one range of the all-core count's reader.
            CountRange(path, 0, new FileInfo(path).Length, counts);
        }
        return counts.Counts;
    }

    /// <summary>
    /// The first difference between a word count's output lines (<c>word&lt;TAB&gt;count</c>, any
    /// order) and <paramref name="reference"/>, or null when they hold the same words and counts.
    /// </summary>
    public static string? FirstDifference(IEnumerable<string> lines, Dictionary<string, long> reference)
    {
        var seen = 0;
        foreach (var line in lines)
        {
            var tab = line.IndexOf('\t');
            var word = line[..tab];
            var count = long.Parse(line.AsSpan(tab + 1), System.Globalization.CultureInfo.InvariantCulture);
            if (!reference.TryGetValue(word, out var expected) || expected != count)
            {
                return $"'{word}': output {count}, baseline {expected}";
            }
            seen++;
        }
        return seen == reference.Count ? null : $"output has {seen} words, baseline {reference.Count}";
    }

    /// <summary>
    /// The tuned all-core baseline: the files cut into about four ranges per core at line ends (a
    /// newline byte never sits inside a UTF-8 sequence), each range counted as <see cref="WordCount"/>
    /// counts a file (1 MiB buffers, a dictionary looked up by span) into one dictionary per worker thread,
    /// merged at the end. What a careful programmer writes by hand for this one job.
    /// </summary>
    public static Dictionary<string, long> WordCountAllCores(IReadOnlyList<string> files) => AllCores<DictionaryCounter>(files);

    /// <summary>
    /// The same all-core count with the engine's map kernel (its <see cref="WordTokenizer"/> and
    /// <see cref="CountTable{T}"/>) in place of the char loop and the dictionary: set beside the engine,
    /// what is left is the engine's own cost (tasks, sort, intermediate files, reduce).
    /// </summary>
    public static Dictionary<string, long> WordCountAllCoresEngineKernel(IReadOnlyList<string> files) => AllCores<KernelCounter>(files);

    private static Dictionary<string, long> AllCores<TCounter>(IReadOnlyList<string> files) where TCounter : struct, IWordCounter<TCounter>
    {
        long total = 0;
        foreach (var file in files)
        {
            total += new FileInfo(file).Length;
        }
        var rangeSize = Math.Max(1 << 20, total / (Environment.ProcessorCount * 4));
        var ranges = new List<(string File, long Offset, long Length)>();
        foreach (var file in files)
        {
            var length = new FileInfo(file).Length;
            for (long offset = 0; offset < length; offset += rangeSize)
            {
                ranges.Add((file, offset, Math.Min(rangeSize, length - offset)));
            }
        }
        var partials = new System.Collections.Concurrent.ConcurrentBag<Dictionary<string, long>>();
        // One range at a time: the default partitioner hands out growing chunks, which on a few ranges can leave one core idle at the end.
        Parallel.ForEach(System.Collections.Concurrent.Partitioner.Create(ranges, System.Collections.Concurrent.EnumerablePartitionerOptions.NoBuffering), new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount },
            TCounter.Create,
            (range, _, counter) => { CountRange(range.File, range.Offset, range.Length, counter); return counter; },
            counter => partials.Add(counter.Counts));
        Dictionary<string, long>? merged = null;
        foreach (var partial in partials)
        {
            if (merged is null)
            {
                merged = partial;
                continue;
            }
            foreach (var (word, count) in partial)
            {
                CollectionsMarshal.GetValueRefOrAddDefault(merged, word, out _) += count;
            }
        }
        return merged ?? new Dictionary<string, long>(StringComparer.Ordinal);
    }

    /// <summary>Counts the lines that start in [offset, offset + length): a range skips the partial line it starts in and finishes the one it ends in.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void CountRange<TCounter>(string path, long offset, long length, TCounter counter) where TCounter : struct, IWordCounter<TCounter>
    {
        using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
        var bytes = ArrayPool<byte>.Shared.Rent(1 << 20);
        var chars = ArrayPool<char>.Shared.Rent((1 << 20) + 4096);
        try
        {
            long start = offset;
            if (offset > 0)
            {
                // Skip to just after the first newline at or after offset - 1: that line belongs to the previous range.
                file.Seek(offset - 1, SeekOrigin.Begin);
                int b;
                start = offset - 1;
                while ((b = file.ReadByte()) >= 0)
                {
                    start++;
                    if (b == '\n')
                    {
                        break;
                    }
                }
            }
            var end = offset + length; // read on past it to the end of the line that crosses it
            file.Seek(start, SeekOrigin.Begin);
            var decoder = Encoding.UTF8.GetDecoder();
            var position = start;
            var carry = 0;
            var done = start >= end && offset > 0;
            while (!done)
            {
                var read = file.Read(bytes, 0, 1 << 20);
                if (read <= 0)
                {
                    break;
                }
                var take = read;
                if (position + read >= end)
                {
                    // Stop after the newline that ends the line crossing the range's end.
                    var from = (int)Math.Max(0, end - 1 - position);
                    var newline = bytes.AsSpan(from, read - from).IndexOf((byte)'\n');
                    if (newline >= 0)
                    {
                        take = from + newline + 1;
                        done = true;
                    }
                }
                position += take;
                var decoded = carry + decoder.GetChars(bytes, 0, take, chars, carry, flush: false);
                var text = chars.AsSpan(0, decoded);
                var lastComplete = decoded;
                while (lastComplete > 0 && char.IsLetter(text[lastComplete - 1]))
                {
                    lastComplete--;
                }
                counter.CountWords(text[..lastComplete]);
                carry = decoded - lastComplete;
                text[lastComplete..].CopyTo(chars);
            }
            if (carry > 0)
            {
                counter.CountWord(chars.AsSpan(0, carry));
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(bytes);
            ArrayPool<char>.Shared.Return(chars);
        }
    }

    /// <summary>A count's state: references only, so a copy counts into the same table (no boxing, no ref passing).</summary>
    private interface IWordCounter<TSelf> where TSelf : struct, IWordCounter<TSelf>
    {
        static abstract TSelf Create();

        Dictionary<string, long> Counts { get; }

        void CountWords(ReadOnlySpan<char> text);

        void CountWord(ReadOnlySpan<char> word);
    }

    /// <summary>The hand-written count: a char loop and a dictionary looked up by span.</summary>
    private struct DictionaryCounter() : IWordCounter<DictionaryCounter>
    {
        public static DictionaryCounter Create() => new();

        private readonly Dictionary<string, long>.AlternateLookup<ReadOnlySpan<char>> lookup =
            new Dictionary<string, long>(1 << 16, StringComparer.Ordinal).GetAlternateLookup<ReadOnlySpan<char>>();

        public readonly Dictionary<string, long> Counts => lookup.Dictionary;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void CountWords(ReadOnlySpan<char> text)
        {
            var i = 0;
            while (i < text.Length)
            {
                while (i < text.Length && !char.IsLetter(text[i]))
                {
                    i++;
                }
                var start = i;
                while (i < text.Length && char.IsLetter(text[i]))
                {
                    i++;
                }
                if (i > start)
                {
                    CountWord(text[start..i]);
                }
            }
        }

        public readonly void CountWord(ReadOnlySpan<char> word) => CollectionsMarshal.GetValueRefOrAddDefault(lookup, word, out _)++;
    }

    /// <summary>The engine's map kernel.</summary>
    private struct KernelCounter() : IWordCounter<KernelCounter>
    {
        public static KernelCounter Create() => new();

        private readonly CountTable<char> table = new();

        public readonly Dictionary<string, long> Counts
        {
            get
            {
                var counts = new Dictionary<string, long>(table.Count, StringComparer.Ordinal);
                var cursor = 0;
                while (table.Next(ref cursor, out var word, out var total))
                {
                    counts[word.ToString()] = total;
                }
                return counts;
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void CountWords(ReadOnlySpan<char> text)
        {
            var words = new WordTokenizer(text);
            while (words.Next(out var word))
            {
                CountWord(text[word]);
            }
        }

        public readonly void CountWord(ReadOnlySpan<char> word) => table.GetOrAdd(word, out _)++;
    }

    /// <summary>The classic shell pipeline over one or more files; returns false when the tools are missing.</summary>
    public static bool ShellPipeline(IReadOnlyList<string> paths)
    {
        var info = new ProcessStartInfo("bash") { RedirectStandardOutput = true, UseShellExecute = false };
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add("cat \"$@\" | LC_ALL=C tr -cs 'A-Za-z' '\\n' | LC_ALL=C sort | uniq -c > /dev/null");
        info.ArgumentList.Add("bench");
        foreach (var path in paths)
        {
            info.ArgumentList.Add(path);
        }
        using var process = Process.Start(info);
        if (process is null)
        {
            return false;
        }
        process.WaitForExit();
        return process.ExitCode == 0;
    }
}
