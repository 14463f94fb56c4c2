using System.Buffers;
using System.Runtime.CompilerServices;

namespace Queue.Worker.Execution;

/// <summary>
/// The data path's arrays. Those under a MiB come from <see cref="ArrayPool{T}.Shared"/>; larger ones
/// (sort buffers and their index, a reduce's segment arena, split chunks) from a pool that keeps at most a few
/// arrays of each size and caches none per thread. The shared pool keeps one array of each size per
/// thread and several per core, and trims them only after a full collection: a worker's 64 MiB sort
/// buffers and 16 MiB segments piled up across its thread pool (700 MiB still held after one 1 GB
/// sort), and under a 768 MiB heap limit, as a container's limit sets, the next sort failed with
/// <see cref="OutOfMemoryException"/>. Arrays go back by size, so either pool may take what the other
/// rented.
/// </summary>
public static class PooledArrays<T>
{
    private const int LargeBytes = 1 << 20;

    // As many of each size as a worker's slots use at once on this machine; more are allocated and left to the GC.
    private static readonly ArrayPool<T> Large = ArrayPool<T>.Create(1 << 30, Math.Max(2, Environment.ProcessorCount));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static T[] Rent(int length) => (long)length * Unsafe.SizeOf<T>() < LargeBytes ? ArrayPool<T>.Shared.Rent(length) : Large.Rent(length);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Return(T[] array)
    {
        if ((long)array.Length * Unsafe.SizeOf<T>() < LargeBytes)
        {
            ArrayPool<T>.Shared.Return(array);
        }
        else if (array.Length <= 1 << 30 && System.Numerics.BitOperations.IsPow2(array.Length))
        {
            Large.Return(array);
        }
        // Anything else (not from a pool) is left to the GC.
    }
}
