using DualChunk.Kernels;
using NUnit.Framework;

namespace DualChunk.Tests.Kernels;

[TestFixture]
public class LayerNormRowMeanTests
{
    private static IEnumerable<KernelIsa> Isas() => KernelTestSupport.Isas();

    // Reference values for one row, in double, with the magnitude the float computation works against.
    private static (double Mean, double Inv) Stats(ReadOnlySpan<float> row)
    {
        double mean = 0;
        foreach (float v in row) mean += v;
        mean /= row.Length;
        double var = 0;
        foreach (float v in row) var += (v - mean) * (v - mean);
        var /= row.Length;
        return (mean, var >= LayerNorm.Epsilon ? 1 / Math.Sqrt(var + LayerNorm.Epsilon) : 1 / Math.Sqrt(LayerNorm.Epsilon));
    }

    /// <summary>
    /// Tolerance per element: 4e-7·(|γ·inv|·(|x| + |mean|) + |β|), i.e. ~7 float ulps of the terms the float
    /// computation forms (x − mean is taken in float with the mean rounded to float).
    /// </summary>
    private static void AssertRows(float[] x, int rows, int width, float[] gamma, float[] beta, float[] y, string what)
    {
        var reference = new float[rows * width];
        ScalarTwins.LayerNorm(x, rows, width, gamma, beta, reference);
        for (int r = 0; r < rows; r++)
        {
            (double mean, double inv) = Stats(x.AsSpan(r * width, width));
            for (int j = 0; j < width; j++)
            {
                int i = r * width + j;
                double tol = 4e-7 * (Math.Abs(gamma[j] * inv) * (Math.Abs(x[i]) + Math.Abs(mean)) + Math.Abs(beta[j]));
                Assert.That(y[i], Is.EqualTo(reference[i]).Within(tol), $"{what} row {r} col {j}");
            }
        }
    }

    [Test]
    public void LayerNorm_every_width_1_to_257([ValueSource(nameof(Isas))] KernelIsa isa)
    {
        var rng = new Random(7);
        for (int width = 1; width <= 257; width++)
        {
            const int rows = 3;
            float[] x = KernelTestSupport.RandomNonZero(rng, rows * width, 3f);
            for (int j = 0; j < width; j++) x[width + j] += 50f; // a row with a large mean against its spread
            float[] gamma = KernelTestSupport.RandomNonZero(rng, width, 2f), beta = KernelTestSupport.RandomNonZero(rng, width);
            var y = new float[rows * width + 1];
            y[^1] = 42f;
            LayerNorm.Run(x, rows, width, gamma, beta, y.AsSpan(0, rows * width), isa);
            Assert.That(y[^1], Is.EqualTo(42f), "wrote past the end");
            AssertRows(x, rows, width, gamma, beta, y, $"width {width}");
            var inPlace = (float[])x.Clone();
            LayerNorm.Run(inPlace, rows, width, gamma, beta, inPlace, isa);
            Assert.That(inPlace, Is.EqualTo(y[..^1]), $"in place, width {width}");
        }
    }

    [Test]
    public void LayerNorm_clip_branch_for_near_constant_rows([ValueSource(nameof(Isas))] KernelIsa isa)
    {
        var rng = new Random(11);
        foreach (int width in new[] { 1, 3, 7, 16, 33, 64, 256, 257 })
        {
            // spreads well below, around and above sqrt(eps) ≈ 3.2e-3: variance < eps takes the rsqrt(eps) branch
            foreach (float spread in new[] { 1e-5f, 1e-3f, 2.9e-3f, 3.5e-3f, 1e-2f })
            {
                var x = new float[2 * width];
                for (int i = 0; i < x.Length; i++) x[i] = (i < width ? 0.75f : -20f) + spread * (float)(rng.NextDouble() * 2 - 1);
                float[] gamma = KernelTestSupport.RandomNonZero(rng, width, 2f), beta = KernelTestSupport.RandomNonZero(rng, width);
                var y = new float[x.Length];
                LayerNorm.Run(x, 2, width, gamma, beta, y, isa);
                AssertRows(x, 2, width, gamma, beta, y, $"width {width} spread {spread}");
            }
        }
        // Exactly constant row: variance 0 → clip; y = β.
        float[] c = [.. Enumerable.Repeat(1.5f, 40)], g = KernelTestSupport.RandomNonZero(rng, 40), b = KernelTestSupport.RandomNonZero(rng, 40);
        var yc = new float[40];
        LayerNorm.Run(c, 1, 40, g, b, yc, isa);
        Assert.That(yc, Is.EqualTo(b));
    }

    [Test]
    public void LayerNorm_NaN_row_is_NaN_and_other_rows_unaffected([ValueSource(nameof(Isas))] KernelIsa isa)
    {
        var rng = new Random(3);
        foreach (int width in new[] { 2, 5, 16, 37 })
        {
            float[] x = KernelTestSupport.RandomNonZero(rng, 3 * width);
            x[width + width / 2] = float.NaN;
            float[] gamma = KernelTestSupport.RandomNonZero(rng, width), beta = KernelTestSupport.RandomNonZero(rng, width);
            var y = new float[x.Length];
            LayerNorm.Run(x, 3, width, gamma, beta, y, isa);
            Assert.That(y.Skip(width).Take(width).All(float.IsNaN), Is.True, "NaN row");
            Assert.That(y.Take(width).Concat(y.Skip(2 * width)).Any(float.IsNaN), Is.False, "other rows");
        }
    }

    [Test]
    public void RowMean_every_width_1_to_257_groups_strides([ValueSource(nameof(Isas))] KernelIsa isa)
    {
        // Every width 1..257 (every vector tail on every path, like LayerNorm), every group size, and the three row
        // paddings in rotation (dense, odd, wide) so each (width mod 16, group, padding) combination occurs.
        var rng = new Random(5);
        for (int width = 1; width <= 257; width++)
        {
            foreach (int group in new[] { 1, 2, 3, 4, 7, 64 })
            {
                int[] pads = [0, 5, 2 * width];
                foreach (int pad in new[] { pads[(width + group) % 3] })
                {
                    int rows = group * 3 + (group > 1 ? 1 : 0); // a leftover row that belongs to no group
                    int ldx = width + pad, ldm = width + 3;
                    float[] x = KernelTestSupport.RandomNonZero(rng, (rows - 1) * ldx + width, 10f);
                    for (int i = 0; i < x.Length; i++) x[i] += 100f; // a large common offset
                    var got = new float[2 * ldm + width + 1];
                    got[^1] = 42f;
                    var want = new float[got.Length];
                    want[^1] = 42f;
                    RowMean.Run(x, rows, ldx, width, group, got.AsSpan(0, got.Length - 1), ldm, isa);
                    ScalarTwins.RowMean(x, rows, ldx, width, group, want, ldm);
                    // Sums are exact-ish in double; the mean is rounded to float once: 1 ulp of 110 (≈ 7.6e-6).
                    Assert.That(got, Is.EqualTo(want).Within(8e-6), $"width {width} group {group} ldx {ldx}");
                }
            }
        }
        // Mean pooling over a long group: 4096 rows.
        float[] big = KernelTestSupport.RandomNonZero(rng, 4096 * 24, 1f);
        var m1 = new float[24];
        var m2 = new float[24];
        RowMean.Run(big, 4096, 24, 24, 4096, m1, 24, isa);
        ScalarTwins.RowMean(big, 4096, 24, 24, 4096, m2, 24);
        Assert.That(m1, Is.EqualTo(m2).Within(6e-8));
    }

    [Test]
    public void Bad_arguments_throw()
    {
        var x = new float[10];
        Assert.That(() => LayerNorm.Run(x, 2, 6, new float[6], new float[6], new float[12]), Throws.ArgumentException);
        Assert.That(() => LayerNorm.Run(x, 2, 5, new float[4], new float[5], new float[10]), Throws.ArgumentException);
        Assert.That(() => RowMean.Run(x, 2, 6, 6, 1, new float[12], 6), Throws.ArgumentException);
        Assert.That(() => RowMean.Run(x, 2, 5, 5, 2, new float[4], 5), Throws.ArgumentException);
    }
}
