using System.Runtime.Intrinsics;

using DualChunk.Kernels;

namespace DualChunk.TestKernels;

/// <summary>
/// Vectorized float32 erf. Max absolute error vs. the true erf over all float inputs ≤ 1e-7
/// (measured per path in ErfGeluTests: 6.6e-8 with FMA, 7.8e-8 without; see <see cref="VectorMath"/> for the algorithm).
/// </summary>
// Test and benchmark code: the model fuses GELU into the GEMM epilogue and softmax into CausalAttention.
internal static class Erf
{
    /// <summary>The stated bound on |erf(x) − Run(x)| for every float x, on every path.</summary>
    public const double MaxAbsError = 1e-7;

    /// <summary>y = erf(x), element-wise; <paramref name="y"/> may alias <paramref name="x"/>.</summary>
    internal static void Run(ReadOnlySpan<float> x, Span<float> y) => Run(x, y, KernelSelection.Isa);

    /// <summary>Same as <see cref="Run(ReadOnlySpan{float}, Span{float})"/> on an explicit path (tests).</summary>
    internal static void Run(ReadOnlySpan<float> x, Span<float> y, KernelIsa isa)
        => ElementwiseDriver.Run<ErfOperator>(x, y, isa);

    /// <summary>Scalar float erf: the same algorithm as the vector paths.</summary>
    internal static float Scalar(float x) => ScalarMath.Erf(x);

    internal readonly struct ErfOperator : IUnaryOperator
    {
        public static float Invoke(float x) => ScalarMath.Erf(x);
        public static TVec Invoke<TSimd, TVec>(TVec x) where TSimd : struct, ISimd<TVec> where TVec : struct => VectorMath.Erf<TSimd, TVec>(x);
    }
}
