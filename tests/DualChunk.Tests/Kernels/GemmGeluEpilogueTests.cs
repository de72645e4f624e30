using DualChunk.Kernels;
using NUnit.Framework;

namespace DualChunk.Tests.Kernels;

/// <summary>
/// GELU where production runs it: fused in the GEMM epilogue (<see cref="GemmEpilogue.BiasGelu"/>), on every path up to
/// the selected one, for every N tail length (1 to 3 panels + 1), several M tails, against float64
/// <c>Gelu.ScalarReference</c> within GELU's own stated bound (|err| ≤ 3e-8 + 2.4e-7·|GELU(x)|). K = 1, a zero bias and
/// A's rows powers of two make each pre-activation x = a_r·w_j exact in float, so every bit of error is the
/// epilogue's. The epilogue allows no aliasing (A and C must not overlap; it applies GELU in place on C's tile, which
/// these tails exercise); nothing past N in a row, nor past the last row, may be written.
/// </summary>
[TestFixture]
public sealed class GemmGeluEpilogueTests
{
    private const float Sentinel = -12345.678f;

    [Test]
    public void Every_N_tail_within_the_GELU_bound_on_every_path()
    {
        var rng = new Random(2323);
        foreach (KernelIsa isa in KernelTestSupport.Isas())
        {
            int panel = Gemm.PanelColumnsOf(isa);
            double worst = 0; string worstAt = "";
            for (int n = 1; n <= 3 * panel + 1; n++)
            {
                foreach (int m in new[] { 1, 5, 13 })
                {
                    // w spans GELU's interesting range: the negative tail past −6, the polynomial's centre, large x.
                    float[] w = KernelTestSupport.RandomNonZero(rng, n, 8f);
                    if (n > 2) { w[0] = -7.5f; w[n - 1] = 0.8125f; }
                    float[] a = new float[m];
                    for (int r = 0; r < m; r++) a[r] = MathF.ScaleB(1f, r % 7 - 3); // 1/8 .. 8, exact products
                    var packed = PackedMatrix.Pack(w, 1, n, isa);
                    var bias = new float[n];
                    int ldc = n + 3;
                    var c = new float[m * ldc + 5];
                    Array.Fill(c, Sentinel);
                    Gemm.Run(a, m, 1, packed, bias, c, ldc, GemmEpilogue.BiasGelu, isa);
                    for (int r = 0; r < m; r++)
                    {
                        for (int j = 0; j < n; j++)
                        {
                            float x = a[r] * w[j];
                            double reference = Gelu.ScalarReference(x);
                            double use = Math.Abs(c[r * ldc + j] - reference) / (Gelu.MaxAbsError + Gelu.MaxRelError * Math.Abs(reference));
                            if (double.IsNaN(use)) use = double.PositiveInfinity;
                            if (use > worst) { worst = use; worstAt = $"n={n} m={m} r={r} j={j} x={x:R}"; }
                        }
                        for (int j = n; j < ldc && r * ldc + j < c.Length; j++)
                            Assert.That(c[r * ldc + j], Is.EqualTo(Sentinel), $"{isa} n={n} m={m}: C[{r}, {j}] past N written");
                    }
                    for (int i = (m - 1) * ldc + n; i < c.Length; i++)
                        Assert.That(c[i], Is.EqualTo(Sentinel), $"{isa} n={n} m={m}: C[{i}] past the last row written");
                }
            }
            TestContext.Out.WriteLine($"GEMM BiasGelu epilogue {isa}: worst use of the GELU bound {worst:F3} at {worstAt}");
            Assert.That(worst, Is.LessThanOrEqualTo(1.0), $"{isa} at {worstAt}");
        }
    }
}
