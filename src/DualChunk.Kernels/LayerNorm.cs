using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace DualChunk.Kernels;

/// <summary>
/// Axon's layer norm over the last axis: biased variance, eps = 1e-5, and Axon's clip
/// <c>scale = γ · (var &gt;= eps ? rsqrt(var + eps) : rsqrt(eps))</c> (NaN variance takes the clip branch).
/// </summary>
/// <remarks>
/// Two passes per row. Pass 1 widens the floats to double and sums d = x − x[0] and d² (x[0] as a shift keeps the
/// one-pass variance free of cancellation for rows whose mean is large against their spread; the float→double
/// differences are exact). Pass 2 writes <c>y = (x − mean)·(γ·inv) + β</c> in float with one FMA.
/// Tails: pass 1 takes the last vector overlapping the previous one, with the already-summed lanes replaced by x[0]
/// (d = 0); pass 2 loads its last (overlapping) vector before storing anything, so <c>y</c> may alias <c>x</c>.
/// Rows narrower than the vector drop to a narrower vector, below 4 to scalar code.
/// The vector path is one algorithm text, generic over the width (<see cref="ISimdWide{TVec, TVecD}"/>).
/// </remarks>
public static class LayerNorm
{
    /// <summary>Axon's epsilon.</summary>
    public const float Epsilon = 1e-5f;

    /// <summary>y[r, :] = LN(x[r, :]) for <paramref name="rows"/> contiguous rows of <paramref name="width"/>; <paramref name="y"/> may alias <paramref name="x"/>.</summary>
    public static void Run(ReadOnlySpan<float> x, int rows, int width, ReadOnlySpan<float> gamma, ReadOnlySpan<float> beta, Span<float> y)
        => Run(x, rows, width, gamma, beta, y, KernelSelection.Isa);

    /// <summary>Same as the public overload on an explicit path (tests).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Run(ReadOnlySpan<float> x, int rows, int width, ReadOnlySpan<float> gamma, ReadOnlySpan<float> beta, Span<float> y, KernelIsa isa)
    {
        KernelSelection.CheckIsa(isa);
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(width);
        long n = (long)rows * width;
        if (x.Length < n) throw new ArgumentException($"x has {x.Length} floats, {rows}×{width} needed.", nameof(x));
        if (y.Length < n) throw new ArgumentException($"y has {y.Length} floats, {rows}×{width} needed.", nameof(y));
        if (gamma.Length < width) throw new ArgumentException($"gamma has {gamma.Length} floats, {width} needed.", nameof(gamma));
        if (beta.Length < width) throw new ArgumentException($"beta has {beta.Length} floats, {width} needed.", nameof(beta));
        if (x.Overlaps(y, out int off) && off != 0)
            throw new ArgumentException("x and y overlap without being the same span.", nameof(y));
        ref float g = ref MemoryMarshal.GetReference(gamma);
        ref float b = ref MemoryMarshal.GetReference(beta);
        for (int r = 0; r < rows; r++)
        {
            ref float xr = ref Unsafe.Add(ref MemoryMarshal.GetReference(x), r * width);
            ref float yr = ref Unsafe.Add(ref MemoryMarshal.GetReference(y), r * width);
            if (isa >= KernelIsa.Vector512 && width >= Vector512<float>.Count) RowVector<V512, Vector512<float>, Vector512<double>>(ref xr, ref g, ref b, ref yr, width);
            else if (isa >= KernelIsa.Vector256 && width >= Vector256<float>.Count) RowVector<V256, Vector256<float>, Vector256<double>>(ref xr, ref g, ref b, ref yr, width);
            else if (Vector128.IsHardwareAccelerated && width >= Vector128<float>.Count) RowVector<V128, Vector128<float>, Vector128<double>>(ref xr, ref g, ref b, ref yr, width);
            else RowScalar(ref xr, ref g, ref b, ref yr, width);
        }
    }

    /// <summary>Axon's clipped inverse standard deviation from the shifted sums (in double).</summary>
    private static float InvStd(double sumD, double sumD2, int n)
    {
        double var = (sumD2 - sumD * sumD / n) / n;
        return (float)(var >= Epsilon ? 1.0 / Math.Sqrt(var + Epsilon) : 1.0 / Math.Sqrt(Epsilon)); // NaN → clip branch
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RowScalar(ref float x, ref float g, ref float b, ref float y, int n)
    {
        double x0 = x, sd = 0, sd2 = 0;
        for (int j = 0; j < n; j++) { double dj = Unsafe.Add(ref x, j) - x0; sd += dj; sd2 += dj * dj; }
        float mean = (float)(x0 + sd / n), inv = InvStd(sd, sd2, n);
        for (int j = 0; j < n; j++)
            Unsafe.Add(ref y, j) = float.MultiplyAddEstimate(Unsafe.Add(ref x, j) - mean, Unsafe.Add(ref g, j) * inv, Unsafe.Add(ref b, j));
    }

    // One text for every width: TSimd is V512, V256 or V128 (see ISimdWide), TVecD its double companion.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RowVector<TSimd, TVec, TVecD>(ref float x, ref float g, ref float b, ref float y, int n)
        where TSimd : struct, ISimdWide<TVec, TVecD>
        where TVec : struct
        where TVecD : struct
    {
        int w = TSimd.Count;
        float x0f = x;
        TVecD x0 = TSimd.CreateD(x0f);
        TVecD s0 = TSimd.CreateD(0), s1 = s0, q0 = s0, q1 = s0;
        int j = 0;
        for (; j + w <= n; j += w)
        {
            (TVecD lo, TVecD hi) = TSimd.Widen(TSimd.Load(ref x, (nuint)j));
            lo = TSimd.SubtractD(lo, x0); hi = TSimd.SubtractD(hi, x0);
            s0 = TSimd.AddD(s0, lo); s1 = TSimd.AddD(s1, hi);
            q0 = TSimd.MultiplyAddEstimateD(lo, lo, q0);
            q1 = TSimd.MultiplyAddEstimateD(hi, hi, q1);
        }
        if (j != n)
        {
            // Overlapping last vector; lanes below j were summed already, so they become x0 (d = 0).
            TVec fresh = TSimd.LanesFrom(j - (n - w));
            TVec t = TSimd.ConditionalSelect(fresh, TSimd.Load(ref x, (nuint)(n - w)), TSimd.Create(x0f));
            (TVecD lo, TVecD hi) = TSimd.Widen(t);
            lo = TSimd.SubtractD(lo, x0); hi = TSimd.SubtractD(hi, x0);
            s0 = TSimd.AddD(s0, lo); s1 = TSimd.AddD(s1, hi);
            q0 = TSimd.MultiplyAddEstimateD(lo, lo, q0);
            q1 = TSimd.MultiplyAddEstimateD(hi, hi, q1);
        }
        double sd = TSimd.SumD(TSimd.AddD(s0, s1)), sd2 = TSimd.SumD(TSimd.AddD(q0, q1));
        TVec mean = TSimd.Create((float)(x0f + sd / n));
        TVec inv = TSimd.Create(InvStd(sd, sd2, n));

        // Pass 2. The last vector is read before any store: in-place safe.
        nuint lastAt = (nuint)(n - w);
        TVec last = TSimd.MultiplyAddEstimate(TSimd.Subtract(TSimd.Load(ref x, lastAt), mean), TSimd.Multiply(TSimd.Load(ref g, lastAt), inv), TSimd.Load(ref b, lastAt));
        for (j = 0; j + w <= n; j += w)
        {
            nuint at = (nuint)j;
            TSimd.Store(TSimd.MultiplyAddEstimate(TSimd.Subtract(TSimd.Load(ref x, at), mean), TSimd.Multiply(TSimd.Load(ref g, at), inv), TSimd.Load(ref b, at)), ref y, at);
        }
        if (j != n) TSimd.Store(last, ref y, lastAt);
    }
}
