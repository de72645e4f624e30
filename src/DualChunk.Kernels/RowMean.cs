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
/// vectors, below 4 to scalar code. The vector path is one algorithm text, generic over the width
/// (<see cref="ISimdWide{TVec, TVecD}"/>).
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
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Run(ReadOnlySpan<float> x, int rows, int ldx, int width, int group, Span<float> means, int ldm, KernelIsa isa)
    {
        KernelSelection.CheckIsa(isa);
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
            if (isa >= KernelIsa.Vector512 && width >= Vector512<float>.Count) GroupVector<V512, Vector512<float>, Vector512<double>>(ref xg, ldx, width, group, ref mg);
            else if (isa >= KernelIsa.Vector256 && width >= Vector256<float>.Count) GroupVector<V256, Vector256<float>, Vector256<double>>(ref xg, ldx, width, group, ref mg);
            else if (Vector128.IsHardwareAccelerated && width >= Vector128<float>.Count) GroupVector<V128, Vector128<float>, Vector128<double>>(ref xg, ldx, width, group, ref mg);
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

    // One text for every width: TSimd is V512, V256 or V128 (see ISimdWide), TVecD its double companion.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void GroupVector<TSimd, TVec, TVecD>(ref float x, int ldx, int width, int group, ref float m)
        where TSimd : struct, ISimdWide<TVec, TVecD>
        where TVec : struct
        where TVecD : struct
    {
        int w = TSimd.Count;
        TVecD invGroup = TSimd.CreateD(1.0 / group);
        TVecD zero = TSimd.CreateD(0);
        // Vectors per row visit in the blocked loop (a JIT-time constant per width; the unused slots below fold away).
        // 256-bit: two vectors (one 64-byte line) per row visit, so each line is fetched once (rows at a stride of
        // 3H floats fall into few L1 sets; docs/performance-notes.md "Row means").
        // 512-bit: four vectors (four adjacent 64-byte lines) per row visit, so each row is read in runs the
        // prefetcher follows. 128-bit: no blocked loop. Even and odd rows go to separate accumulators as in the
        // one-vector loop below (same sums).
        int k = w == 16 ? 4 : w == 8 ? 2 : 1;
        int c0 = 0;
        if (k > 1)
        {
            for (; c0 + k * w <= width; c0 += k * w)
            {
                ref float xc = ref Unsafe.Add(ref x, c0);
                TVecD a0 = zero, b0 = zero, a1 = zero, b1 = zero, a2 = zero, b2 = zero, a3 = zero, b3 = zero; // even rows
                TVecD e0 = zero, f0 = zero, e1 = zero, f1 = zero, e2 = zero, f2 = zero, e3 = zero, f3 = zero; // odd rows
                int r = 0;
                for (; r + 2 <= group; r += 2)
                {
                    ref float row0 = ref Unsafe.Add(ref xc, (nint)r * ldx);
                    ref float row1 = ref Unsafe.Add(ref xc, (nint)(r + 1) * ldx);
                    (TVecD p, TVecD q) = TSimd.Widen(TSimd.Load(ref row0, 0));
                    a0 = TSimd.AddD(a0, p); b0 = TSimd.AddD(b0, q);
                    (p, q) = TSimd.Widen(TSimd.Load(ref row0, (nuint)w));
                    a1 = TSimd.AddD(a1, p); b1 = TSimd.AddD(b1, q);
                    if (k > 2)
                    {
                        (p, q) = TSimd.Widen(TSimd.Load(ref row0, (nuint)(2 * w)));
                        a2 = TSimd.AddD(a2, p); b2 = TSimd.AddD(b2, q);
                        (p, q) = TSimd.Widen(TSimd.Load(ref row0, (nuint)(3 * w)));
                        a3 = TSimd.AddD(a3, p); b3 = TSimd.AddD(b3, q);
                    }
                    (p, q) = TSimd.Widen(TSimd.Load(ref row1, 0));
                    e0 = TSimd.AddD(e0, p); f0 = TSimd.AddD(f0, q);
                    (p, q) = TSimd.Widen(TSimd.Load(ref row1, (nuint)w));
                    e1 = TSimd.AddD(e1, p); f1 = TSimd.AddD(f1, q);
                    if (k > 2)
                    {
                        (p, q) = TSimd.Widen(TSimd.Load(ref row1, (nuint)(2 * w)));
                        e2 = TSimd.AddD(e2, p); f2 = TSimd.AddD(f2, q);
                        (p, q) = TSimd.Widen(TSimd.Load(ref row1, (nuint)(3 * w)));
                        e3 = TSimd.AddD(e3, p); f3 = TSimd.AddD(f3, q);
                    }
                }
                if (r < group)
                {
                    ref float row0 = ref Unsafe.Add(ref xc, (nint)r * ldx);
                    (TVecD p, TVecD q) = TSimd.Widen(TSimd.Load(ref row0, 0));
                    a0 = TSimd.AddD(a0, p); b0 = TSimd.AddD(b0, q);
                    (p, q) = TSimd.Widen(TSimd.Load(ref row0, (nuint)w));
                    a1 = TSimd.AddD(a1, p); b1 = TSimd.AddD(b1, q);
                    if (k > 2)
                    {
                        (p, q) = TSimd.Widen(TSimd.Load(ref row0, (nuint)(2 * w)));
                        a2 = TSimd.AddD(a2, p); b2 = TSimd.AddD(b2, q);
                        (p, q) = TSimd.Widen(TSimd.Load(ref row0, (nuint)(3 * w)));
                        a3 = TSimd.AddD(a3, p); b3 = TSimd.AddD(b3, q);
                    }
                }
                TSimd.Store(TSimd.Narrow(TSimd.MultiplyD(TSimd.AddD(a0, e0), invGroup), TSimd.MultiplyD(TSimd.AddD(b0, f0), invGroup)), ref m, (nuint)c0);
                TSimd.Store(TSimd.Narrow(TSimd.MultiplyD(TSimd.AddD(a1, e1), invGroup), TSimd.MultiplyD(TSimd.AddD(b1, f1), invGroup)), ref m, (nuint)(c0 + w));
                if (k > 2)
                {
                    TSimd.Store(TSimd.Narrow(TSimd.MultiplyD(TSimd.AddD(a2, e2), invGroup), TSimd.MultiplyD(TSimd.AddD(b2, f2), invGroup)), ref m, (nuint)(c0 + 2 * w));
                    TSimd.Store(TSimd.Narrow(TSimd.MultiplyD(TSimd.AddD(a3, e3), invGroup), TSimd.MultiplyD(TSimd.AddD(b3, f3), invGroup)), ref m, (nuint)(c0 + 3 * w));
                }
            }
            if (c0 == width) return;
        }
        for (int c = c0; ; c += w)
        {
            int at = Math.Min(c, width - w); // the last vector overlaps and recomputes the same means
            ref float xc = ref Unsafe.Add(ref x, at);
            TVecD lo0 = zero, hi0 = zero, lo1 = zero, hi1 = zero;
            int r = 0;
            for (; r + 2 <= group; r += 2)
            {
                (TVecD a, TVecD b) = TSimd.Widen(TSimd.Load(ref xc, (nuint)((nint)r * ldx)));
                (TVecD e, TVecD f) = TSimd.Widen(TSimd.Load(ref xc, (nuint)((nint)(r + 1) * ldx)));
                lo0 = TSimd.AddD(lo0, a); hi0 = TSimd.AddD(hi0, b); lo1 = TSimd.AddD(lo1, e); hi1 = TSimd.AddD(hi1, f);
            }
            if (r < group)
            {
                (TVecD a, TVecD b) = TSimd.Widen(TSimd.Load(ref xc, (nuint)((nint)r * ldx)));
                lo0 = TSimd.AddD(lo0, a); hi0 = TSimd.AddD(hi0, b);
            }
            TSimd.Store(TSimd.Narrow(TSimd.MultiplyD(TSimd.AddD(lo0, lo1), invGroup), TSimd.MultiplyD(TSimd.AddD(hi0, hi1), invGroup)), ref m, (nuint)at);
            if (c + w >= width) break;
        }
    }
}
