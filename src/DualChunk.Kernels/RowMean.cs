using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace DualChunk.Kernels;

/// <summary>Means of consecutive groups of rows: chunk summaries and mean pooling.</summary>
/// <remarks>
/// Vectorized over columns: each vector of columns is summed down the group's rows in double (the floats are
/// widened, two rows in flight), so long groups (mean pooling over thousands of positions) lose nothing to
/// float accumulation; the mean is rounded to float once. The last column vector overlaps the previous one and
/// rewrites the same values, so <c>means</c> must not overlap <c>x</c>. Widths below the vector drop to narrower
/// vectors, below 4 to scalar code. The Vector128/256/512 sections are one algorithm text instantiated per width.
/// </remarks>
public static class RowMean
{
    /// <summary>
    /// For g in [0, rows / group): means[g * ldm + j] = mean over the <paramref name="group"/> rows
    /// g*group .. g*group+group-1 of x[row * ldx + j], for j in [0, width).
    /// </summary>
    public static void Run(ReadOnlySpan<float> x, int rows, int ldx, int width, int group, Span<float> means, int ldm)
        => Run(x, rows, ldx, width, group, means, ldm, KernelSelection.Isa);

    /// <summary>Same as the public overload on an explicit path (tests).</summary>
    internal static void Run(ReadOnlySpan<float> x, int rows, int ldx, int width, int group, Span<float> means, int ldm, KernelIsa isa)
    {
        ElementwiseDriver.CheckIsa(isa);
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(width);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(group);
        int groups = rows / group;
        if (groups == 0) return;
        int used = groups * group;
        if (used > 1 && ldx < width) throw new ArgumentException($"ldx {ldx} is smaller than the width {width}.", nameof(ldx));
        if (groups > 1 && ldm < width) throw new ArgumentException($"ldm {ldm} is smaller than the width {width}.", nameof(ldm));
        if (x.Length < (long)(used - 1) * ldx + width)
            throw new ArgumentException($"x has {x.Length} floats; {used} rows of {width} at stride {ldx} need {(long)(used - 1) * ldx + width}.", nameof(x));
        if (means.Length < (long)(groups - 1) * ldm + width)
            throw new ArgumentException($"means has {means.Length} floats; {groups} rows of {width} at stride {ldm} need {(long)(groups - 1) * ldm + width}.", nameof(means));
        if (x.Overlaps(means))
            throw new ArgumentException("means must not overlap x.", nameof(means));
        for (int gi = 0; gi < groups; gi++)
        {
            ref float xg = ref Unsafe.Add(ref MemoryMarshal.GetReference(x), (nint)gi * group * ldx);
            ref float mg = ref Unsafe.Add(ref MemoryMarshal.GetReference(means), (nint)gi * ldm);
            if (isa >= KernelIsa.Vector512 && width >= Vector512<float>.Count) Group512(ref xg, ldx, width, group, ref mg);
            else if (isa >= KernelIsa.Vector256 && width >= Vector256<float>.Count) Group256(ref xg, ldx, width, group, ref mg);
            else if (Vector128.IsHardwareAccelerated && width >= Vector128<float>.Count) Group128(ref xg, ldx, width, group, ref mg);
            else
            {
                for (int j = 0; j < width; j++)
                {
                    double s = 0;
                    for (int r = 0; r < group; r++) s += Unsafe.Add(ref xg, (nint)r * ldx + j);
                    Unsafe.Add(ref mg, j) = (float)(s / group);
                }
            }
        }
    }

    /// <summary>Scalar twin in double, the tests' reference.</summary>
    public static void Scalar(ReadOnlySpan<float> x, int rows, int ldx, int width, int group, Span<float> means, int ldm)
    {
        for (int g = 0; g < rows / group; g++)
        {
            for (int j = 0; j < width; j++)
            {
                double s = 0;
                for (int r = 0; r < group; r++)
                    s += x[(g * group + r) * ldx + j];
                means[g * ldm + j] = (float)(s / group);
            }
        }
    }

    private static void Group128(ref float x, int ldx, int width, int group, ref float m)
    {
        int w = Vector128<float>.Count;
        Vector128<double> invGroup = Vector128.Create(1.0 / group);
        for (int c = 0; ; c += w)
        {
            int at = Math.Min(c, width - w); // the last vector overlaps and recomputes the same means
            ref float xc = ref Unsafe.Add(ref x, at);
            Vector128<double> lo0 = Vector128<double>.Zero, hi0 = lo0, lo1 = lo0, hi1 = lo0;
            int r = 0;
            for (; r + 2 <= group; r += 2)
            {
                (Vector128<double> a, Vector128<double> b) = Vector128.Widen(Vector128.LoadUnsafe(ref xc, (nuint)((nint)r * ldx)));
                (Vector128<double> e, Vector128<double> f) = Vector128.Widen(Vector128.LoadUnsafe(ref xc, (nuint)((nint)(r + 1) * ldx)));
                lo0 += a; hi0 += b; lo1 += e; hi1 += f;
            }
            if (r < group)
            {
                (Vector128<double> a, Vector128<double> b) = Vector128.Widen(Vector128.LoadUnsafe(ref xc, (nuint)((nint)r * ldx)));
                lo0 += a; hi0 += b;
            }
            Vector128.Narrow((lo0 + lo1) * invGroup, (hi0 + hi1) * invGroup).StoreUnsafe(ref m, (nuint)at);
            if (c + w >= width) break;
        }
    }

    private static void Group256(ref float x, int ldx, int width, int group, ref float m)
    {
        int w = Vector256<float>.Count;
        Vector256<double> invGroup = Vector256.Create(1.0 / group);
        // Two vectors (one 64-byte line) per row visit: walking the group's rows for one 32-byte vector at a time
        // fetched every line twice, and rows at a stride of 3H floats (3 KB) fall into few L1 sets, so the second
        // fetch came from L2 (config d's summaries ran 6× slower than on the 512-bit path).
        int c0 = 0;
        for (; c0 + 2 * w <= width; c0 += 2 * w)
        {
            ref float xc = ref Unsafe.Add(ref x, c0);
            Vector256<double> lo0 = Vector256<double>.Zero, hi0 = lo0, lo1 = lo0, hi1 = lo0, lo2 = lo0, hi2 = lo0, lo3 = lo0, hi3 = lo0;
            int r = 0;
            for (; r + 2 <= group; r += 2)
            {
                ref float row0 = ref Unsafe.Add(ref xc, (nint)r * ldx);
                ref float row1 = ref Unsafe.Add(ref xc, (nint)(r + 1) * ldx);
                (Vector256<double> a, Vector256<double> b) = Vector256.Widen(Vector256.LoadUnsafe(ref row0));
                (Vector256<double> e, Vector256<double> f) = Vector256.Widen(Vector256.LoadUnsafe(ref row0, (nuint)w));
                (Vector256<double> g, Vector256<double> h) = Vector256.Widen(Vector256.LoadUnsafe(ref row1));
                (Vector256<double> i, Vector256<double> j) = Vector256.Widen(Vector256.LoadUnsafe(ref row1, (nuint)w));
                lo0 += a; hi0 += b; lo2 += e; hi2 += f; lo1 += g; hi1 += h; lo3 += i; hi3 += j;
            }
            if (r < group)
            {
                ref float row0 = ref Unsafe.Add(ref xc, (nint)r * ldx);
                (Vector256<double> a, Vector256<double> b) = Vector256.Widen(Vector256.LoadUnsafe(ref row0));
                (Vector256<double> e, Vector256<double> f) = Vector256.Widen(Vector256.LoadUnsafe(ref row0, (nuint)w));
                lo0 += a; hi0 += b; lo2 += e; hi2 += f;
            }
            Vector256.Narrow((lo0 + lo1) * invGroup, (hi0 + hi1) * invGroup).StoreUnsafe(ref m, (nuint)c0);
            Vector256.Narrow((lo2 + lo3) * invGroup, (hi2 + hi3) * invGroup).StoreUnsafe(ref m, (nuint)(c0 + w));
        }
        if (c0 == width) return;
        for (int c = c0; ; c += w)
        {
            int at = Math.Min(c, width - w); // the last vector overlaps and recomputes the same means
            ref float xc = ref Unsafe.Add(ref x, at);
            Vector256<double> lo0 = Vector256<double>.Zero, hi0 = lo0, lo1 = lo0, hi1 = lo0;
            int r = 0;
            for (; r + 2 <= group; r += 2)
            {
                (Vector256<double> a, Vector256<double> b) = Vector256.Widen(Vector256.LoadUnsafe(ref xc, (nuint)((nint)r * ldx)));
                (Vector256<double> e, Vector256<double> f) = Vector256.Widen(Vector256.LoadUnsafe(ref xc, (nuint)((nint)(r + 1) * ldx)));
                lo0 += a; hi0 += b; lo1 += e; hi1 += f;
            }
            if (r < group)
            {
                (Vector256<double> a, Vector256<double> b) = Vector256.Widen(Vector256.LoadUnsafe(ref xc, (nuint)((nint)r * ldx)));
                lo0 += a; hi0 += b;
            }
            Vector256.Narrow((lo0 + lo1) * invGroup, (hi0 + hi1) * invGroup).StoreUnsafe(ref m, (nuint)at);
            if (c + w >= width) break;
        }
    }

    private static void Group512(ref float x, int ldx, int width, int group, ref float m)
    {
        int w = Vector512<float>.Count;
        Vector512<double> invGroup = Vector512.Create(1.0 / group);
        // Four vectors (four adjacent 64-byte lines) per row visit, so each row is read in runs the prefetcher
        // follows; even and odd rows in separate accumulators as in the one-vector loop below (same sums).
        int c0 = 0;
        for (; c0 + 4 * w <= width; c0 += 4 * w)
        {
            ref float xc = ref Unsafe.Add(ref x, c0);
            Vector512<double> a0 = Vector512<double>.Zero, b0 = a0, a1 = a0, b1 = a0, a2 = a0, b2 = a0, a3 = a0, b3 = a0;
            Vector512<double> e0 = a0, f0 = a0, e1 = a0, f1 = a0, e2 = a0, f2 = a0, e3 = a0, f3 = a0;
            int r = 0;
            for (; r + 2 <= group; r += 2)
            {
                ref float row0 = ref Unsafe.Add(ref xc, (nint)r * ldx);
                ref float row1 = ref Unsafe.Add(ref xc, (nint)(r + 1) * ldx);
                (Vector512<double> p, Vector512<double> q) = Vector512.Widen(Vector512.LoadUnsafe(ref row0));
                a0 += p; b0 += q;
                (p, q) = Vector512.Widen(Vector512.LoadUnsafe(ref row0, (nuint)w));
                a1 += p; b1 += q;
                (p, q) = Vector512.Widen(Vector512.LoadUnsafe(ref row0, (nuint)(2 * w)));
                a2 += p; b2 += q;
                (p, q) = Vector512.Widen(Vector512.LoadUnsafe(ref row0, (nuint)(3 * w)));
                a3 += p; b3 += q;
                (p, q) = Vector512.Widen(Vector512.LoadUnsafe(ref row1));
                e0 += p; f0 += q;
                (p, q) = Vector512.Widen(Vector512.LoadUnsafe(ref row1, (nuint)w));
                e1 += p; f1 += q;
                (p, q) = Vector512.Widen(Vector512.LoadUnsafe(ref row1, (nuint)(2 * w)));
                e2 += p; f2 += q;
                (p, q) = Vector512.Widen(Vector512.LoadUnsafe(ref row1, (nuint)(3 * w)));
                e3 += p; f3 += q;
            }
            if (r < group)
            {
                ref float row0 = ref Unsafe.Add(ref xc, (nint)r * ldx);
                (Vector512<double> p, Vector512<double> q) = Vector512.Widen(Vector512.LoadUnsafe(ref row0));
                a0 += p; b0 += q;
                (p, q) = Vector512.Widen(Vector512.LoadUnsafe(ref row0, (nuint)w));
                a1 += p; b1 += q;
                (p, q) = Vector512.Widen(Vector512.LoadUnsafe(ref row0, (nuint)(2 * w)));
                a2 += p; b2 += q;
                (p, q) = Vector512.Widen(Vector512.LoadUnsafe(ref row0, (nuint)(3 * w)));
                a3 += p; b3 += q;
            }
            Vector512.Narrow((a0 + e0) * invGroup, (b0 + f0) * invGroup).StoreUnsafe(ref m, (nuint)c0);
            Vector512.Narrow((a1 + e1) * invGroup, (b1 + f1) * invGroup).StoreUnsafe(ref m, (nuint)(c0 + w));
            Vector512.Narrow((a2 + e2) * invGroup, (b2 + f2) * invGroup).StoreUnsafe(ref m, (nuint)(c0 + 2 * w));
            Vector512.Narrow((a3 + e3) * invGroup, (b3 + f3) * invGroup).StoreUnsafe(ref m, (nuint)(c0 + 3 * w));
        }
        if (c0 == width) return;
        for (int c = c0; ; c += w)
        {
            int at = Math.Min(c, width - w); // the last vector overlaps and recomputes the same means
            ref float xc = ref Unsafe.Add(ref x, at);
            Vector512<double> lo0 = Vector512<double>.Zero, hi0 = lo0, lo1 = lo0, hi1 = lo0;
            int r = 0;
            for (; r + 2 <= group; r += 2)
            {
                (Vector512<double> a, Vector512<double> b) = Vector512.Widen(Vector512.LoadUnsafe(ref xc, (nuint)((nint)r * ldx)));
                (Vector512<double> e, Vector512<double> f) = Vector512.Widen(Vector512.LoadUnsafe(ref xc, (nuint)((nint)(r + 1) * ldx)));
                lo0 += a; hi0 += b; lo1 += e; hi1 += f;
            }
            if (r < group)
            {
                (Vector512<double> a, Vector512<double> b) = Vector512.Widen(Vector512.LoadUnsafe(ref xc, (nuint)((nint)r * ldx)));
                lo0 += a; hi0 += b;
            }
            Vector512.Narrow((lo0 + lo1) * invGroup, (hi0 + hi1) * invGroup).StoreUnsafe(ref m, (nuint)at);
            if (c + w >= width) break;
        }
    }
}
