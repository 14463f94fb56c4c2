namespace Queue.Contracts.IO;

/// <summary>A read-only view of the next <c>length</c> bytes of an inner stream, which it owns.</summary>
public sealed class ReadLimitStream(Stream inner, long length) : ReadOnlyWrapperStream(inner)
{
    private long remaining = length;

    public override int Read(Span<byte> buffer)
    {
        if (remaining <= 0)
        {
            return 0;
        }
        var read = Inner.Read(buffer[..(int)Math.Min(buffer.Length, remaining)]);
        remaining -= read;
        return read;
    }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (remaining <= 0)
        {
            return 0;
        }
        var read = await Inner.ReadAsync(buffer[..(int)Math.Min(buffer.Length, remaining)], cancellationToken);
        remaining -= read;
        return read;
    }
}
