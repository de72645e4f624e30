using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace DualChunk.Kernels;

/// <summary>
/// Edifice's masked causal softmax of one score row: for row i of a T×T score matrix, entries j &gt; i are masked
/// to −1e9 and <c>P = exp(S − rowmax) / (rowsum + 1e-8)</c>.
/// </summary>
/// <remarks>
/// Entry j = i is never masked, so rowmax ≥ S[i][i] and the masked entries contribute exp(−1e9 − rowmax), which is
/// exactly 0 in float32 as long as rowmax &gt; −1e9 + 104 (always, for real scores): they are written as 0 and never
/// read. exp is <see cref="VectorMath"/>'s (max relative error ≈ 1.4 × 2^-24, measured), so each probability is within
/// a few float ulps of the float64 result. The ·(1/(sum + 1e-8)) pass rounds once more.
/// The Vector128/256/512 sections are one algorithm text instantiated per width.
/// </remarks>
public static class CausalSoftmax
{
    /// <summary>
    /// probabilities[j] = softmax of row <paramref name="row"/>: scores[0..row] are the unmasked scores, entries past
    /// <paramref name="row"/> are masked (not read) and come out 0. Both spans have length T &gt; row;
    /// <paramref name="probabilities"/> may alias <paramref name="scores"/>.
    /// </summary>
    public static void Run(ReadOnlySpan<float> scores, Span<float> probabilities, int row)
        => Run(scores, probabilities, row, KernelSelection.Isa);

    /// <summary>Same as the public overload on an explicit path (tests).</summary>
    internal static void Run(ReadOnlySpan<float> scores, Span<float> probabilities, int row, KernelIsa isa)
    {
        ElementwiseDriver.CheckIsa(isa);
        if (probabilities.Length != scores.Length)
            throw new ArgumentException($"probabilities has {probabilities.Length} entries, scores {scores.Length}.", nameof(probabilities));
        if ((uint)row >= (uint)scores.Length)
            throw new ArgumentOutOfRangeException(nameof(row), row, $"Row must be in [0, {scores.Length}).");
        if (scores.Overlaps(probabilities, out int off) && off != 0)
            throw new ArgumentException("scores and probabilities overlap without being the same span.", nameof(probabilities));
        int n = row + 1;
        ref float s = ref MemoryMarshal.GetReference(scores);
        ref float p = ref MemoryMarshal.GetReference(probabilities);
        if (isa >= KernelIsa.Vector512 && n >= Vector512<float>.Count) Run512(ref s, ref p, n);
        else if (isa >= KernelIsa.Vector256 && n >= Vector256<float>.Count) Run256(ref s, ref p, n);
        else if (Vector128.IsHardwareAccelerated && n >= Vector128<float>.Count) Run128(ref s, ref p, n);
        else RunScalar(ref s, ref p, n);
        probabilities[n..].Clear(); // masked: exp(−1e9 − rowmax) = 0 exactly
    }

    private static void RunScalar(ref float s, ref float p, int n)
    {
        float max = float.NegativeInfinity;
        for (int j = 0; j < n; j++) max = MathF.Max(max, Unsafe.Add(ref s, j));
        float sum = 0;
        for (int j = 0; j < n; j++) { float e = VectorMath.Exp(Unsafe.Add(ref s, j) - max); Unsafe.Add(ref p, j) = e; sum += e; }
        float inv = 1f / (sum + CausalAttention.DenominatorEpsilon);
        for (int j = 0; j < n; j++) Unsafe.Add(ref p, j) *= inv;
    }

    /// <summary>Float64 twin, the tests' reference: evaluates the mask literally over all T entries.</summary>
    public static void Scalar(ReadOnlySpan<float> scores, Span<double> probabilities, int row)
    {
        int t = scores.Length;
        double max = double.NegativeInfinity;
        for (int j = 0; j < t; j++) max = Math.Max(max, j > row ? CausalAttention.MaskValue : scores[j]);
        double sum = 0;
        for (int j = 0; j < t; j++) { probabilities[j] = Math.Exp((j > row ? CausalAttention.MaskValue : scores[j]) - max); sum += probabilities[j]; }
        sum += CausalAttention.DenominatorEpsilon;
        for (int j = 0; j < t; j++) probabilities[j] /= sum;
    }

    // n ≥ lanes. Tails overlap: the last vector [n − W, n) is loaded before a pass writes anything (in-place safe);
    // in the sum its lanes already counted by the main loop are masked off.
    private static void Run128(ref float s, ref float p, int n)
    {
        int w = Vector128<float>.Count;
        Vector128<float> last = Vector128.LoadUnsafe(ref s, (nuint)(n - w));
        Vector128<float> mx = last;
        for (int j = 0; j + w <= n; j += w) mx = Vector128.Max(mx, Vector128.LoadUnsafe(ref s, (nuint)j)); // overlap is harmless for max
        Vector128<float> max = Vector128.Create(VectorMath.MaxAcross(mx));
        Vector128<float> sum = Vector128<float>.Zero;
        int i = 0;
        for (; i + w <= n; i += w)
        {
            Vector128<float> e = VectorMath.Exp(Vector128.LoadUnsafe(ref s, (nuint)i) - max);
            e.StoreUnsafe(ref p, (nuint)i);
            sum += e;
        }
        if (i != n)
        {
            Vector128<float> e = VectorMath.Exp(last - max);
            e.StoreUnsafe(ref p, (nuint)(n - w));
            // lanes k with n − w + k < i were summed already
            Vector128<float> fresh = Vector128.GreaterThanOrEqual(Vector128<int>.Indices, Vector128.Create(i - (n - w))).AsSingle();
            sum += e & fresh;
        }
        Vector128<float> inv = Vector128.Create(1f / (Vector128.Sum(sum) + CausalAttention.DenominatorEpsilon));
        Vector128<float> lastP = Vector128.LoadUnsafe(ref p, (nuint)(n - w)) * inv;
        for (i = 0; i + w <= n; i += w) (Vector128.LoadUnsafe(ref p, (nuint)i) * inv).StoreUnsafe(ref p, (nuint)i);
        if (i != n) lastP.StoreUnsafe(ref p, (nuint)(n - w));
    }

    // n ≥ lanes. Tails overlap: the last vector [n − W, n) is loaded before a pass writes anything (in-place safe);
    // in the sum its lanes already counted by the main loop are masked off.
    private static void Run256(ref float s, ref float p, int n)
    {
        int w = Vector256<float>.Count;
        Vector256<float> last = Vector256.LoadUnsafe(ref s, (nuint)(n - w));
        Vector256<float> mx = last;
        for (int j = 0; j + w <= n; j += w) mx = Vector256.Max(mx, Vector256.LoadUnsafe(ref s, (nuint)j)); // overlap is harmless for max
        Vector256<float> max = Vector256.Create(VectorMath.MaxAcross(mx));
        Vector256<float> sum = Vector256<float>.Zero;
        int i = 0;
        for (; i + w <= n; i += w)
        {
            Vector256<float> e = VectorMath.Exp(Vector256.LoadUnsafe(ref s, (nuint)i) - max);
            e.StoreUnsafe(ref p, (nuint)i);
            sum += e;
        }
        if (i != n)
        {
            Vector256<float> e = VectorMath.Exp(last - max);
            e.StoreUnsafe(ref p, (nuint)(n - w));
            // lanes k with n − w + k < i were summed already
            Vector256<float> fresh = Vector256.GreaterThanOrEqual(Vector256<int>.Indices, Vector256.Create(i - (n - w))).AsSingle();
            sum += e & fresh;
        }
        Vector256<float> inv = Vector256.Create(1f / (Vector256.Sum(sum) + CausalAttention.DenominatorEpsilon));
        Vector256<float> lastP = Vector256.LoadUnsafe(ref p, (nuint)(n - w)) * inv;
        for (i = 0; i + w <= n; i += w) (Vector256.LoadUnsafe(ref p, (nuint)i) * inv).StoreUnsafe(ref p, (nuint)i);
        if (i != n) lastP.StoreUnsafe(ref p, (nuint)(n - w));
    }

    // n ≥ lanes. Tails overlap: the last vector [n − W, n) is loaded before a pass writes anything (in-place safe);
    // in the sum its lanes already counted by the main loop are masked off.
    private static void Run512(ref float s, ref float p, int n)
    {
        int w = Vector512<float>.Count;
        Vector512<float> last = Vector512.LoadUnsafe(ref s, (nuint)(n - w));
        Vector512<float> mx = last;
        for (int j = 0; j + w <= n; j += w) mx = Vector512.Max(mx, Vector512.LoadUnsafe(ref s, (nuint)j)); // overlap is harmless for max
        Vector512<float> max = Vector512.Create(VectorMath.MaxAcross(mx));
        Vector512<float> sum = Vector512<float>.Zero;
        int i = 0;
        for (; i + w <= n; i += w)
        {
            Vector512<float> e = VectorMath.Exp(Vector512.LoadUnsafe(ref s, (nuint)i) - max);
            e.StoreUnsafe(ref p, (nuint)i);
            sum += e;
        }
        if (i != n)
        {
            Vector512<float> e = VectorMath.Exp(last - max);
            e.StoreUnsafe(ref p, (nuint)(n - w));
            // lanes k with n − w + k < i were summed already
            Vector512<float> fresh = Vector512.GreaterThanOrEqual(Vector512<int>.Indices, Vector512.Create(i - (n - w))).AsSingle();
            sum += e & fresh;
        }
        Vector512<float> inv = Vector512.Create(1f / (Vector512.Sum(sum) + CausalAttention.DenominatorEpsilon));
        Vector512<float> lastP = Vector512.LoadUnsafe(ref p, (nuint)(n - w)) * inv;
        for (i = 0; i + w <= n; i += w) (Vector512.LoadUnsafe(ref p, (nuint)i) * inv).StoreUnsafe(ref p, (nuint)i);
        if (i != n) lastP.StoreUnsafe(ref p, (nuint)(n - w));
    }
}
