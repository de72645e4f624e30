using System.Runtime.Intrinsics;
using DualChunk.Kernels;
using NUnit.Framework;

namespace DualChunk.Tests.Kernels;

/// <summary>
/// The production softmax exponential, <c>VectorMath.ExpNonPositive</c> (fused in CausalAttention: exp(score − rowmax)),
/// against float64 <see cref="Math.Exp(double)"/> over its whole input range x ≤ 0, on every path up to the selected
/// one (CI reruns this namespace with AVX-512 and AVX2 switched off).
/// </summary>
[TestFixture]
public sealed class ExpNonPositiveTests
{
    /// <summary>
    /// Stated bound: relative error ≤ 2.5e-7 (≈ 4.2 × 2^-24) for ln(FLT_MIN) ≤ x ≤ 0, where e^x is a normal float;
    /// below that +0 exactly (e^x is below FLT_MIN there: the absolute error is under 1.2e-38).
    /// </summary>
    private const double MaxRelError = 2.5e-7;

    /// <summary>
    /// Every 61st float bit pattern of [−88, −0] (every exponent, varied mantissas: 1.8e7 inputs), 2^20 evenly spaced
    /// points over [ln FLT_MIN, 0], the floats next to the flush point, and the values with a defined answer.
    /// </summary>
    private static float[] Inputs()
    {
        var list = new List<float>(20_000_000);
        for (uint b = 0x8000_0000u; b <= (uint)BitConverter.SingleToInt32Bits(-88f); b += 61) list.Add(BitConverter.Int32BitsToSingle((int)b));
        const int dense = 1 << 20;
        for (int i = 0; i <= dense; i++) list.Add((float)(VectorMath.ExpMin * (double)i / dense));
        float f = VectorMath.ExpMin;
        for (int i = 0; i < 64; i++) { list.Add(f); list.Add(MathF.BitIncrement(f)); f = MathF.BitDecrement(f); }
        list.AddRange([0f, -0f, -float.Epsilon, -1e-30f, -1f, -87f, -88f, -1e9f, -float.MaxValue, float.NegativeInfinity]);
        return [.. list];
    }

    [Test]
    public void Relative_error_within_bound_over_the_whole_range_on_every_path()
    {
        float[] x = Inputs();
        var y = new float[x.Length];
        foreach (KernelIsa isa in KernelTestSupport.Isas())
        {
            Array.Clear(y);
            ElementwiseDriver.Run<ExpNonPositiveOperator>(x, y, isa);
            double worst = 0; float worstAt = 0;
            for (int i = 0; i < x.Length; i++)
            {
                double r = Math.Exp(x[i]);
                double e;
                if (x[i] < VectorMath.ExpMin)
                    e = y[i] == 0f && !float.IsNegative(y[i]) ? 0 : double.PositiveInfinity; // flushed to +0, exactly
                else
                    e = Math.Abs(y[i] - r) / r;
                if (double.IsNaN(e)) e = double.PositiveInfinity;
                if (e > worst) { worst = e; worstAt = x[i]; }
            }
            TestContext.Out.WriteLine($"ExpNonPositive {isa}: max relative error {worst:E3} ({worst / Math.Pow(2, -24):F2} × 2^-24) at x = {worstAt:R} over {x.Length} inputs");
            Assert.That(worst, Is.LessThanOrEqualTo(MaxRelError), $"{isa} at x = {worstAt:R}");
            Assert.That(y[^1], Is.EqualTo(0f), $"{isa}: e^−∞ (a masked score) is 0");
            Assert.That(y[^10], Is.EqualTo(1f), $"{isa}: e^0 is exactly 1");
        }
    }

    [Test]
    public void Nan_stays_nan_on_every_path()
    {
        // A NaN score must make its row NaN, whatever the other lanes hold.
        float[] x = [float.NaN, -1f, -float.NaN, -2f, -0.5f, float.NegativeInfinity, -100f, float.NaN, -3f];
        var y = new float[x.Length];
        foreach (KernelIsa isa in KernelTestSupport.Isas())
        {
            ElementwiseDriver.Run<ExpNonPositiveOperator>(x, y, isa);
            Assert.That(float.IsNaN(y[0]) && float.IsNaN(y[2]) && float.IsNaN(y[7]), Is.True, $"{isa}: NaN in, NaN out");
            Assert.That(y.Where((_, i) => i is not (0 or 2 or 7)).Any(float.IsNaN), Is.False, $"{isa}: no NaN from numbers");
        }
    }

    /// <summary>The production function itself on every lane: the scalar entry runs one Vector128 lane of it.</summary>
    private readonly struct ExpNonPositiveOperator : IUnaryOperator
    {
        public static float Invoke(float x) => VectorMath.ExpNonPositive<V128, Vector128<float>>(Vector128.Create(x)).ToScalar();
        public static TVec Invoke<TSimd, TVec>(TVec x) where TSimd : struct, ISimd<TVec> where TVec : struct => VectorMath.ExpNonPositive<TSimd, TVec>(x);
    }
}
