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

    [Test]
    public void OneKey_OutputIsTheValueBitwise([ValueSource(nameof(Isas))] KernelIsa isa)
    {
        // The inter-chunk attention of a one-chunk sequence is copied from v̄ instead of computed
        // (InterChunkAttention.ApplyHead): one key's weight is exp(0) / (1 + 1e-8) = 1 exactly, and 1·v = v. Every
        // head width (vector tails), magnitudes from tiny to huge, any finite score: the kernel stores v's bits.
        var rng = new Random(31);
        foreach (float magnitude in new[] { 1e-30f, 1e-3f, 1f, 1e3f, 1e30f })
        {
            for (int d = 1; d <= 40; d++)
            {
                float[] q = KernelTestSupport.RandomNonZero(rng, d, Math.Min(magnitude, 1e15f));
                float[] k = KernelTestSupport.RandomNonZero(rng, d, Math.Min(magnitude, 1e15f));
                float[] v = KernelTestSupport.RandomNonZero(rng, d, magnitude);
                var o = new float[d];
                var scratch = new float[CausalAttention.ScratchFloats(1, d)];
                CausalAttention.Run(q, d, k, d, v, d, 1, d, 1f / MathF.Sqrt(d), o, d, scratch, default, default, isa);
                for (int e = 0; e < d; e++)
                    Assert.That(BitConverter.SingleToInt32Bits(o[e]), Is.EqualTo(BitConverter.SingleToInt32Bits(v[e])), $"{isa} magnitude {magnitude} d {d} e {e}");
            }
        }
    }

    /// <summary>
    /// The kernel against its float64 twin, element by element, within the bound stated on <see cref="CausalAttention"/>:
    /// <c>2e-6·(max|ref| + |ref|) + (1 − g_e)·Σ_j p_ij·δ_ij·|v_je − o_ie|</c>. The first term covers the kernel's own
    /// arithmetic (exp ≈ 1.4 ulp, the sums down the keys, the 1/(sum + 1e-8) scaling, P·V and the blend). The second is the
    /// float32 rounding of the scores, which no float32 kernel avoids, pushed through the softmax: a score error Δ_ij moves
    /// o_i by Σ_j p_ij·(Δ_ij − Σ_k p_ik·Δ_ik)·v_j = Σ_j p_ij·Δ_ij·(v_j − o_i) (first order), and
    /// |Δ_ij| ≤ δ_ij = (d + 2)·2^-24·scale·Σ_e|q_ie·k_je| (the Qᵀ·scale rounding, d products, d − 1 sums; with or without
    /// FMA). p and o are the float64 twin's. With <paramref name="exactScores"/> q and k lie on a coarse dyadic grid and
    /// scale is a power of two, so every score and partial sum is exact in float32, δ = 0, and the first term alone is tested.
    /// </summary>
    private static double Check(Random rng, KernelIsa isa, int t, int d, int stride, bool blend, float magnitude, bool exactScores = false,
        int firstRow = 0)
    {
        // q, k, v interleaved in one [t, 3·stride] buffer like the QKV projection; output strided too.
        int ld = 3 * stride;
        float[] qkv = KernelTestSupport.RandomNonZero(rng, (t - 1) * ld + 2 * stride + d, 1f);
        float qk = MathF.Sqrt(magnitude), scale = 1f / MathF.Sqrt(d);
        if (exactScores)
        {
            qk = MathF.Pow(2, MathF.Round(MathF.Log2(qk)));
            scale = MathF.Pow(2, -MathF.Round(MathF.Log2(MathF.Sqrt(d))));
            for (int i = 0; i < t; i++)
                for (int e = 0; e < d; e++)
                {
                    qkv[i * ld + e] = MathF.Round(qkv[i * ld + e] * 8) / 8; // ±m/8, m in 1..8: never zero
                    qkv[i * ld + stride + e] = MathF.Round(qkv[i * ld + stride + e] * 8) / 8;
                }
        }
        for (int i = 0; i < t; i++)
            for (int e = 0; e < d; e++) { qkv[i * ld + e] *= qk; qkv[i * ld + stride + e] *= qk; }
        ReadOnlySpan<float> q = qkv, k = qkv.AsSpan(stride), v = qkv.AsSpan(2 * stride);
        int outStride = stride + 1;
        var got = new float[(t - 1) * outStride + d + 1];
        got[^1] = 42f;
        var want = new float[got.Length - 1];
        float[] blendRow = blend ? KernelTestSupport.RandomNonZero(rng, d) : [];
        float[] gate = blend ? [.. KernelTestSupport.RandomNonZero(rng, d).Select(g => 1f / (1f + MathF.Exp(-3 * g)))] : [];
        var scratch = new float[CausalAttention.ScratchFloats(t, d)];
        Array.Fill(scratch, float.NaN); // scratch content must not matter
        CausalAttention.Run(q, ld, k, ld, v, ld, t, d, scale, got.AsSpan(0, got.Length - 1), outStride, scratch, blendRow, gate, firstRow, isa);
        ScalarTwins.CausalAttention(q, ld, k, ld, v, ld, t, d, scale, want, outStride, blendRow, gate);
        Assert.That(got[^1], Is.EqualTo(42f), "wrote past the output");

        double maxRef = 0;
        for (int i = 0; i < t; i++)
            for (int e = 0; e < d; e++) maxRef = Math.Max(maxRef, Math.Abs(want[i * outStride + e]));
        double unit = Math.Pow(2, -24), worst = 0;
        var s = new double[t];
        var delta = new double[t];
        var o = new double[d];
        for (int i = firstRow; i < t; i++)
        {
            // Row i's probabilities (float64), the unblended output o_i and the score rounding bounds δ_ij.
            double max = double.NegativeInfinity, sum = 0;
            for (int j = 0; j <= i; j++)
            {
                double dot = 0, abs = 0;
                for (int e = 0; e < d; e++) { double x = (double)q[i * ld + e] * k[j * ld + e]; dot += x; abs += Math.Abs(x); }
                s[j] = dot * scale;
                delta[j] = exactScores ? 0 : (d + 2) * unit * scale * abs;
                if (exactScores && abs * 64 / (qk * qk) >= 1 << 23) Assert.Fail("the scores (and their differences) must be exact in float32");
                max = Math.Max(max, s[j]);
            }
            for (int j = 0; j <= i; j++) { s[j] = Math.Exp(s[j] - max); sum += s[j]; }
            sum += CausalAttention.DenominatorEpsilon;
            Array.Clear(o);
            for (int j = 0; j <= i; j++)
                for (int e = 0; e < d; e++) o[e] += s[j] / sum * v[j * ld + e];
            for (int e = 0; e < d; e++)
            {
                double sensitivity = 0;
                for (int j = 0; j <= i; j++) sensitivity += s[j] / sum * delta[j] * Math.Abs(v[j * ld + e] - o[e]);
                if (blend) sensitivity *= 1 - gate[e];
                double w = want[i * outStride + e];
                double bound = 2e-6 * (maxRef + Math.Abs(w)) + sensitivity;
                double err = Math.Abs(got[i * outStride + e] - w);
                worst = Math.Max(worst, err / bound);
                if (!(err <= bound))
                    Assert.Fail($"{isa} t {t} d {d} stride {stride} blend {blend} magnitude {magnitude} exact {exactScores}: row {i} col {e} " +
                        $"is {got[i * outStride + e]:R}, float64 twin {w:R}, error {err:E2} > bound {bound:E2} (score term {sensitivity:E2})");
            }
            for (int e = d; e < outStride && i < t - 1; e++)
                Assert.That(got[i * outStride + e], Is.Zero, "wrote outside the d columns");
        }
        return worst;
    }

    [Test]
    public void CausalAttention_small_t_all_d([ValueSource(nameof(Isas))] KernelIsa isa, [Values] bool exactScores)
    {
        var rng = new Random(99);
        double worst = 0;
        for (int t = 1; t <= 70; t++)
        {
            for (int d = 1; d <= 40; d++)
                worst = Math.Max(worst, Check(rng, isa, t, d, d + (t + d) % 3 * 5, blend: (t + d) % 2 == 0, magnitude: 4f, exactScores));
            worst = Math.Max(worst, Check(rng, isa, t, 64, 64 + t % 2 * 8, blend: t % 2 == 1, magnitude: 4f, exactScores));
        }
        TestContext.Out.WriteLine($"{isa} exact scores {exactScores}: worst error / bound = {worst:F3}");
    }

    [Test]
    public void CausalAttention_last_row_alone([ValueSource(nameof(Isas))] KernelIsa isa, [Values] bool exactScores)
    {
        // firstRow = t − 1 (the last-timestep readout) runs the one-row path: the same bound against the float64 twin
        // (and CausalAttention_first_row_computes_exactly_the_tail_rows holds it bitwise to the block's row).
        var rng = new Random(101);
        double worst = 0;
        for (int t = 1; t <= 70; t++)
            for (int d = 1; d <= 40; d += t % 3 + 1)
                worst = Math.Max(worst, Check(rng, isa, t, d, d + (t + d) % 3 * 5, blend: (t + d) % 2 == 0, magnitude: 4f, exactScores, firstRow: t - 1));
        foreach (int d in new[] { 3, 17, 32, 64 })
            worst = Math.Max(worst, Check(rng, isa, 1000, d, d + 2, blend: d == 32, magnitude: 4f, exactScores, firstRow: 999));
        TestContext.Out.WriteLine($"{isa} exact scores {exactScores}: worst error / bound = {worst:F3}");
    }

    [Test]
    public void CausalAttention_long_t([ValueSource(nameof(Isas))] KernelIsa isa, [Values] bool exactScores)
    {
        var rng = new Random(100);
        double worst = 0;
        foreach (int t in new[] { 128, 200 })
            foreach (int d in new[] { 1, 3, 8, 12, 16, 17, 32, 40, 48, 64 })
                worst = Math.Max(worst, Check(rng, isa, t, d, d + 3, blend: d % 2 == 0, magnitude: 4f, exactScores));
        foreach (int d in new[] { 8, 13, 64 })
            worst = Math.Max(worst, Check(rng, isa, 1000, d, d + 2, blend: d == 8, magnitude: 4f, exactScores));
        TestContext.Out.WriteLine($"{isa} exact scores {exactScores}: worst error / bound = {worst:F3}");
    }

    [Test]
    public void CausalAttention_large_scores_need_the_max_subtraction([ValueSource(nameof(Isas))] KernelIsa isa, [Values] bool exactScores)
    {
        var rng = new Random(101);
        double worst = 0;
        foreach (int t in new[] { 1, 5, 17, 64, 130 })
            foreach (int d in new[] { 4, 12, 33 })
                foreach (float magnitude in new[] { 200f, 3000f })
                    worst = Math.Max(worst, Check(rng, isa, t, d, d, blend: t % 2 == 0, magnitude, exactScores));
        TestContext.Out.WriteLine($"{isa} exact scores {exactScores}: worst error / bound = {worst:F3}");
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

    [Test]
    public void CausalAttention_row_does_not_depend_on_later_keys([ValueSource(nameof(Isas))] KernelIsa isa)
    {
        // A stream computes row i of the inter-chunk attention over i + 1 chunk summaries, a whole-sequence call over
        // T > i + 1: row i must be bitwise the same (later keys get exactly 0 weight; every score is one FMA chain
        // whichever loop of the kernel computes it). Every row of every T up to 41 and several head widths.
        var rng = new Random(78);
        foreach (int d in new[] { 1, 3, 8, 17, 32, 48 })
        {
            const int tMax = 41;
            int ld = 3 * d + 2;
            float[] qkv = KernelTestSupport.RandomNonZero(rng, tMax * ld, 2f);
            var scratch = new float[CausalAttention.ScratchFloats(tMax, d)];
            var full = new float[tMax * d];
            CausalAttention.Run(qkv, ld, qkv.AsSpan(d), ld, qkv.AsSpan(2 * d), ld, tMax, d, 0.3f, full, d, scratch, [], [], isa);
            for (int t = 1; t <= tMax; t++)
            {
                var prefix = new float[t * d];
                CausalAttention.Run(qkv, ld, qkv.AsSpan(d), ld, qkv.AsSpan(2 * d), ld, t, d, 0.3f, prefix, d, scratch, [], [], t - 1, isa);
                Assert.That(prefix.AsSpan((t - 1) * d).ToArray(), Is.EqualTo(full.AsSpan((t - 1) * d, d).ToArray()), $"d {d}: row {t - 1} over {t} keys vs {tMax}");
            }
        }
    }
}
