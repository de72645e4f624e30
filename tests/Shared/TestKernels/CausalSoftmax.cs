using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

using DualChunk.Kernels;

namespace DualChunk.TestKernels;

/// <summary>
/// Edifice's masked causal softmax of one score row: for row i of a T×T score matrix, entries j &gt; i are masked
/// to −1e9 and <c>P = exp(S − rowmax) / (rowsum + 1e-8)</c>.
/// </summary>
/// <remarks>
/// Entry j = i is never masked, so rowmax ≥ S[i][i] and the masked entries contribute exp(−1e9 − rowmax), which is
/// exactly 0 in float32 as long as rowmax &gt; −1e9 + 104 (always, for real scores): they are written as 0 and never
/// read. exp is <see cref="VectorMath"/>'s (max relative error ≈ 1.4 × 2^-24, measured), so each probability is within
/// a few float ulps of the float64 result. The ·(1/(sum + 1e-8)) pass rounds once more.
/// The vector path is one algorithm text, generic over the width (<see cref="ISimd{TVec}"/>).
/// </remarks>
// Test and benchmark code: the model fuses GELU into the GEMM epilogue and softmax into CausalAttention.
internal static class CausalSoftmax
{
    /// <summary>
    /// probabilities[j] = softmax of row <paramref name="row"/>: scores[0..row] are the unmasked scores, entries past
    /// <paramref name="row"/> are masked (not read) and come out 0. Both spans have length T &gt; row;
    /// <paramref name="probabilities"/> may alias <paramref name="scores"/>.
    /// </summary>
    internal static void Run(ReadOnlySpan<float> scores, Span<float> probabilities, int row)
        => Run(scores, probabilities, row, KernelSelection.Isa);

    /// <summary>Same as the public overload on an explicit path (tests).</summary>
    internal static void Run(ReadOnlySpan<float> scores, Span<float> probabilities, int row, KernelIsa isa)
    {
        KernelSelection.CheckIsa(isa);
        if (probabilities.Length != scores.Length)
            throw new ArgumentException($"probabilities has {probabilities.Length} entries, scores {scores.Length}.", nameof(probabilities));
        if ((uint)row >= (uint)scores.Length)
            throw new ArgumentOutOfRangeException(nameof(row), row, $"Row must be in [0, {scores.Length}).");
        if (scores.Overlaps(probabilities, out int off) && off != 0)
            throw new ArgumentException("scores and probabilities overlap without being the same span.", nameof(probabilities));
        int n = row + 1;
        ref float s = ref MemoryMarshal.GetReference(scores);
        ref float p = ref MemoryMarshal.GetReference(probabilities);
        if (isa >= KernelIsa.Vector512 && n >= Vector512<float>.Count) RunVector<V512, Vector512<float>>(ref s, ref p, n);
        else if (isa >= KernelIsa.Vector256 && n >= Vector256<float>.Count) RunVector<V256, Vector256<float>>(ref s, ref p, n);
        else if (Vector128.IsHardwareAccelerated && n >= Vector128<float>.Count) RunVector<V128, Vector128<float>>(ref s, ref p, n);
        else RunScalar(ref s, ref p, n);
        probabilities[n..].Clear(); // masked: exp(−1e9 − rowmax) = 0 exactly
    }

    private static void RunScalar(ref float s, ref float p, int n)
    {
        float max = float.NegativeInfinity;
        for (int j = 0; j < n; j++) max = MathF.Max(max, Unsafe.Add(ref s, j));
        float sum = 0;
        for (int j = 0; j < n; j++) { float e = ScalarMath.Exp(Unsafe.Add(ref s, j) - max); Unsafe.Add(ref p, j) = e; sum += e; }
        float inv = 1f / (sum + CausalAttention.DenominatorEpsilon);
        for (int j = 0; j < n; j++) Unsafe.Add(ref p, j) *= inv;
    }

    /// <summary>Float64 twin, the tests' reference: evaluates the mask literally over all T entries.</summary>
    internal static void Scalar(ReadOnlySpan<float> scores, Span<double> probabilities, int row)
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
    // One text for every width: TSimd is V512, V256 or V128 (see ISimd).
    private static void RunVector<TSimd, TVec>(ref float s, ref float p, int n)
        where TSimd : struct, ISimd<TVec>
        where TVec : struct
    {
        int w = TSimd.Count;
        TVec last = TSimd.Load(ref s, (nuint)(n - w));
        TVec mx = last;
        for (int j = 0; j + w <= n; j += w) mx = SimdReductions.Max(mx, TSimd.Load(ref s, (nuint)j)); // overlap is harmless for max
        TVec max = TSimd.Create(SimdReductions.MaxAcross(mx));
        TVec sum = TSimd.Zero;
        int i = 0;
        for (; i + w <= n; i += w)
        {
            TVec e = VectorMath.Exp<TSimd, TVec>(TSimd.Subtract(TSimd.Load(ref s, (nuint)i), max));
            TSimd.Store(e, ref p, (nuint)i);
            sum = TSimd.Add(sum, e);
        }
        if (i != n)
        {
            TVec e = VectorMath.Exp<TSimd, TVec>(TSimd.Subtract(last, max));
            TSimd.Store(e, ref p, (nuint)(n - w));
            // lanes k with n − w + k < i were summed already
            TVec fresh = TSimd.LanesFrom(i - (n - w));
            sum = TSimd.Add(sum, TSimd.And(e, fresh));
        }
        TVec inv = TSimd.Create(1f / (SimdReductions.Sum(sum) + CausalAttention.DenominatorEpsilon));
        TVec lastP = TSimd.Multiply(TSimd.Load(ref p, (nuint)(n - w)), inv);
        for (i = 0; i + w <= n; i += w) TSimd.Store(TSimd.Multiply(TSimd.Load(ref p, (nuint)i), inv), ref p, (nuint)i);
        if (i != n) TSimd.Store(lastP, ref p, (nuint)(n - w));
    }
}
