using DualChunk.Kernels;
using NUnit.Framework;

namespace DualChunk.Tests.Kernels;

[TestFixture]
public class ErfGeluTests
{
    [Test]
    public void ErfReference_matches_known_values()
    {
        // Known values (relative tolerance 1e-15: the reference's stated accuracy).
        (double x, double erf)[] known =
        [
            (0.5, 0.5204998778130465377), (1.0, 0.8427007929497148693), (2.0, 0.9953222650189527342),
            (3.0, 0.9999779095030014146), (0.01, 0.011283415555849618), (-1.5, -0.9661051464753107271),
            (0.0, 0.0), (6.0, 0.99999999999999997848), (1e-10, 1.1283791670955126e-10),
        ];
        foreach (var (x, erf) in known)
            Assert.That(Gelu.ErfReference(x), Is.EqualTo(erf).Within(1e-15 * Math.Abs(erf) + 1e-300), $"erf({x})");
        // erfc in the tail, where 1 − erf would lose everything: erfc(5) = 1.5374597944280348502e-12, erfc(10) = 2.0884875837625447570e-45.
        Assert.That(Gelu.ErfcReference(5.0), Is.EqualTo(1.5374597944280348502e-12).Within(1e-14 * 1.5374597944280348502e-12));
        Assert.That(Gelu.ErfcReference(10.0), Is.EqualTo(2.0884875837625447570e-45).Within(1e-14 * 2.0884875837625447570e-45));
        Assert.That(double.IsNaN(Gelu.ErfReference(double.NaN)), Is.True);
    }

    /// <summary>
    /// The inputs of the sweeps: 2^24 + 1 evenly spaced points over [−8, 8]; every float in [0.5, 1) (around the
    /// centre |x| = 0.8125 of GELU's polynomial); the 2^20
    /// floats of smallest magnitude of each sign (denormals, ±0); every 1024th bit pattern over all floats (every
    /// exponent); and the special values.
    /// </summary>
    private static float[] SweepInputs()
    {
        var list = new List<float>(1 << 26);
        const int dense = 1 << 24;
        for (int i = 0; i <= dense; i++) list.Add((float)(-8.0 + 16.0 * i / dense));
        for (int b = BitConverter.SingleToInt32Bits(0.5f); b < BitConverter.SingleToInt32Bits(1f); b++)
        {
            list.Add(BitConverter.Int32BitsToSingle(b));
        }
        for (int b = 0; b < 1 << 20; b++)
        {
            float f = BitConverter.Int32BitsToSingle(b);
            list.Add(f); list.Add(-f);
        }
        for (long b = 0; b < 1L << 32; b += 1024)
        {
            float f = BitConverter.Int32BitsToSingle((int)(uint)b);
            if (!float.IsNaN(f)) list.Add(f);
        }
        list.AddRange([0f, -0f, float.PositiveInfinity, float.NegativeInfinity, float.MaxValue, -float.MaxValue,
            float.Epsilon, -float.Epsilon, 0.9f, -0.9f, 4f, -4f, MathF.BitIncrement(0.9f), MathF.BitIncrement(4f)]);
        return [.. list];
    }

    private static readonly Lazy<float[]> Inputs = new(SweepInputs);

    private static double[] References(float[] x, Func<double, double> f)
    {
        var r = new double[x.Length];
        Parallel.For(0, (x.Length + 65535) / 65536, c =>
        {
            int end = Math.Min(x.Length, (c + 1) * 65536);
            for (int i = c * 65536; i < end; i++) r[i] = f(x[i]);
        });
        return r;
    }

    [Test]
    public void Gelu_sweep_within_bound_on_every_path()
    {
        float[] x = Inputs.Value;
        double[] reference = References(x, Gelu.ScalarReference);
        var y = new float[x.Length];
        foreach (KernelIsa isa in KernelTestSupport.Isas())
        {
            Gelu.Run(x, y, isa);
            double maxAbs = 0, maxRel = 0, worst = 0; float worstAt = 0;
            for (int i = 0; i < x.Length; i++)
            {
                double r = reference[i];
                double e = y[i] == r ? 0 : Math.Abs(y[i] - r);
                if (Math.Abs(r) < 1) maxAbs = Math.Max(maxAbs, e);
                // relative error where the output is a normal float well above the absolute floor
                if (Math.Abs(r) >= 1e-6) maxRel = Math.Max(maxRel, e / Math.Abs(r));
                double budget = e / (Gelu.MaxAbsError + Gelu.MaxRelError * Math.Abs(r));
                // A NaN (output or reference) is an unbounded error; `!(budget <= worst)` would let the next input
                // overwrite it.
                if (double.IsNaN(budget)) budget = double.PositiveInfinity;
                if (budget > worst) { worst = budget; worstAt = x[i]; }
            }
            TestContext.Out.WriteLine($"gelu {isa}: max abs error (|GELU| < 1) {maxAbs:E3}, max rel error (|GELU| ≥ 1e-6) {maxRel:E3}, " +
                $"worst use of the bound {worst:F3} at x = {worstAt:R}");
            Assert.That(worst, Is.LessThanOrEqualTo(1.0), $"{isa} at x = {worstAt:R}");
        }
        double worstScalar = 0; float worstScalarAt = 0;
        for (int i = 0; i < x.Length; i += 97)
        {
            double r = reference[i];
            float s = Gelu.Scalar(x[i]);
            double budget = s == r ? 0 : Math.Abs(s - r) / (Gelu.MaxAbsError + Gelu.MaxRelError * Math.Abs(r));
            if (double.IsNaN(budget)) budget = double.PositiveInfinity;
            if (budget > worstScalar) { worstScalar = budget; worstScalarAt = x[i]; }
        }
        TestContext.Out.WriteLine($"gelu scalar float twin: worst use of the bound {worstScalar:F3} at x = {worstScalarAt:R} (every 97th input)");
        Assert.That(worstScalar, Is.LessThanOrEqualTo(1.0), $"scalar at x = {worstScalarAt:R}");
    }

    /// <summary>
    /// The Vector512 GELU uses AVX-512's vrndscaleps and vscalefps where the Vector256 one uses the 1.5·2^23
    /// rounding and the exponent-bit add (ISimd.RoundToCarrier, CarriedInteger, ScaleExp2): the same arithmetic, so every output must be the same bits (NaN inputs: NaN out, of either sign). The bitwise pin
    /// tests rely on it, since the FFN's GELU is in every pinned shape.
    /// </summary>
    [Test]
    public void Gelu_Vector512_gives_the_Vector256_bits()
    {
        if (KernelSelection.Isa < KernelIsa.Vector512)
            Assert.Ignore($"this process runs {KernelSelection.Isa}: no Vector512 path to compare (CI's default run on an AVX-512 machine has it)");
        float[] x = [.. Inputs.Value, float.NaN, -float.NaN, BitConverter.Int32BitsToSingle(0x7fc12345), BitConverter.Int32BitsToSingle(unchecked((int)0xffa00001))];
        var y512 = new float[x.Length];
        var y256 = new float[x.Length];
        Gelu.Run(x, y512, KernelIsa.Vector512);
        Gelu.Run(x, y256, KernelIsa.Vector256);
        int differing = 0; int first = -1;
        for (int i = 0; i < x.Length; i++)
        {
            bool same = float.IsNaN(y256[i]) ? float.IsNaN(y512[i])
                : BitConverter.SingleToInt32Bits(y512[i]) == BitConverter.SingleToInt32Bits(y256[i]);
            if (!same && differing++ == 0) first = i;
        }
        Assert.That(differing, Is.Zero, differing == 0 ? "" :
            $"{differing} of {x.Length} outputs differ; first at x = {x[first]:R}: Vector512 {y512[first]:R}, Vector256 {y256[first]:R}");
    }

    [Test]
    public void Gelu_special_values_on_every_path()
    {
        // NaN in, NaN out (whatever the other lanes hold); +∞ → +∞; far negative inputs (and −∞) within the absolute
        // part of the bound of GELU(−∞) = −0; far positive inputs exactly x.
        float[] x = [float.NaN, 1f, -float.NaN, -2f, 0.3f, float.PositiveInfinity, float.NegativeInfinity, float.MaxValue,
            -float.MaxValue, -1e6f, 1e6f, -6f, 6f, -0f, 0f, float.NaN];
        var y = new float[x.Length];
        foreach (KernelIsa isa in KernelTestSupport.Isas())
        {
            Gelu.Run(x, y, isa);
            Check(y, isa.ToString());
        }
        Check(x.Select(Gelu.Scalar).ToArray(), "scalar");

        static void Check(float[] y, string path)
        {
            Assert.That(float.IsNaN(y[0]) && float.IsNaN(y[2]) && float.IsNaN(y[15]), Is.True, $"{path}: NaN in, NaN out");
            Assert.That(y.Where((_, i) => i is not (0 or 2 or 15)).Any(float.IsNaN), Is.False, $"{path}: no NaN from numbers");
            Assert.That(y[5], Is.EqualTo(float.PositiveInfinity), $"{path}: +∞");
            Assert.That(y[7], Is.EqualTo(float.MaxValue), $"{path}: MaxValue");
            Assert.That(y[10], Is.EqualTo(1e6f), $"{path}: 1e6");
            foreach (int i in new[] { 6, 8, 9 })
                Assert.That(Math.Abs(y[i]), Is.LessThanOrEqualTo(Gelu.MaxAbsError), $"{path}: x = {i}");
            Assert.That(y[13], Is.EqualTo(0f), $"{path}: −0");
            Assert.That(y[14], Is.EqualTo(0f), $"{path}: +0");
        }
    }

    [Test]
    public void Exp_accuracy_on_every_width()
    {
        // Every 256th float in [−87.3, 0] plus the ends; relative error vs Math.Exp.
        var xs = new List<float>();
        for (int b = BitConverter.SingleToInt32Bits(-0f); b <= BitConverter.SingleToInt32Bits(-87.3f); b += 256) xs.Add(BitConverter.Int32BitsToSingle(b));
        for (float f = 0; f < 88f; f += 0.0009765625f) xs.Add(f);
        float[] x = [.. xs];
        var y = new float[x.Length];
        foreach (KernelIsa isa in KernelTestSupport.Isas())
        {
            ElementwiseDriver.Run<ExpOperator>(x, y, isa);
            double max = 0;
            for (int i = 0; i < x.Length; i++) max = Math.Max(max, Math.Abs(y[i] / Math.Exp(x[i]) - 1));
            TestContext.Out.WriteLine($"exp {isa}: max relative error {max:E3} ({max / Math.Pow(2, -24):F2} × 2^-24) over [-87.3, 88]");
            Assert.That(max, Is.LessThanOrEqualTo(2.5e-7));
        }
        float[] special = [-88f, -1e9f, float.NegativeInfinity, 89f, float.PositiveInfinity, float.NaN];
        var o = new float[special.Length];
        foreach (KernelIsa isa in KernelTestSupport.Isas())
        {
            ElementwiseDriver.Run<ExpOperator>(special, o, isa);
            Assert.That(o[..5], Is.EqualTo(new[] { 0f, 0f, 0f, float.PositiveInfinity, float.PositiveInfinity }), $"{isa}");
            Assert.That(float.IsNaN(o[5]), Is.True);
        }
    }

    private readonly struct ExpOperator : IUnaryOperator
    {
        public static float Invoke(float x) => ScalarMath.Exp(x);
        public static TVec Invoke<TSimd, TVec>(TVec x) where TSimd : struct, ISimd<TVec> where TVec : struct => VectorMath.Exp<TSimd, TVec>(x);
    }

    // Tails and in-place use of GELU are tested where production runs it, in the GEMM epilogue (GemmGeluEpilogueTests,
    // GemmTests, GuardPageTests); the sweeps above check the vector function itself over all float inputs.
}
