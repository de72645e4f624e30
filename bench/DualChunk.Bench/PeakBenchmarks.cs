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
        KernelIsa.Vector512 => Run<V512, Vector512<float>>(iterations),
        KernelIsa.Vector256 => Run<V256, Vector256<float>>(iterations),
        _ => Run<V128, Vector128<float>>(iterations),
    };

    // acc ← acc·m + c converges to c / (1 − m) = 0.1: no overflow, no subnormals, however long it runs.
    private const float M = 0.999999f, C = 1e-7f;

    /// <summary>The loop, once for every width (the kernels' ISimd ops; the JIT specializes it per vector struct).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static float Run<TOps, TV>(int n) where TOps : struct, ISimd<TV> where TV : struct
    {
        TV m = TOps.Create(M), c = TOps.Create(C);
        TV a0 = TOps.Create(0.01f), a1 = TOps.Add(a0, c), a2 = TOps.Add(a1, c), a3 = TOps.Add(a2, c), a4 = TOps.Add(a3, c),
            a5 = TOps.Add(a4, c), a6 = TOps.Add(a5, c), a7 = TOps.Add(a6, c), a8 = TOps.Add(a7, c), a9 = TOps.Add(a8, c),
            a10 = TOps.Add(a9, c), a11 = TOps.Add(a10, c);
        for (int i = 0; i < n; i++)
        {
            a0 = TOps.MultiplyAddEstimate(a0, m, c); a1 = TOps.MultiplyAddEstimate(a1, m, c);
            a2 = TOps.MultiplyAddEstimate(a2, m, c); a3 = TOps.MultiplyAddEstimate(a3, m, c);
            a4 = TOps.MultiplyAddEstimate(a4, m, c); a5 = TOps.MultiplyAddEstimate(a5, m, c);
            a6 = TOps.MultiplyAddEstimate(a6, m, c); a7 = TOps.MultiplyAddEstimate(a7, m, c);
            a8 = TOps.MultiplyAddEstimate(a8, m, c); a9 = TOps.MultiplyAddEstimate(a9, m, c);
            a10 = TOps.MultiplyAddEstimate(a10, m, c); a11 = TOps.MultiplyAddEstimate(a11, m, c);
        }
        TV sum = TOps.Add(TOps.Add(TOps.Add(a0, a1), TOps.Add(a2, a3)), TOps.Add(TOps.Add(a4, a5), TOps.Add(a6, a7)));
        return SimdReductions.Sum(TOps.Add(sum, TOps.Add(TOps.Add(a8, a9), TOps.Add(a10, a11))));
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
