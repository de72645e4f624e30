using System.Diagnostics;
using System.Globalization;
using DualChunk.Kernels;

namespace DualChunk.Bench;

/// <summary>
/// `blocking [runs]`: the GEMMs of config a (and a few of c/d) at forced blockings, best of <c>runs</c> calls each,
/// in GFLOP/s, alternating the blockings call by call so machine drift hits them alike. No BenchmarkDotNet: a quick
/// check of the cache-derived blocking (GemmBlocking) against the old constants on a loaded machine, where the best
/// call is the figure that survives.
/// </summary>
public static class BlockingCheck
{
    public static void Run(int runs)
    {
        var isa = KernelSelection.Isa;
        var machine = Gemm.BlockingOf(isa);
        (string Name, GemmBlocking Blocking)[] blockings =
        [
            ("old 48 x K128", new GemmBlocking(48, isa == KernelIsa.Vector512 ? 128 : 512)),
            ($"machine {machine}", machine),
            ("72 x whole K", new GemmBlocking(72, 1 << 20)),
        ];
        (int M, int K, int N, GemmEpilogue Epilogue, string What)[] shapes =
        [
            (64, 287, 256, GemmEpilogue.Bias, "input projection"),
            (64, 256, 768, GemmEpilogue.Bias, "qkv"),
            (64, 256, 256, GemmEpilogue.BiasAccumulate, "out-proj"),
            (64, 256, 1024, GemmEpilogue.BiasGelu, "FFN up + GELU"),
            (64, 1024, 256, GemmEpilogue.BiasAccumulate, "FFN down"),
            (1, 256, 768, GemmEpilogue.Bias, "summaries GEMV"),
            (1, 1024, 256, GemmEpilogue.BiasAccumulate, "1-row FFN down"),
            (128, 1024, 256, GemmEpilogue.BiasAccumulate, "FFN down, 128 rows"),
            (256, 256, 768, GemmEpilogue.Bias, "qkv, 256-row group"),
        ];
        Console.WriteLine($"isa={isa} caches: {Gemm.BlockingDescription}; best of {runs} calls, GFLOP/s");
        Console.WriteLine("| GEMM | M×K×N | " + string.Join(" | ", blockings.Select(b => b.Name)) + " |");
        Console.WriteLine("|---|---|" + string.Concat(blockings.Select(_ => "---:|")));
        var random = new Random(1);
        foreach (var (m, k, n, epilogue, what) in shapes)
        {
            var a = Enumerable.Range(0, m * k).Select(_ => random.NextSingle() - 0.5f).ToArray();
            var w = PackedMatrix.Pack(Enumerable.Range(0, k * n).Select(_ => (random.NextSingle() - 0.5f) * 0.1f).ToArray(), k, n, isa);
            var bias = new float[n];
            var c = new float[m * n];
            var best = new double[blockings.Length];
            Array.Fill(best, double.MaxValue);
            // Warm up for a second first: with tiered compilation, a shape's new kernel instantiations can run their
            // tier-0 or OSR code (3-6x slower for the GELU epilogue) through all the timed calls otherwise.
            long warmUntil = Stopwatch.GetTimestamp() + Stopwatch.Frequency;
            while (Stopwatch.GetTimestamp() < warmUntil)
            {
                foreach (var b in blockings) Gemm.Run(a, m, k, w, bias, c, n, epilogue, 0, n, isa, b.Blocking);
            }
            for (int r = 0; r < runs; r++)
            {
                for (int i = 0; i < blockings.Length; i++)
                {
                    if (epilogue == GemmEpilogue.BiasAccumulate) Array.Clear(c);
                    long t0 = Stopwatch.GetTimestamp();
                    Gemm.Run(a, m, k, w, bias, c, n, epilogue, 0, n, isa, blockings[i].Blocking);
                    best[i] = Math.Min(best[i], Stopwatch.GetElapsedTime(t0).TotalSeconds);
                }
            }
            double flops = 2.0 * m * k * n;
            Console.WriteLine($"| {what} | {m}×{k}×{n} | " + string.Join(" | ", best.Select(s => (flops / s / 1e9).ToString("F1", CultureInfo.InvariantCulture))) + " |");
        }
    }
}
