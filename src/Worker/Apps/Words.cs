namespace Queue.Worker.Apps;

/// <summary>The tokenisation the built-in apps share: a word is a maximal run of letters (<see cref="char.IsLetter(char)"/>).</summary>
public static class Words
{
    /// <summary>Finds the next word at or after <paramref name="position"/>; advances past it.</summary>
    public static bool Next(ReadOnlySpan<char> text, ref int position, out Range word)
    {
        var i = position;
        while (i < text.Length && !char.IsLetter(text[i]))
        {
            i++;
        }
        var start = i;
        while (i < text.Length && char.IsLetter(text[i]))
        {
            i++;
        }
        position = i;
        word = start..i;
        return i > start;
    }
}
