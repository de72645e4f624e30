using DualChunk.Kernels;
using DualChunk.TestKernels;
using NUnit.Framework;

namespace DualChunk.Tests.Kernels;

/// <summary>
/// RmsNorm against its float64 twin on every path this machine runs, every width 1..257 (every tail of every vector
/// width). Tolerance per element: 3e-7·|y| (the float path rounds inv, γ·inv and x·(γ·inv): three half-ulps).
/// </summary>
[TestFixture]
public class RmsNormTests
{
    private static IEnumerable<KernelIsa> Isas() => KernelTestSupport.Isas();

    [Test]
    public void RmsNorm_every_width_1_to_257([ValueSource(nameof(Isas))] KernelIsa isa)
    {
        var rng = new Random(11);
        double worst = 0;
        for (int width = 1; width <= 257; width++)
        {
            const int rows = 3;
            float[] x = KernelTestSupport.RandomNonZero(rng, rows * width, 3f);
            for (int j = 0; j < width; j++) x[2 * width + j] *= 1e-4f; // a row far below 1: eps matters
            float[] gamma = KernelTestSupport.RandomNonZero(rng, width, 2f);
            var y = new float[rows * width + 1];
            y[^1] = 42f;
            RmsNorm.Run(x, rows, width, gamma, y.AsSpan(0, rows * width), isa);
            Assert.That(y[^1], Is.EqualTo(42f), "wrote past the end");
            var reference = new float[rows * width];
            ScalarTwins.RmsNorm(x, rows, width, gamma, reference);
            for (int i = 0; i < reference.Length; i++)
            {
                double tol = 3e-7 * Math.Abs(reference[i]) + 1e-30;
                double err = Math.Abs(y[i] - reference[i]);
                Assert.That(err, Is.LessThanOrEqualTo(tol), $"width {width} element {i}: {y[i]:R} vs {reference[i]:R}");
                worst = Math.Max(worst, err / tol);
            }
            var inPlace = (float[])x.Clone();
            RmsNorm.Run(inPlace, rows, width, gamma, inPlace, isa);
            Assert.That(inPlace, Is.EqualTo(y[..^1]), $"in place, width {width}");
        }
        TestContext.Out.WriteLine($"{isa}: worst {worst:P0} of the tolerance");
    }

    [Test]
    public void RmsNorm_NaN_row_is_NaN_and_other_rows_unaffected([ValueSource(nameof(Isas))] KernelIsa isa)
    {
        const int width = 37;
        var rng = new Random(3);
        float[] x = KernelTestSupport.RandomNonZero(rng, 2 * width);
        float[] gamma = KernelTestSupport.RandomNonZero(rng, width);
        var clean = new float[2 * width];
        RmsNorm.Run(x, 2, width, gamma, clean, isa);
        x[5] = float.NaN;
        var y = new float[2 * width];
        RmsNorm.Run(x, 2, width, gamma, y, isa);
        Assert.That(y.AsSpan(0, width).ToArray(), Has.All.NaN);
        Assert.That(y.AsSpan(width).ToArray(), Is.EqualTo(clean.AsSpan(width).ToArray()));
    }

    [Test]
    public void RmsNorm_rejects_short_spans()
    {
        Assert.Throws<ArgumentException>(() => RmsNorm.Run(new float[7], 2, 4, new float[4], new float[8]));
        Assert.Throws<ArgumentException>(() => RmsNorm.Run(new float[8], 2, 4, new float[3], new float[8]));
    }
}
