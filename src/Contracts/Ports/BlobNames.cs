using System.Buffers;
using System.Globalization;
using System.Text;

namespace Queue.Contracts.Ports;

/// <summary>
/// The rules for container and blob names, defined once and applied by every blob adapter before it
/// writes anything (and by the ingress, to answer 400 early). They are the union of Azure Blob's rules
/// and a file system's: whatever one adapter accepts, every adapter can store.
/// </summary>
public static class BlobNames
{
    /// <summary>Azure's limit on a blob name.</summary>
    public const int MaxNameLength = 1024;

    /// <summary>Azure's limit on path segments in a blob name.</summary>
    public const int MaxSegments = 254;

    /// <summary>A file name's limit on Linux file systems (NAME_MAX), in UTF-8 bytes.</summary>
    public const int MaxSegmentBytes = 255;

    private static readonly SearchValues<char> ContainerChars = SearchValues.Create("abcdefghijklmnopqrstuvwxyz0123456789-");

    /// <summary>Azure's container rule: 3-63 lowercase letters, digits and single hyphens, starting and ending with a letter or digit.</summary>
    public static bool IsContainerName(string name) =>
        name.Length is >= 3 and <= 63 && !name.AsSpan().ContainsAnyExcept(ContainerChars)
        && name[0] != '-' && name[^1] != '-' && !name.Contains("--", StringComparison.Ordinal);

    public const string ContainerRule = "Container names are 3-63 lowercase letters, digits and single hyphens, starting and ending with a letter or digit.";

    /// <summary>Null when <paramref name="name"/> is a valid blob name; otherwise what is wrong with it.</summary>
    public static string? CheckName(string name)
    {
        if (name.Length == 0)
        {
            return "The blob name is empty.";
        }
        if (name.Length > MaxNameLength)
        {
            return $"Blob names are at most {MaxNameLength} characters.";
        }
        if (name.EndsWith('.'))
        {
            return "Blob names must not end with '.'.";
        }
        return CheckPath(name, allowTrailingSlash: false);
    }

    /// <summary>Null when <paramref name="prefix"/> is a valid listing or input prefix (empty, or a name that may end with '/').</summary>
    public static string? CheckPrefix(string prefix) =>
        prefix.Length == 0 ? null
        : prefix.Length > MaxNameLength ? $"Prefixes are at most {MaxNameLength} characters."
        : CheckPath(prefix, allowTrailingSlash: true);

    /// <summary>Throws <see cref="InvalidBlobNameException"/> unless both names are valid.</summary>
    public static void Validate(string container, string name)
    {
        ValidateContainer(container);
        ValidateName(name);
    }

    /// <summary>Throws <see cref="InvalidBlobNameException"/> unless <paramref name="name"/> is a valid blob name.</summary>
    public static void ValidateName(string name)
    {
        if (CheckName(name) is { } problem)
        {
            throw new InvalidBlobNameException(problem);
        }
    }

    /// <summary>Throws <see cref="InvalidBlobNameException"/> unless <paramref name="container"/> is a container name.</summary>
    public static void ValidateContainer(string container)
    {
        if (!IsContainerName(container))
        {
            throw new InvalidBlobNameException($"'{Printable(container)}' is not a container name. {ContainerRule}");
        }
    }

    /// <summary>Throws <see cref="InvalidBlobNameException"/> unless <paramref name="prefix"/> is a valid listing prefix.</summary>
    public static void ValidatePrefix(string prefix)
    {
        if (CheckPrefix(prefix) is { } problem)
        {
            throw new InvalidBlobNameException(problem);
        }
    }

    /// <summary>The name as a URL path, each segment percent-encoded (for Location headers and links).</summary>
    public static string Escape(string name)
    {
        var builder = new StringBuilder(name.Length + 16);
        foreach (var segment in name.Split('/'))
        {
            if (builder.Length > 0)
            {
                builder.Append('/');
            }
            builder.Append(Uri.EscapeDataString(segment));
        }
        return builder.ToString();
    }

    private static string? CheckPath(string path, bool allowTrailingSlash)
    {
        var segments = path.Split('/');
        var last = allowTrailingSlash && path.EndsWith('/') ? segments.Length - 1 : segments.Length;
        if (last > MaxSegments)
        {
            return $"Blob names have at most {MaxSegments} segments.";
        }
        for (var i = 0; i < last; i++)
        {
            var segment = segments[i];
            if (segment.Length == 0)
            {
                return "Blob names have no empty segments: no leading or trailing '/', no '//'.";
            }
            if (segment is "." or "..")
            {
                return "Blob names have no '.' or '..' segments.";
            }
            if (Encoding.UTF8.GetByteCount(segment) > MaxSegmentBytes)
            {
                return $"Each '/'-separated part of a blob name is at most {MaxSegmentBytes} bytes of UTF-8.";
            }
        }
        for (var i = 0; i < path.Length; i++)
        {
            var c = path[i];
            if (c == '\\')
            {
                return "Blob names use '/' as the separator; '\\' is not allowed.";
            }
            if (char.IsControl(c))
            {
                return "Blob names must not hold control characters.";
            }
            if (char.IsSurrogate(c))
            {
                if (!char.IsSurrogatePair(path, i))
                {
                    return "Blob names must be valid Unicode text.";
                }
                i++;
                continue;
            }
            // Format characters (bidi overrides like U+202E, zero-width marks) make a name display as another.
            if (CharUnicodeInfo.GetUnicodeCategory(c) == UnicodeCategory.Format || c is '\uFFFE' or '\uFFFF')
            {
                return "Blob names must not hold invisible or bidirectional formatting characters.";
            }
            if (c == '%' && i + 2 < path.Length && char.IsAsciiHexDigit(path[i + 1]) && char.IsAsciiHexDigit(path[i + 2]))
            {
                return "Blob names must not hold percent-escapes such as %2F: send the characters themselves (URL-encoded once).";
            }
        }
        return null;
    }

    private static string Printable(string text)
    {
        foreach (var c in text)
        {
            if (char.IsControl(c) || CharUnicodeInfo.GetUnicodeCategory(c) == UnicodeCategory.Format)
            {
                return "(unprintable name)";
            }
        }
        return text.Length > 80 ? text[..80] + "..." : text;
    }
}

/// <summary>A container or blob name breaks <see cref="BlobNames"/>' rules; nothing was written.</summary>
public sealed class InvalidBlobNameException(string message) : ArgumentException(message);

/// <summary>The name clashes with what is stored (a blob where a folder of blobs is, or under another blob); nothing was written.</summary>
public sealed class BlobConflictException(string message) : Exception(message);
