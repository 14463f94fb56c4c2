using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Queue.Worker.Execution;

/// <summary>
/// Running totals by key for a summing combiner (as Spark's AppendOnlyMap is for its combiners): the
/// map side's keys are chars, a summing reduce's UTF-8 bytes. Open addressing, each slot holding the
/// key's first and last eight bytes, its length and its total, the keys in one arena. A lookup is one
/// hash of two machine words and, mostly, one slot read, with no call through a comparer and no string
/// per key; the profile showed <c>Dictionary</c>'s span lookup at about half of wordcount's map.
/// </summary>
public sealed class CountTable<T>
    where T : unmanaged, IEquatable<T>
{
    private const int InitialSlots = 1 << 12;
    // Tables kept for the next task: one per busy slot is enough, and a table grown past these sizes
    // (a task with millions of distinct keys) is left to the GC rather than held by an idle worker.
    private const int MaxPooled = 8;
    private const int MaxPooledSlots = 1 << 17;
    private const int MaxPooledArenaElements = 1 << 19;
    private static readonly System.Collections.Concurrent.ConcurrentBag<CountTable<T>> Pool = [];
    // The table in use is slots[0..mask]; a table reused after a bigger task keeps its memory beyond
    // that, unread, so a small task clears and walks a small table (a map task of a fine-grained job has
    // a few thousand keys, and walking and clearing the 4 MB a large task had grown to was a tenth of
    // its worker's time).
    private Slot[] slots = new Slot[InitialSlots];
    private T[] arena = new T[1 << 16];
    private int arenaUsed;
    private int mask = InitialSlots - 1;

    public int Count { get; private set; }

    /// <summary>Memory held for a key: slots at the table's load factor and the key itself.</summary>
    public static int CostOf(int keyLength) => (2 * Unsafe.SizeOf<Slot>()) + (Unsafe.SizeOf<T>() * keyLength);

    /// <summary>Keys of at most this many elements are told apart by their first and last eight bytes and their length alone.</summary>
    private static int Whole => 16 / Unsafe.SizeOf<T>();

    /// <summary>The key's running total, added at 0 when new (<paramref name="added"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public ref long GetOrAdd(ReadOnlySpan<T> key, out bool added)
    {
        Load(key, out var head, out var tail);
        var lengthPlusOne = key.Length + 1;
        var i = (int)Hash(head, tail, key) & mask;
        while (true)
        {
            ref var slot = ref slots[i];
            if (slot.LengthPlusOne == 0)
            {
                added = true;
                return ref Add(ref slot, key, head, tail);
            }
            if (slot.Head == head && slot.Tail == tail && slot.LengthPlusOne == lengthPlusOne
                && (key.Length <= Whole || arena.AsSpan(slot.Offset + (Whole / 2), key.Length - Whole).SequenceEqual(key[(Whole / 2)..^(Whole / 2)])))
            {
                added = false;
                return ref slot.Total;
            }
            i = (i + 1) & mask;
        }
    }

    /// <summary>Walks the entries in no particular order: start with <paramref name="cursor"/> 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public bool Next(ref int cursor, out ReadOnlySpan<T> key, out long total)
    {
        while (cursor <= mask)
        {
            ref var slot = ref slots[cursor++];
            if (slot.LengthPlusOne != 0)
            {
                key = arena.AsSpan(slot.Offset, slot.LengthPlusOne - 1);
                total = slot.Total;
                return true;
            }
        }
        key = default;
        total = 0;
        return false;
    }

    /// <summary>Every key so far, back to back, where <see cref="NextEntry"/>'s offsets point.</summary>
    public ReadOnlySpan<T> Keys => arena.AsSpan(0, arenaUsed);

    /// <summary>Walks the entries as <see cref="Next"/> does, each key as its place in <see cref="Keys"/>.</summary>
    public bool NextEntry(ref int cursor, out int offset, out int length, out long total)
    {
        while (cursor <= mask)
        {
            ref var slot = ref slots[cursor++];
            if (slot.LengthPlusOne != 0)
            {
                (offset, length, total) = (slot.Offset, slot.LengthPlusOne - 1, slot.Total);
                return true;
            }
        }
        (offset, length, total) = (0, 0, 0);
        return false;
    }

    /// <summary>
    /// An empty table, reused from an earlier task when one is free: a new one is 2-3 MB of fresh
    /// large-object memory by the time it has grown, allocated, zeroed and rehashed per map task.
    /// </summary>
    public static CountTable<T> Rent() => Pool.TryTake(out var table) ? table : new CountTable<T>();

    /// <summary>Gives the table back for another task; the caller must not use it again.</summary>
    public static void Return(CountTable<T> table)
    {
        if (table.slots.Length <= MaxPooledSlots && table.arena.Length <= MaxPooledArenaElements && Pool.Count < MaxPooled)
        {
            table.Clear();
            Pool.Add(table);
        }
    }

    /// <summary>
    /// Empties the table, keeping its memory for what comes next, and sizes the table in use for as
    /// many keys as it held (within the memory it has): what the next task of the same job needs.
    /// </summary>
    public void Clear()
    {
        if (Count == 0)
        {
            return;
        }
        var size = mask + 1;
        Array.Clear(slots, 0, size);
        mask = Math.Clamp((int)BitOperations.RoundUpToPowerOf2((uint)Count * 4), InitialSlots, size) - 1;
        arenaUsed = 0;
        Count = 0;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private ref long Add(ref Slot slot, ReadOnlySpan<T> key, ulong head, ulong tail)
    {
        if (arena.Length - arenaUsed < key.Length)
        {
            Array.Resize(ref arena, Math.Max(arena.Length * 2, arenaUsed + key.Length));
        }
        key.CopyTo(arena.AsSpan(arenaUsed));
        slot = new Slot { Head = head, Tail = tail, Offset = arenaUsed, LengthPlusOne = key.Length + 1 };
        arenaUsed += key.Length;
        // Half full at most, so probe runs stay short.
        if (++Count * 2 <= mask + 1)
        {
            return ref slot.Total;
        }
        Grow();
        return ref GetOrAdd(key, out _);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Grow()
    {
        var size = mask + 1;
        Slot[]? scratch = null;
        Span<Slot> old;
        if (size * 2 <= slots.Length)
        {
            // Within memory a bigger task left: the live slots move out to a scratch copy and back.
            scratch = System.Buffers.ArrayPool<Slot>.Shared.Rent(Count);
            var live = 0;
            foreach (ref var slot in slots.AsSpan(0, size))
            {
                if (slot.LengthPlusOne != 0)
                {
                    scratch[live++] = slot;
                }
            }
            old = scratch.AsSpan(0, live);
            Array.Clear(slots, 0, size * 2);
        }
        else
        {
            old = slots.AsSpan(0, size);
            slots = new Slot[size * 2];
        }
        mask = (size * 2) - 1;
        foreach (ref var slot in old)
        {
            if (slot.LengthPlusOne == 0)
            {
                continue;
            }
            var i = (int)Hash(slot.Head, slot.Tail, arena.AsSpan(slot.Offset, slot.LengthPlusOne - 1)) & mask;
            while (slots[i].LengthPlusOne != 0)
            {
                i = (i + 1) & mask;
            }
            slots[i] = slot;
        }
        if (scratch is not null)
        {
            System.Buffers.ArrayPool<Slot>.Shared.Return(scratch);
        }
    }

    /// <summary>The key's first and last eight bytes (overlapping when shorter than sixteen; packed below eight).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Load(ReadOnlySpan<T> key, out ulong head, out ulong tail)
    {
        ref var bytes = ref Unsafe.As<T, byte>(ref MemoryMarshal.GetReference(key));
        var length = key.Length * Unsafe.SizeOf<T>();
        tail = 0;
        if (length >= 8)
        {
            head = Unsafe.ReadUnaligned<ulong>(ref bytes);
            tail = Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref bytes, length - 8));
        }
        else if (length >= 4)
        {
            head = Unsafe.ReadUnaligned<uint>(ref bytes) | ((ulong)Unsafe.ReadUnaligned<uint>(ref Unsafe.Add(ref bytes, length - 4)) << 32);
        }
        else if (length >= 2)
        {
            head = Unsafe.ReadUnaligned<ushort>(ref bytes) | ((ulong)Unsafe.ReadUnaligned<ushort>(ref Unsafe.Add(ref bytes, length - 2)) << 16);
        }
        else
        {
            head = length == 1 ? bytes : 0UL;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong Hash(ulong head, ulong tail, ReadOnlySpan<T> key)
    {
        var h = (head * 0x9E3779B97F4A7C15UL) ^ BitOperations.RotateLeft(tail * 0xC2B2AE3D27D4EB4FUL, 31) ^ (ulong)key.Length;
        if (key.Length > Whole)
        {
            h = HashMiddle(h, key[(Whole / 2)..^(Whole / 2)]);
        }
        h ^= h >> 29;
        h *= 0xBF58476D1CE4E5B9UL;
        return h ^ (h >> 32);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static ulong HashMiddle(ulong h, ReadOnlySpan<T> middle)
    {
        foreach (var c in middle)
        {
            // One of the two branches is compiled for each T.
            h = (h ^ (typeof(T) == typeof(char) ? Unsafe.BitCast<T, char>(c) : (ulong)Unsafe.BitCast<T, byte>(c))) * 0x100000001B3UL;
        }
        return h;
    }

    private struct Slot
    {
        public ulong Head;
        public ulong Tail;
        public long Total;
        public int Offset;
        public int LengthPlusOne; // 0: empty
    }
}
