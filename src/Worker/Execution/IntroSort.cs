using System.Numerics;
using System.Runtime.CompilerServices;

namespace Queue.Worker.Execution;

/// <summary>
/// Introsort (quicksort on a median of three, heap sort past a depth limit, insertion sort for short
/// runs) for the sort buffer's index. <c>Span.Sort</c> would do, but its code for a struct of ours is
/// JIT-compiled at tier 0 and, with tiered PGO, stays unoptimised through a process's first jobs
/// (the sort then took 3.5× as long); this one is compiled optimised on its first call.
/// </summary>
public static class IntroSort
{
    private const int InsertionSortMax = 16;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Sort<T, TComparer>(Span<T> items, TComparer comparer)
        where TComparer : struct, IComparer<T>
    {
        if (items.Length > 1)
        {
            Sort(items, comparer, 2 * (BitOperations.Log2((uint)items.Length) + 1));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Sort<T, TComparer>(Span<T> items, TComparer comparer, int depth)
        where TComparer : struct, IComparer<T>
    {
        while (items.Length > InsertionSortMax)
        {
            if (depth-- == 0)
            {
                HeapSort(items, comparer);
                return;
            }
            var pivot = Partition(items, comparer);
            // Recurse into the smaller side and loop on the larger: the stack stays O(log n).
            if (pivot < items.Length - pivot)
            {
                Sort(items[..pivot], comparer, depth);
                items = items[(pivot + 1)..];
            }
            else
            {
                Sort(items[(pivot + 1)..], comparer, depth);
                items = items[..pivot];
            }
        }
        InsertionSort(items, comparer);
    }

    /// <summary>Orders the items around the median of the first, middle and last; returns the pivot's index. Needs three items or more.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int Partition<T, TComparer>(Span<T> items, TComparer comparer)
        where TComparer : struct, IComparer<T>
    {
        var hi = items.Length - 1;
        var middle = hi >> 1;
        SwapIfGreater(items, comparer, 0, middle);
        SwapIfGreater(items, comparer, 0, hi);
        SwapIfGreater(items, comparer, middle, hi);
        var pivot = items[middle];
        Swap(items, middle, hi - 1);
        int left = 0, right = hi - 1;
        // items[0] <= pivot <= items[hi]: both scans stop inside the span.
        while (left < right)
        {
            while (comparer.Compare(items[++left], pivot) < 0)
            {
            }
            while (comparer.Compare(pivot, items[--right]) < 0)
            {
            }
            if (left >= right)
            {
                break;
            }
            Swap(items, left, right);
        }
        if (left != hi - 1)
        {
            Swap(items, left, hi - 1);
        }
        return left;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void HeapSort<T, TComparer>(Span<T> items, TComparer comparer)
        where TComparer : struct, IComparer<T>
    {
        for (var i = (items.Length / 2) - 1; i >= 0; i--)
        {
            SiftDown(items, comparer, i, items.Length);
        }
        for (var n = items.Length - 1; n > 0; n--)
        {
            Swap(items, 0, n);
            SiftDown(items, comparer, 0, n);
        }
    }

    private static void SiftDown<T, TComparer>(Span<T> items, TComparer comparer, int i, int n)
        where TComparer : struct, IComparer<T>
    {
        var item = items[i];
        while (true)
        {
            var child = (2 * i) + 1;
            if (child >= n)
            {
                break;
            }
            if (child + 1 < n && comparer.Compare(items[child], items[child + 1]) < 0)
            {
                child++;
            }
            if (comparer.Compare(item, items[child]) >= 0)
            {
                break;
            }
            items[i] = items[child];
            i = child;
        }
        items[i] = item;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void InsertionSort<T, TComparer>(Span<T> items, TComparer comparer)
        where TComparer : struct, IComparer<T>
    {
        for (var i = 1; i < items.Length; i++)
        {
            var item = items[i];
            var j = i - 1;
            while (j >= 0 && comparer.Compare(item, items[j]) < 0)
            {
                items[j + 1] = items[j];
                j--;
            }
            items[j + 1] = item;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SwapIfGreater<T, TComparer>(Span<T> items, TComparer comparer, int i, int j)
        where TComparer : struct, IComparer<T>
    {
        if (comparer.Compare(items[i], items[j]) > 0)
        {
            Swap(items, i, j);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Swap<T>(Span<T> items, int i, int j) => (items[i], items[j]) = (items[j], items[i]);
}
