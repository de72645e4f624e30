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
/// The Vector128/256/512 sections are one algorithm text instantiated per width.
/// </remarks>
public static class LayerNorm
{
    /// <summary>Axon's epsilon.</summary>
    public const float Epsilon = 1e-5f;

    /// <summary>y[r, :] = LN(x[r, :]) for <paramref name="rows"/> contiguous rows of <paramref name="width"/>; <paramref name="y"/> may alias <paramref name="x"/>.</summary>
    public static void Run(ReadOnlySpan<float> x, int rows, int width, ReadOnlySpan<float> gamma, ReadOnlySpan<float> beta, Span<float> y)
        => Run(x, rows, width, gamma, beta, y, KernelSelection.Isa);

    /// <summary>Same as the public overload on an explicit path (tests).</summary>
    internal static void Run(ReadOnlySpan<float> x, int rows, int width, ReadOnlySpan<float> gamma, ReadOnlySpan<float> beta, Span<float> y, KernelIsa isa)
    {
        ElementwiseDriver.CheckIsa(isa);
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
            if (isa >= KernelIsa.Vector512 && width >= Vector512<float>.Count) Row512(ref xr, ref g, ref b, ref yr, width);
            else if (isa >= KernelIsa.Vector256 && width >= Vector256<float>.Count) Row256(ref xr, ref g, ref b, ref yr, width);
            else if (Vector128.IsHardwareAccelerated && width >= Vector128<float>.Count) Row128(ref xr, ref g, ref b, ref yr, width);
            else RowScalar(ref xr, ref g, ref b, ref yr, width);
        }
    }

    /// <summary>Axon's clipped inverse standard deviation from the shifted sums (in double).</summary>
    private static float InvStd(double sumD, double sumD2, int n)
    {
        double var = (sumD2 - sumD * sumD / n) / n;
        return (float)(var >= Epsilon ? 1.0 / Math.Sqrt(var + Epsilon) : 1.0 / Math.Sqrt(Epsilon)); // NaN → clip branch
    }

    private static void RowScalar(ref float x, ref float g, ref float b, ref float y, int n)
    {
        double x0 = x, sd = 0, sd2 = 0;
        for (int j = 0; j < n; j++) { double dj = Unsafe.Add(ref x, j) - x0; sd += dj; sd2 += dj * dj; }
        float mean = (float)(x0 + sd / n), inv = InvStd(sd, sd2, n);
        for (int j = 0; j < n; j++)
            Unsafe.Add(ref y, j) = float.MultiplyAddEstimate(Unsafe.Add(ref x, j) - mean, Unsafe.Add(ref g, j) * inv, Unsafe.Add(ref b, j));
    }

    /// <summary>Scalar twin in double, the tests' reference.</summary>
    public static void Scalar(ReadOnlySpan<float> x, int rows, int width, ReadOnlySpan<float> gamma, ReadOnlySpan<float> beta, Span<float> y)
    {
        for (int r = 0; r < rows; r++)
        {
            var row = x.Slice(r * width, width);
            double mean = 0;
            foreach (float v in row) mean += v;
            mean /= width;
            double var = 0;
            foreach (float v in row) var += (v - mean) * (v - mean);
            var /= width;
            double inv = var >= Epsilon ? 1.0 / Math.Sqrt(var + Epsilon) : 1.0 / Math.Sqrt(Epsilon);
            var dst = y.Slice(r * width, width);
            for (int i = 0; i < width; i++)
                dst[i] = (float)(gamma[i] * inv * (row[i] - mean) + beta[i]);
        }
    }

    private static void Row128(ref float x, ref float g, ref float b, ref float y, int n)
    {
        int w = Vector128<float>.Count;
        float x0f = x;
        Vector128<double> x0 = Vector128.Create((double)x0f);
        Vector128<double> s0 = Vector128<double>.Zero, s1 = s0, q0 = s0, q1 = s0;
        int j = 0;
        for (; j + w <= n; j += w)
        {
            (Vector128<double> lo, Vector128<double> hi) = Vector128.Widen(Vector128.LoadUnsafe(ref x, (nuint)j));
            lo -= x0; hi -= x0;
            s0 += lo; s1 += hi;
            q0 = Vector128.MultiplyAddEstimate(lo, lo, q0);
            q1 = Vector128.MultiplyAddEstimate(hi, hi, q1);
        }
        if (j != n)
        {
            // Overlapping last vector; lanes below j were summed already, so they become x0 (d = 0).
            Vector128<float> fresh = Vector128.GreaterThanOrEqual(Vector128<int>.Indices, Vector128.Create(j - (n - w))).AsSingle();
            Vector128<float> t = Vector128.ConditionalSelect(fresh, Vector128.LoadUnsafe(ref x, (nuint)(n - w)), Vector128.Create(x0f));
            (Vector128<double> lo, Vector128<double> hi) = Vector128.Widen(t);
            lo -= x0; hi -= x0;
            s0 += lo; s1 += hi;
            q0 = Vector128.MultiplyAddEstimate(lo, lo, q0);
            q1 = Vector128.MultiplyAddEstimate(hi, hi, q1);
        }
        double sd = Vector128.Sum(s0 + s1), sd2 = Vector128.Sum(q0 + q1);
        Vector128<float> mean = Vector128.Create((float)(x0f + sd / n));
        Vector128<float> inv = Vector128.Create(InvStd(sd, sd2, n));

        // Pass 2. The last vector is read before any store: in-place safe.
        nuint lastAt = (nuint)(n - w);
        Vector128<float> last = Vector128.MultiplyAddEstimate(Vector128.LoadUnsafe(ref x, lastAt) - mean, Vector128.LoadUnsafe(ref g, lastAt) * inv, Vector128.LoadUnsafe(ref b, lastAt));
        for (j = 0; j + w <= n; j += w)
        {
            nuint at = (nuint)j;
            Vector128.MultiplyAddEstimate(Vector128.LoadUnsafe(ref x, at) - mean, Vector128.LoadUnsafe(ref g, at) * inv, Vector128.LoadUnsafe(ref b, at)).StoreUnsafe(ref y, at);
        }
        if (j != n) last.StoreUnsafe(ref y, lastAt);
    }

    private static void Row256(ref float x, ref float g, ref float b, ref float y, int n)
    {
        int w = Vector256<float>.Count;
        float x0f = x;
        Vector256<double> x0 = Vector256.Create((double)x0f);
        Vector256<double> s0 = Vector256<double>.Zero, s1 = s0, q0 = s0, q1 = s0;
        int j = 0;
        for (; j + w <= n; j += w)
        {
            (Vector256<double> lo, Vector256<double> hi) = Vector256.Widen(Vector256.LoadUnsafe(ref x, (nuint)j));
            lo -= x0; hi -= x0;
            s0 += lo; s1 += hi;
            q0 = Vector256.MultiplyAddEstimate(lo, lo, q0);
            q1 = Vector256.MultiplyAddEstimate(hi, hi, q1);
        }
        if (j != n)
        {
            // Overlapping last vector; lanes below j were summed already, so they become x0 (d = 0).
            Vector256<float> fresh = Vector256.GreaterThanOrEqual(Vector256<int>.Indices, Vector256.Create(j - (n - w))).AsSingle();
            Vector256<float> t = Vector256.ConditionalSelect(fresh, Vector256.LoadUnsafe(ref x, (nuint)(n - w)), Vector256.Create(x0f));
            (Vector256<double> lo, Vector256<double> hi) = Vector256.Widen(t);
            lo -= x0; hi -= x0;
            s0 += lo; s1 += hi;
            q0 = Vector256.MultiplyAddEstimate(lo, lo, q0);
            q1 = Vector256.MultiplyAddEstimate(hi, hi, q1);
        }
        double sd = Vector256.Sum(s0 + s1), sd2 = Vector256.Sum(q0 + q1);
        Vector256<float> mean = Vector256.Create((float)(x0f + sd / n));
        Vector256<float> inv = Vector256.Create(InvStd(sd, sd2, n));

        // Pass 2. The last vector is read before any store: in-place safe.
        nuint lastAt = (nuint)(n - w);
        Vector256<float> last = Vector256.MultiplyAddEstimate(Vector256.LoadUnsafe(ref x, lastAt) - mean, Vector256.LoadUnsafe(ref g, lastAt) * inv, Vector256.LoadUnsafe(ref b, lastAt));
        for (j = 0; j + w <= n; j += w)
        {
            nuint at = (nuint)j;
            Vector256.MultiplyAddEstimate(Vector256.LoadUnsafe(ref x, at) - mean, Vector256.LoadUnsafe(ref g, at) * inv, Vector256.LoadUnsafe(ref b, at)).StoreUnsafe(ref y, at);
        }
        if (j != n) last.StoreUnsafe(ref y, lastAt);
    }

    private static void Row512(ref float x, ref float g, ref float b, ref float y, int n)
    {
        int w = Vector512<float>.Count;
        float x0f = x;
        Vector512<double> x0 = Vector512.Create((double)x0f);
        Vector512<double> s0 = Vector512<double>.Zero, s1 = s0, q0 = s0, q1 = s0;
        int j = 0;
        for (; j + w <= n; j += w)
        {
            (Vector512<double> lo, Vector512<double> hi) = Vector512.Widen(Vector512.LoadUnsafe(ref x, (nuint)j));
            lo -= x0; hi -= x0;
            s0 += lo; s1 += hi;
            q0 = Vector512.MultiplyAddEstimate(lo, lo, q0);
            q1 = Vector512.MultiplyAddEstimate(hi, hi, q1);
        }
        if (j != n)
        {
            // Overlapping last vector; lanes below j were summed already, so they become x0 (d = 0).
            Vector512<float> fresh = Vector512.GreaterThanOrEqual(Vector512<int>.Indices, Vector512.Create(j - (n - w))).AsSingle();
            Vector512<float> t = Vector512.ConditionalSelect(fresh, Vector512.LoadUnsafe(ref x, (nuint)(n - w)), Vector512.Create(x0f));
            (Vector512<double> lo, Vector512<double> hi) = Vector512.Widen(t);
            lo -= x0; hi -= x0;
            s0 += lo; s1 += hi;
            q0 = Vector512.MultiplyAddEstimate(lo, lo, q0);
            q1 = Vector512.MultiplyAddEstimate(hi, hi, q1);
        }
        double sd = Vector512.Sum(s0 + s1), sd2 = Vector512.Sum(q0 + q1);
        Vector512<float> mean = Vector512.Create((float)(x0f + sd / n));
        Vector512<float> inv = Vector512.Create(InvStd(sd, sd2, n));

        // Pass 2. The last vector is read before any store: in-place safe.
        nuint lastAt = (nuint)(n - w);
        Vector512<float> last = Vector512.MultiplyAddEstimate(Vector512.LoadUnsafe(ref x, lastAt) - mean, Vector512.LoadUnsafe(ref g, lastAt) * inv, Vector512.LoadUnsafe(ref b, lastAt));
        for (j = 0; j + w <= n; j += w)
        {
            nuint at = (nuint)j;
            Vector512.MultiplyAddEstimate(Vector512.LoadUnsafe(ref x, at) - mean, Vector512.LoadUnsafe(ref g, at) * inv, Vector512.LoadUnsafe(ref b, at)).StoreUnsafe(ref y, at);
        }
        if (j != n) last.StoreUnsafe(ref y, lastAt);
    }
}
