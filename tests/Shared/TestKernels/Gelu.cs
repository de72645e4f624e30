using System.Runtime.Intrinsics;

using DualChunk.Kernels;

namespace DualChunk.TestKernels;

/// <summary>Exact GELU, 0.5·x·(1 + erf(x/√2)), vectorized as max(x, 0) − ½·|x|·erfc(|x|/√2).</summary>
/// <remarks>
/// Stated bound, for every float x on every path: |GELU(x) − Run(x)| ≤ 3e-8 + 2.4e-7·|GELU(x)|
/// (measured in ErfGeluTests over 3.1e7 inputs on every path: the worst case uses 55.5% of it with FMA and 66.1%
/// without; checked on every float with 1e-12 ≤ |x| &lt; 1e5 when the coefficients were fitted: 57% / 68%). For x &lt; 0
/// the erfc form avoids the cancellation of 1 + erf, so the negative tail keeps its relative accuracy. NaN gives NaN,
/// +∞ gives +∞, x ≤ −6 (and −∞) gives −5.9e-9. See <see cref="VectorMath"/> for the algorithm.
/// </remarks>
// Test and benchmark code: the model fuses GELU into the GEMM epilogue and softmax into CausalAttention.
internal static class Gelu
{
    /// <summary>Stated absolute part of the bound: |err| ≤ MaxAbsError + MaxRelError·|GELU(x)|.</summary>
    public const double MaxAbsError = 3e-8;

    /// <summary>Stated relative part of the bound: |err| ≤ MaxAbsError + MaxRelError·|GELU(x)|.</summary>
    public const double MaxRelError = 2.4e-7;

    /// <summary>y = GELU(x), element-wise; <paramref name="y"/> may alias <paramref name="x"/>.</summary>
    internal static void Run(ReadOnlySpan<float> x, Span<float> y) => Run(x, y, KernelSelection.Isa);

    /// <summary>Same as <see cref="Run(ReadOnlySpan{float}, Span{float})"/> on an explicit path (tests).</summary>
    internal static void Run(ReadOnlySpan<float> x, Span<float> y, KernelIsa isa)
        => ElementwiseDriver.Run<GeluOperator>(x, y, isa);

    /// <summary>Scalar float GELU: the same algorithm as the vector paths.</summary>
    internal static float Scalar(float x) => ScalarMath.Gelu(x);

    /// <summary>
    /// Float64 GELU, the tests' reference. For x &lt; 0 it uses erfc, so the negative tail has no cancellation;
    /// GELU(−∞) is its limit −0 (not −∞·0 = NaN).
    /// </summary>
    internal static double ScalarReference(double x)
        => double.IsNegativeInfinity(x) ? -0.0
            : x < 0 ? 0.5 * x * ErfcReference(-x / Math.Sqrt(2.0)) : 0.5 * x * (1.0 + ErfReference(x / Math.Sqrt(2.0)));

    /// <summary>
    /// Double-precision erf (relative error below 1e-15), used as the reference for the vectorized float erf.
    /// </summary>
    /// <remarks>
    /// |x| &lt; 3: erf(x) = 2/√π · e^(−x²) · Σ 2ⁿ x^(2n+1) / (1·3·…·(2n+1)) — every term positive, so no cancellation;
    /// e^(−x²) is taken with the rounding error of x² corrected (FMA residual). |x| ≥ 3: erf = 1 − erfc, with erfc from
    /// its continued fraction (where erfc ≤ 2.3e-5, so its own error is invisible in erf).
    /// </remarks>
    internal static double ErfReference(double x)
    {
        if (double.IsNaN(x)) return x;
        double a = Math.Abs(x);
        double r;
        if (a < 3.0)
        {
            double x2 = a * a, term = a, sum = a;
            for (int n = 0; n < 200; n++)
            {
                term *= 2.0 * x2 / (2 * n + 3);
                sum += term;
                if (term <= sum * 1e-18) break;
            }
            r = 2.0 / Math.Sqrt(Math.PI) * ExpMinusSquare(a) * sum;
        }
        else
        {
            r = 1.0 - ErfcReference(a);
        }
        return x < 0 ? -r : r;
    }

    /// <summary>Double-precision erfc (relative error around 1e-15) for the tests' references.</summary>
    internal static double ErfcReference(double x)
    {
        if (double.IsNaN(x)) return x;
        if (x < 3.0) return 1.0 - ErfReference(x);
        if (x > 27.3) return 0.0; // erfc(27.3) < 5e-326: below the smallest double
        // Continued fraction erfc(x) = e^(−x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + …)))), evaluated backwards;
        // 80 levels converge to double precision for x ≥ 3.
        double k = x;
        for (int n = 80; n >= 1; n--) k = x + n / 2.0 / k;
        return ExpMinusSquare(x) / Math.Sqrt(Math.PI) / k;
    }

    // e^(−x²) with x² = hi + lo split exactly by an FMA, so the rounding of x² does not leak into the exponential.
    private static double ExpMinusSquare(double x)
    {
        double hi = x * x;
        double lo = Math.FusedMultiplyAdd(x, x, -hi);
        return Math.Exp(-hi) * (1.0 - lo);
    }

    internal readonly struct GeluOperator : IUnaryOperator
    {
        public static float Invoke(float x) => ScalarMath.Gelu(x);
        public static TVec Invoke<TSimd, TVec>(TVec x) where TSimd : struct, ISimd<TVec> where TVec : struct => VectorMath.Gelu<TSimd, TVec>(x);
    }
}
