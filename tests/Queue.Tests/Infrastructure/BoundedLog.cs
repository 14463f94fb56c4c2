using System.Text;

namespace Queue.Tests.Infrastructure;

/// <summary>The tail of a child process's output, for failure messages; long runs must not grow memory without bound.</summary>
public sealed class BoundedLog(int maxChars = 1_000_000)
{
    private readonly StringBuilder text = new();

    public void Append(string? line)
    {
        if (line is null)
        {
            return;
        }
        lock (text)
        {
            if (text.Length > maxChars)
            {
                text.Remove(0, maxChars / 2);
            }
            text.AppendLine(line);
        }
    }

    public override string ToString()
    {
        lock (text)
        {
            return text.ToString();
        }
    }
}
