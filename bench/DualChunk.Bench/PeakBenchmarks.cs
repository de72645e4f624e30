using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using DualChunk.Kernels;

namespace DualChunk.Bench;

/// <summary>
/// One core's FP32 FMA peak on the job's ISA: <see cref="FmaPeak.Chains"/> independent accumulator chains of
/// <c>acc = MultiplyAddEstimate(acc, m, c)</c> on the widest vector the kernels use (Vector512 / Vector256 / Vector128),
/// registers only, no loads. 2·width FLOP per FMA. With FMA off (the portable job) the JIT emits a multiply and an add.
/// </summary>
[Config(typeof(PeakConfig))]
public class PeakBenchmarks
{
    /// <summary>Loop trips per call: long enough (~1–5 ms) that the call overhead vanishes.</summary>
    public const int Iterations = 200_000;

    [Benchmark]
    public float Fma() => FmaPeak.Run(KernelSelection.Isa, Iterations);

    private sealed class PeakConfig : ManualConfig
    {
        public PeakConfig()
        {
            static double Flops(BenchmarkDotNet.Running.BenchmarkCase c) => (double)Iterations * FmaPeak.FlopsPerIteration(IsaJobs.IsaOf(c.Job));
            AddColumn(new GflopsColumn(Flops, RateBasis.Median), new GflopsColumn(Flops, RateBasis.Min));
        }
    }
}

/// <summary>The register-only FMA loop (also used by the quick <c>peak</c> mode of the bench program).</summary>
public static class FmaPeak
{
    /// <summary>Independent accumulators: 2 FMA ports × 4-cycle latency needs ≥ 8; 12 leaves slack.</summary>
    public const int Chains = 12;

    /// <summary>FLOP of one loop trip on a path: 2 per lane per FMA.</summary>
    public static double FlopsPerIteration(KernelIsa isa) => 2.0 * Chains * IsaJobs.Width(isa);

    /// <summary>Runs the loop on a path; the result only defeats dead-code elimination.</summary>
    public static float Run(KernelIsa isa, int iterations) => isa switch
    {
        KernelIsa.Vector512 => Run512(iterations),
        KernelIsa.Vector256 => Run256(iterations),
        _ => Run128(iterations),
    };

    // acc ← acc·m + c converges to c / (1 − m) = 0.1: no overflow, no subnormals, however long it runs.
    private const float M = 0.999999f, C = 1e-7f;

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static float Run512(int n)
    {
        Vector512<float> m = Vector512.Create(M), c = Vector512.Create(C);
        Vector512<float> a0 = Vector512.Create(0.01f), a1 = a0 + c, a2 = a1 + c, a3 = a2 + c, a4 = a3 + c, a5 = a4 + c,
            a6 = a5 + c, a7 = a6 + c, a8 = a7 + c, a9 = a8 + c, a10 = a9 + c, a11 = a10 + c;
        for (int i = 0; i < n; i++)
        {
            a0 = Vector512.MultiplyAddEstimate(a0, m, c); a1 = Vector512.MultiplyAddEstimate(a1, m, c);
            a2 = Vector512.MultiplyAddEstimate(a2, m, c); a3 = Vector512.MultiplyAddEstimate(a3, m, c);
            a4 = Vector512.MultiplyAddEstimate(a4, m, c); a5 = Vector512.MultiplyAddEstimate(a5, m, c);
            a6 = Vector512.MultiplyAddEstimate(a6, m, c); a7 = Vector512.MultiplyAddEstimate(a7, m, c);
            a8 = Vector512.MultiplyAddEstimate(a8, m, c); a9 = Vector512.MultiplyAddEstimate(a9, m, c);
            a10 = Vector512.MultiplyAddEstimate(a10, m, c); a11 = Vector512.MultiplyAddEstimate(a11, m, c);
        }
        return Vector512.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static float Run256(int n)
    {
        Vector256<float> m = Vector256.Create(M), c = Vector256.Create(C);
        Vector256<float> a0 = Vector256.Create(0.01f), a1 = a0 + c, a2 = a1 + c, a3 = a2 + c, a4 = a3 + c, a5 = a4 + c,
            a6 = a5 + c, a7 = a6 + c, a8 = a7 + c, a9 = a8 + c, a10 = a9 + c, a11 = a10 + c;
        for (int i = 0; i < n; i++)
        {
            a0 = Vector256.MultiplyAddEstimate(a0, m, c); a1 = Vector256.MultiplyAddEstimate(a1, m, c);
            a2 = Vector256.MultiplyAddEstimate(a2, m, c); a3 = Vector256.MultiplyAddEstimate(a3, m, c);
            a4 = Vector256.MultiplyAddEstimate(a4, m, c); a5 = Vector256.MultiplyAddEstimate(a5, m, c);
            a6 = Vector256.MultiplyAddEstimate(a6, m, c); a7 = Vector256.MultiplyAddEstimate(a7, m, c);
            a8 = Vector256.MultiplyAddEstimate(a8, m, c); a9 = Vector256.MultiplyAddEstimate(a9, m, c);
            a10 = Vector256.MultiplyAddEstimate(a10, m, c); a11 = Vector256.MultiplyAddEstimate(a11, m, c);
        }
        return Vector256.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static float Run128(int n)
    {
        Vector128<float> m = Vector128.Create(M), c = Vector128.Create(C);
        Vector128<float> a0 = Vector128.Create(0.01f), a1 = a0 + c, a2 = a1 + c, a3 = a2 + c, a4 = a3 + c, a5 = a4 + c,
            a6 = a5 + c, a7 = a6 + c, a8 = a7 + c, a9 = a8 + c, a10 = a9 + c, a11 = a10 + c;
        for (int i = 0; i < n; i++)
        {
            a0 = Vector128.MultiplyAddEstimate(a0, m, c); a1 = Vector128.MultiplyAddEstimate(a1, m, c);
            a2 = Vector128.MultiplyAddEstimate(a2, m, c); a3 = Vector128.MultiplyAddEstimate(a3, m, c);
            a4 = Vector128.MultiplyAddEstimate(a4, m, c); a5 = Vector128.MultiplyAddEstimate(a5, m, c);
            a6 = Vector128.MultiplyAddEstimate(a6, m, c); a7 = Vector128.MultiplyAddEstimate(a7, m, c);
            a8 = Vector128.MultiplyAddEstimate(a8, m, c); a9 = Vector128.MultiplyAddEstimate(a9, m, c);
            a10 = Vector128.MultiplyAddEstimate(a10, m, c); a11 = Vector128.MultiplyAddEstimate(a11, m, c);
        }
        return Vector128.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
    }

    /// <summary>Best GFLOP/s over <paramref name="runs"/> timed calls (after a warm-up), for the quick mode.</summary>
    public static double Measure(KernelIsa isa, int runs)
    {
        for (int i = 0; i < 100; i++) Run(isa, Iterations); // tier 1 (OSR first)
        double best = 0;
        for (int r = 0; r < runs; r++)
        {
            long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
            Run(isa, PeakBenchmarks.Iterations);
            double ns = System.Diagnostics.Stopwatch.GetElapsedTime(t0).TotalNanoseconds;
            best = Math.Max(best, PeakBenchmarks.Iterations * FlopsPerIteration(isa) / ns);
        }
        return best;
    }

    private const int Iterations = PeakBenchmarks.Iterations;
}
