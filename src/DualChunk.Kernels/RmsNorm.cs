using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace DualChunk.Kernels;

/// <summary>
/// Edifice's RMSNorm over the last axis: <c>y = x / sqrt(mean(x²) + eps) · γ</c>, eps = 1e-6, no β (the norm of
/// <c>Edifice.Transformer.DecoderOnly</c>'s blocks).
/// </summary>
/// <remarks>
/// Two passes per row. Pass 1 widens the floats to double and sums x² (exact products, double sums). Pass 2 writes
/// <c>y = x · (γ · inv)</c> in float, inv = 1 / sqrt(mean + eps) rounded once to float.
/// Tails: pass 1 takes the last vector overlapping the previous one with the already-summed lanes zeroed; pass 2
/// loads its last (overlapping) vector before storing anything, so <c>y</c> may alias <c>x</c>. Rows narrower than
/// the vector drop to a narrower vector, below 4 to scalar code. One algorithm text for every width
/// (<see cref="ISimdWide{TVec, TVecD}"/>).
/// </remarks>
public static class RmsNorm
{
    /// <summary>Edifice's epsilon for RMSNorm.</summary>
    public const float Epsilon = 1e-6f;

    /// <summary>y[r, :] = RMSNorm(x[r, :]) for <paramref name="rows"/> contiguous rows of <paramref name="width"/>; <paramref name="y"/> may alias <paramref name="x"/>.</summary>
    public static void Run(ReadOnlySpan<float> x, int rows, int width, ReadOnlySpan<float> gamma, Span<float> y)
        => Run(x, rows, width, gamma, y, KernelSelection.Isa);

    /// <summary>Same as the public overload on an explicit path (tests).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Run(ReadOnlySpan<float> x, int rows, int width, ReadOnlySpan<float> gamma, Span<float> y, KernelIsa isa)
    {
        KernelSelection.CheckIsa(isa);
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(width);
        long n = (long)rows * width;
        if (x.Length < n) throw new ArgumentException($"x has {x.Length} floats, {rows}×{width} needed.", nameof(x));
        if (y.Length < n) throw new ArgumentException($"y has {y.Length} floats, {rows}×{width} needed.", nameof(y));
        if (gamma.Length < width) throw new ArgumentException($"gamma has {gamma.Length} floats, {width} needed.", nameof(gamma));
        if (x.Overlaps(y, out int off) && off != 0)
            throw new ArgumentException("x and y overlap without being the same span.", nameof(y));
        ref float g = ref MemoryMarshal.GetReference(gamma);
        for (int r = 0; r < rows; r++)
        {
            ref float xr = ref Unsafe.Add(ref MemoryMarshal.GetReference(x), r * width);
            ref float yr = ref Unsafe.Add(ref MemoryMarshal.GetReference(y), r * width);
            if (isa >= KernelIsa.Vector512 && width >= Vector512<float>.Count) RowVector<V512, Vector512<float>, Vector512<double>>(ref xr, ref g, ref yr, width);
            else if (isa >= KernelIsa.Vector256 && width >= Vector256<float>.Count) RowVector<V256, Vector256<float>, Vector256<double>>(ref xr, ref g, ref yr, width);
            else if (Vector128.IsHardwareAccelerated && width >= Vector128<float>.Count) RowVector<V128, Vector128<float>, Vector128<double>>(ref xr, ref g, ref yr, width);
            else RowScalar(ref xr, ref g, ref yr, width);
        }
    }

    /// <summary>1 / sqrt(mean(x²) + eps) from the double sum of squares.</summary>
    private static float InvRms(double sumSquares, int n) => (float)(1.0 / Math.Sqrt(sumSquares / n + Epsilon));

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RowScalar(ref float x, ref float g, ref float y, int n)
    {
        double ss = 0;
        for (int j = 0; j < n; j++) { double v = Unsafe.Add(ref x, j); ss += v * v; }
        float inv = InvRms(ss, n);
        for (int j = 0; j < n; j++)
            Unsafe.Add(ref y, j) = Unsafe.Add(ref x, j) * (Unsafe.Add(ref g, j) * inv);
    }

    // One text for every width: TSimd is V512, V256 or V128 (see ISimdWide), TVecD its double companion.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RowVector<TSimd, TVec, TVecD>(ref float x, ref float g, ref float y, int n)
        where TSimd : struct, ISimdWide<TVec, TVecD>
        where TVec : struct
        where TVecD : struct
    {
        int w = TSimd.Count;
        TVecD q0 = TSimd.CreateD(0), q1 = q0;
        int j = 0;
        for (; j + w <= n; j += w)
        {
            (TVecD lo, TVecD hi) = TSimd.Widen(TSimd.Load(ref x, (nuint)j));
            q0 = TSimd.MultiplyAddEstimateD(lo, lo, q0);
            q1 = TSimd.MultiplyAddEstimateD(hi, hi, q1);
        }
        if (j != n)
        {
            // Overlapping last vector; lanes below j were summed already, so they become 0.
            TVec fresh = TSimd.LanesFrom(j - (n - w));
            (TVecD lo, TVecD hi) = TSimd.Widen(TSimd.And(fresh, TSimd.Load(ref x, (nuint)(n - w))));
            q0 = TSimd.MultiplyAddEstimateD(lo, lo, q0);
            q1 = TSimd.MultiplyAddEstimateD(hi, hi, q1);
        }
        TVec inv = TSimd.Create(InvRms(TSimd.SumD(TSimd.AddD(q0, q1)), n));

        // Pass 2. The last vector is read before any store: in-place safe.
        nuint lastAt = (nuint)(n - w);
        TVec last = TSimd.Multiply(TSimd.Load(ref x, lastAt), TSimd.Multiply(TSimd.Load(ref g, lastAt), inv));
        for (j = 0; j + w <= n; j += w)
        {
            nuint at = (nuint)j;
            TSimd.Store(TSimd.Multiply(TSimd.Load(ref x, at), TSimd.Multiply(TSimd.Load(ref g, at), inv)), ref y, at);
        }
        if (j != n) TSimd.Store(last, ref y, lastAt);
    }
}
