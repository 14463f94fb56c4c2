using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Queue.Worker.Execution;

/// <summary>
/// Running totals by key for a summing combiner's map side (as Spark's AppendOnlyMap is for its
/// combiners): open addressing, each slot holding the key's first and last four chars, its length
/// and its total, the keys' chars in one arena. A lookup is one hash of two machine words and,
/// mostly, one slot read, with no call through a comparer and no string per key; the profile
/// showed <c>Dictionary</c>'s span lookup at about half of wordcount's map.
/// </summary>
public sealed class CountTable
{
    private const int InitialSlots = 1 << 14;
    // Tables kept for the next task: one per busy slot is enough, and a table grown past these sizes
    // (a task with millions of distinct keys) is left to the GC rather than held by an idle worker.
    private const int MaxPooled = 8;
    private const int MaxPooledSlots = 1 << 17;
    private const int MaxPooledArenaChars = 1 << 19;
    private static readonly System.Collections.Concurrent.ConcurrentBag<CountTable> Pool = [];
    private Slot[] slots = new Slot[InitialSlots];
    private char[] arena = new char[1 << 16];
    private int arenaUsed;
    private int mask = InitialSlots - 1;

    public int Count { get; private set; }

    /// <summary>Memory held for the keys so far: slots at the table's load factor and their chars.</summary>
    public static int CostOf(int keyLength) => (2 * Unsafe.SizeOf<Slot>()) + (2 * keyLength);

    /// <summary>The key's running total, added at 0 when new (<paramref name="added"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public ref long GetOrAdd(ReadOnlySpan<char> key, out bool added)
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
                && (lengthPlusOne <= 9 || arena.AsSpan(slot.Offset + 4, lengthPlusOne - 9).SequenceEqual(key[4..^4])))
            {
                added = false;
                return ref slot.Total;
            }
            i = (i + 1) & mask;
        }
    }

    /// <summary>Walks the entries in no particular order: start with <paramref name="cursor"/> 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public bool Next(ref int cursor, out ReadOnlySpan<char> key, out long total)
    {
        while (cursor < slots.Length)
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

    /// <summary>
    /// An empty table, reused from an earlier task when one is free: a new one is 2-3 MB of fresh
    /// large-object memory by the time it has grown, allocated, zeroed and rehashed per map task.
    /// </summary>
    public static CountTable Rent() => Pool.TryTake(out var table) ? table : new CountTable();

    /// <summary>Gives the table back for another task; the caller must not use it again.</summary>
    public static void Return(CountTable table)
    {
        if (table.slots.Length <= MaxPooledSlots && table.arena.Length <= MaxPooledArenaChars && Pool.Count < MaxPooled)
        {
            table.Clear();
            Pool.Add(table);
        }
    }

    /// <summary>Empties the table, keeping its memory for what comes next.</summary>
    public void Clear()
    {
        if (Count == 0)
        {
            return;
        }
        Array.Clear(slots);
        arenaUsed = 0;
        Count = 0;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private ref long Add(ref Slot slot, ReadOnlySpan<char> key, ulong head, ulong tail)
    {
        if (arena.Length - arenaUsed < key.Length)
        {
            Array.Resize(ref arena, Math.Max(arena.Length * 2, arenaUsed + key.Length));
        }
        key.CopyTo(arena.AsSpan(arenaUsed));
        slot = new Slot { Head = head, Tail = tail, Offset = arenaUsed, LengthPlusOne = key.Length + 1 };
        arenaUsed += key.Length;
        // Half full at most, so probe runs stay short.
        if (++Count * 2 <= slots.Length)
        {
            return ref slot.Total;
        }
        Grow();
        return ref GetOrAdd(key, out _);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Grow()
    {
        var old = slots;
        slots = new Slot[old.Length * 2];
        mask = slots.Length - 1;
        foreach (ref var slot in old.AsSpan())
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
    }

    /// <summary>The first and the last four chars (overlapping when shorter than eight; zero-padded under four).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Load(ReadOnlySpan<char> key, out ulong head, out ulong tail)
    {
        ref var bytes = ref Unsafe.As<char, byte>(ref MemoryMarshal.GetReference(key));
        var length = key.Length;
        if (length >= 4)
        {
            head = Unsafe.ReadUnaligned<ulong>(ref bytes);
            tail = Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref bytes, (length - 4) * 2));
        }
        else if (length >= 2)
        {
            head = Unsafe.ReadUnaligned<uint>(ref bytes) | ((ulong)Unsafe.ReadUnaligned<uint>(ref Unsafe.Add(ref bytes, (length - 2) * 2)) << 32);
            tail = 0;
        }
        else
        {
            head = length == 1 ? Unsafe.ReadUnaligned<ushort>(ref bytes) : 0UL;
            tail = 0;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong Hash(ulong head, ulong tail, ReadOnlySpan<char> key)
    {
        var h = (head * 0x9E3779B97F4A7C15UL) ^ BitOperations.RotateLeft(tail * 0xC2B2AE3D27D4EB4FUL, 31) ^ (ulong)key.Length;
        if (key.Length > 8)
        {
            h = HashMiddle(h, key[4..^4]);
        }
        h ^= h >> 29;
        h *= 0xBF58476D1CE4E5B9UL;
        return h ^ (h >> 32);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static ulong HashMiddle(ulong h, ReadOnlySpan<char> middle)
    {
        foreach (var c in middle)
        {
            h = (h ^ c) * 0x100000001B3UL;
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
