using DualChunk.Kernels;
using NUnit.Framework;

namespace DualChunk.Tests.Kernels;

[TestFixture]
public class AttentionTests
{
    private static IEnumerable<KernelIsa> Isas() => KernelTestSupport.Isas();

    [Test]
    public void CausalSoftmax_rows_1_to_257([ValueSource(nameof(Isas))] KernelIsa isa)
    {
        var rng = new Random(21);
        foreach (float magnitude in new[] { 1f, 30f, 3000f })
        {
            for (int t = 1; t <= 257; t++)
            {
                float[] scores = KernelTestSupport.RandomNonZero(rng, t, magnitude);
                for (int j = 0; j < t; j++) scores[j] += magnitude; // shifted: the max subtraction matters
                var want = new double[t];
                foreach (int row in new[] { 0, t / 2, t - 1 })
                {
                    var p = new float[t];
                    Array.Fill(p, 42f);
                    CausalSoftmax.Run(scores, p, row, isa);
                    CausalSoftmax.Scalar(scores, want, row);
                    // exp ≈ 1.4 ulp, the sum and the 1/sum scaling a few more: 1e-6 relative per entry, plus 1e-12 absolute.
                    for (int j = 0; j < t; j++)
                        Assert.That(p[j], Is.EqualTo(want[j]).Within(1e-6 * want[j] + 1e-12), $"t {t} row {row} j {j}");
                    var inPlace = (float[])scores.Clone();
                    CausalSoftmax.Run(inPlace, inPlace, row, isa);
                    Assert.That(inPlace, Is.EqualTo(p), "in place");
                }
            }
        }
    }

    private static void Check(Random rng, KernelIsa isa, int t, int d, int stride, bool blend, float magnitude)
    {
        // q, k, v interleaved in one [t, 3·stride] buffer like the QKV projection; output strided too.
        int ld = 3 * stride;
        float[] qkv = KernelTestSupport.RandomNonZero(rng, (t - 1) * ld + 2 * stride + d, 1f);
        float qk = MathF.Sqrt(magnitude);
        for (int i = 0; i < t; i++)
            for (int e = 0; e < d; e++) { qkv[i * ld + e] *= qk; qkv[i * ld + stride + e] *= qk; }
        ReadOnlySpan<float> q = qkv, k = qkv.AsSpan(stride), v = qkv.AsSpan(2 * stride);
        int outStride = stride + 1;
        var got = new float[(t - 1) * outStride + d + 1];
        got[^1] = 42f;
        var want = new float[got.Length - 1];
        float[] blendRow = blend ? KernelTestSupport.RandomNonZero(rng, d) : [];
        float[] gate = blend ? [.. KernelTestSupport.RandomNonZero(rng, d).Select(g => 1f / (1f + MathF.Exp(-3 * g)))] : [];
        float scale = 1f / MathF.Sqrt(d);
        var scratch = new float[CausalAttention.ScratchFloats(t, d)];
        Array.Fill(scratch, float.NaN); // scratch content must not matter
        CausalAttention.Run(q, ld, k, ld, v, ld, t, d, scale, got.AsSpan(0, got.Length - 1), outStride, scratch, blendRow, gate, isa);
        CausalAttention.Scalar(q, ld, k, ld, v, ld, t, d, scale, want, outStride, blendRow, gate);
        Assert.That(got[^1], Is.EqualTo(42f), "wrote past the output");
        // Bound = 2e-6·(max|ref| + |ref|)  [float dot products, exp ≈ 1.4 ulp, sums with four partial accumulators,
        //                                  the 1/(sum + 1e-8) scaling and the blend]
        //       + 2·(d + 2)·2^-24·max_{j≤i} scale·Σ_e|q_ie·k_je| · max|v|
        // The second term is the worst-case rounding of a float score (d products and sums without FMA, the scale)
        // pushed through exp: a score error Δ changes p_j by p_j·Δ relative, and o is a convex combination of
        // v rows. It only matters for large scores, where the max subtraction is exercised.
        double maxRef = 0, maxV = 0, maxAbsScore = 0;
        for (int i = 0; i < t; i++)
            for (int e = 0; e < d; e++) { maxRef = Math.Max(maxRef, Math.Abs(want[i * outStride + e])); maxV = Math.Max(maxV, Math.Abs(v[i * ld + e])); }
        for (int i = 0; i < t; i++)
            for (int j = 0; j <= i; j++)
            {
                double a = 0;
                for (int e = 0; e < d; e++) a += Math.Abs(q[i * ld + e] * k[j * ld + e]);
                maxAbsScore = Math.Max(maxAbsScore, a * scale);
            }
        double scoreTerm = 2.0 * (d + 2) * Math.Pow(2, -24) * maxAbsScore * maxV;
        for (int i = 0; i < t; i++)
        {
            for (int e = 0; e < d; e++)
            {
                double w = want[i * outStride + e];
                Assert.That(got[i * outStride + e], Is.EqualTo(w).Within(2e-6 * (maxRef + Math.Abs(w)) + scoreTerm),
                    $"{isa} t {t} d {d} stride {stride} blend {blend} magnitude {magnitude}: row {i} col {e}");
            }
            for (int e = d; e < outStride && i < t - 1; e++)
                Assert.That(got[i * outStride + e], Is.Zero, "wrote outside the d columns");
        }
    }

    [Test]
    public void CausalAttention_small_t_all_d([ValueSource(nameof(Isas))] KernelIsa isa)
    {
        var rng = new Random(99);
        for (int t = 1; t <= 70; t++)
        {
            for (int d = 1; d <= 40; d++)
                Check(rng, isa, t, d, d + (t + d) % 3 * 5, blend: (t + d) % 2 == 0, magnitude: 4f);
            Check(rng, isa, t, 64, 64 + t % 2 * 8, blend: t % 2 == 1, magnitude: 4f);
        }
    }

    [Test]
    public void CausalAttention_long_t([ValueSource(nameof(Isas))] KernelIsa isa)
    {
        var rng = new Random(100);
        foreach (int t in new[] { 128, 200 })
            foreach (int d in new[] { 1, 3, 8, 12, 16, 17, 32, 40, 48, 64 })
                Check(rng, isa, t, d, d + 3, blend: d % 2 == 0, magnitude: 4f);
        foreach (int d in new[] { 8, 13, 64 })
            Check(rng, isa, 1000, d, d + 2, blend: d == 8, magnitude: 4f);
    }

    [Test]
    public void CausalAttention_large_scores_need_the_max_subtraction([ValueSource(nameof(Isas))] KernelIsa isa)
    {
        var rng = new Random(101);
        foreach (int t in new[] { 1, 5, 17, 64, 130 })
            foreach (int d in new[] { 4, 12, 33 })
                foreach (float magnitude in new[] { 200f, 3000f })
                    Check(rng, isa, t, d, d, blend: t % 2 == 0, magnitude);
    }

    [Test]
    public void CausalAttention_bad_arguments_throw()
    {
        var buf = new float[100];
        var scratch = new float[CausalAttention.ScratchFloats(4, 8)];
        Assert.That(() => CausalAttention.Run(buf, 24, buf, 24, buf, 24, 5, 8, 1f, buf, 8, scratch, [], []), Throws.ArgumentException, "q too short");
        Assert.That(() => CausalAttention.Run(buf, 4, buf, 24, buf, 24, 4, 8, 1f, buf, 8, scratch, [], []), Throws.ArgumentException, "stride < d");
        Assert.That(() => CausalAttention.Run(buf, 24, buf, 24, buf, 24, 4, 8, 1f, buf, 8, new float[10], [], []), Throws.ArgumentException, "scratch");
        Assert.That(() => CausalAttention.Run(buf, 24, buf, 24, buf, 24, 4, 8, 1f, buf, 8, scratch, new float[8], new float[7]), Throws.ArgumentException, "gate");
        Assert.That(() => CausalAttention.Run(buf, 24, buf, 24, buf, 24, 4, 8, 1f, buf, 40, scratch, [], []), Throws.ArgumentException, "output");
        Assert.That(CausalAttention.ScratchFloats(4096, 64), Is.LessThan(4096 * 200), "O(t·d)");
    }

    [Test]
    public void CausalAttention_first_row_computes_exactly_the_tail_rows([ValueSource(nameof(Isas))] KernelIsa isa)
    {
        // The last-timestep readout asks for rows firstRow..t-1 only: those must be bitwise the rows of a
        // full call (same keys, same arithmetic), and rows before firstRow must be left untouched.
        var rng = new Random(77);
        foreach (var (t, d) in new[] { (1, 8), (5, 3), (64, 32), (33, 12), (130, 16), (96, 48), (71, 17) })
        {
            int ld = 3 * d + 1;
            float[] qkv = KernelTestSupport.RandomNonZero(rng, t * ld);
            float[] blend = KernelTestSupport.RandomNonZero(rng, d), gate = [.. KernelTestSupport.RandomNonZero(rng, d).Select(g => 1f / (1f + MathF.Exp(-g)))];
            var scratch = new float[CausalAttention.ScratchFloats(t, d)];
            var full = new float[t * d];
            CausalAttention.Run(qkv, ld, qkv.AsSpan(d), ld, qkv.AsSpan(2 * d), ld, t, d, 0.3f, full, d, scratch, blend, gate, isa);
            foreach (int first in new[] { 0, t / 2, Math.Min(t / 2 + 5, t - 1), t - 1 })
            {
                var part = new float[t * d];
                Array.Fill(part, 42f);
                CausalAttention.Run(qkv, ld, qkv.AsSpan(d), ld, qkv.AsSpan(2 * d), ld, t, d, 0.3f, part, d, scratch, blend, gate, first, isa);
                Assert.That(part.AsSpan(first * d).ToArray(), Is.EqualTo(full.AsSpan(first * d).ToArray()), $"t {t} d {d} first {first}");
                Assert.That(part.Take(first * d), Is.All.EqualTo(42f), "rows before firstRow untouched");

                // The q rows before firstRow are not read: NaN there changes nothing.
                var poisoned = (float[])qkv.Clone();
                for (int i = 0; i < first; i++) poisoned.AsSpan(i * ld, d).Fill(float.NaN);
                var again = new float[t * d];
                CausalAttention.Run(poisoned, ld, poisoned.AsSpan(d), ld, poisoned.AsSpan(2 * d), ld, t, d, 0.3f, again, d, scratch, blend, gate, first, isa);
                Assert.That(again.AsSpan(first * d).ToArray(), Is.EqualTo(full.AsSpan(first * d).ToArray()), $"t {t} d {d} first {first}, NaN queries before it");
            }
        }
        Assert.That(() => CausalAttention.Run(new float[24], 8, new float[24], 8, new float[24], 8, 3, 8, 1f, new float[24], 8,
            new float[CausalAttention.ScratchFloats(3, 8)], [], [], 3), Throws.InstanceOf<ArgumentOutOfRangeException>());
    }
}
