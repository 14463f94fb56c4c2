using System.Buffers;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;

namespace Queue.Cli;

/// <summary>What the engine is measured against.</summary>
public static class Baselines
{
    /// <summary>
    /// Single-process, single-pass word count, as fast as plain C# goes: large sequential reads,
    /// one decode per buffer, spans for words, and a dictionary looked up by span so a word seen
    /// before costs no allocation. Same tokenisation as the engine's wordcount.
    /// </summary>
    public static Dictionary<string, long> WordCount(string path)
    {
        var counts = new Dictionary<string, long>(1 << 16, StringComparer.Ordinal);
        var lookup = counts.GetAlternateLookup<ReadOnlySpan<char>>();
        using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
        var decoder = Encoding.UTF8.GetDecoder();
        var bytes = ArrayPool<byte>.Shared.Rent(1 << 22);
        var chars = ArrayPool<char>.Shared.Rent((1 << 22) + 4096);
        var carry = 0; // letters of a word cut by the buffer edge, kept at the start of chars
        int read;
        while ((read = file.Read(bytes, 0, 1 << 22)) > 0)
        {
            var decoded = carry + decoder.GetChars(bytes, 0, read, chars, carry, flush: false);
            var text = chars.AsSpan(0, decoded);
            var i = 0;
            var lastComplete = decoded;
            // A trailing run of letters may continue in the next buffer.
            while (lastComplete > 0 && char.IsLetter(text[lastComplete - 1]))
            {
                lastComplete--;
            }
            while (i < lastComplete)
            {
                while (i < lastComplete && !char.IsLetter(text[i]))
                {
                    i++;
                }
                var start = i;
                while (i < lastComplete && char.IsLetter(text[i]))
                {
                    i++;
                }
                if (i > start)
                {
                    CollectionsMarshal.GetValueRefOrAddDefault(lookup, text[start..i], out _)++;
                }
            }
            carry = decoded - lastComplete;
            text[lastComplete..].CopyTo(chars);
        }
        if (carry > 0)
        {
            CollectionsMarshal.GetValueRefOrAddDefault(lookup, chars.AsSpan(0, carry), out _)++;
        }
        ArrayPool<byte>.Shared.Return(bytes);
        ArrayPool<char>.Shared.Return(chars);
        return counts;
    }

    /// <summary>The classic shell pipeline; returns false when the tools are missing.</summary>
    public static bool ShellPipeline(string path)
    {
        var info = new ProcessStartInfo("bash") { RedirectStandardOutput = true, UseShellExecute = false };
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add("LC_ALL=C tr -cs 'A-Za-z' '\\n' < \"$1\" | LC_ALL=C sort | uniq -c > /dev/null");
        info.ArgumentList.Add("bench");
        info.ArgumentList.Add(path);
        using var process = Process.Start(info);
        if (process is null)
        {
            return false;
        }
        process.WaitForExit();
        return process.ExitCode == 0;
    }
}
