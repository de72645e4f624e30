using System.Diagnostics;
using System.Globalization;

namespace DualChunk.Bench.Peers;

/// <summary>One method at one N: the median of repeated single forwards, wall and this thread's CPU time.</summary>
public sealed record GflopsRow(string Method, string Label, int N, int C, double Flops, double MedianSeconds, double CpuSeconds, int Calls)
{
    public double GflopsWall => Flops / MedianSeconds / 1e9;

    public double GflopsCpu => Flops / CpuSeconds / 1e9;
}

/// <summary>
/// GFLOP/s of one layer's attention (B = 1, NH = 8, D = 32), one thread, at N = 1,024 and 4,096: naive dense, the
/// vectorised tiled baseline, the engine's own causal kernel over all N positions (a yardstick for the tiled one) and
/// DCA fused at C = 64. FLOPs counted are those causal attention needs, QKᵀ and P·V over the unmasked pairs, 2·D each:
/// N(N+1)/2 pairs per head for the dense methods (the naive one computes all N², the count is the same), and
/// N/C·C(C+1)/2 intra plus NC(NC+1)/2 inter pairs for DCA.
/// </summary>
public static class Gflops
{
    public static readonly int[] Ns = [1024, 4096];

    public static List<GflopsRow> Run(BenchMode mode, TextWriter log)
    {
        ArgumentNullException.ThrowIfNull(mode);
        ArgumentNullException.ThrowIfNull(log);
        var methods = new[] { AttentionMethod.ByKey("dense"), AttentionMethod.ByKey("tiled"), AttentionMethod.Yardstick, AttentionMethod.ByKey("dca-fused") };
        var rows = new List<GflopsRow>();
        foreach (int n in Ns)
        {
            var qkv = MemorySweep.Inputs(n, seed: 9);
            var output = new float[n * AttentionMethod.Hidden];
            foreach (var m in methods)
            {
                const int c = 64;
                m.Run(qkv, n, c, output); // JIT and first touch, untimed
                var wall = new List<double>();
                var cpu = new List<double>();
                var budget = Stopwatch.StartNew();
                while (wall.Count < 3 || (budget.Elapsed.TotalSeconds < mode.SweepRepeatSeconds * 3 && wall.Count < 50))
                {
                    long cpu0 = ThreadCpuNs(), t0 = Stopwatch.GetTimestamp();
                    m.Run(qkv, n, c, output);
                    wall.Add(Stopwatch.GetElapsedTime(t0).TotalSeconds);
                    cpu.Add((ThreadCpuNs() - cpu0) / 1e9);
                }
                wall.Sort();
                cpu.Sort();
                var row = new GflopsRow(m.Key, m.Label, n, c, Flops(m, n, c), Timing.Percentile(wall, 0.5), Timing.Percentile(cpu, 0.5), wall.Count);
                rows.Add(row);
                log.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"[gflops] {m.Key,-12} N={n,5}: median {Format.Seconds(row.MedianSeconds)} wall, {Format.Seconds(row.CpuSeconds)} CPU, {row.GflopsWall:F1} GFLOP/s wall, {row.GflopsCpu:F1} GFLOP/s CPU, {row.Calls} calls"));
            }
        }
        return rows;
    }

    /// <summary>The causal pairs each method's result needs, 2·D FLOPs each for QKᵀ and for P·V, all heads.</summary>
    public static double Flops(AttentionMethod method, long n, long c)
    {
        ArgumentNullException.ThrowIfNull(method);
        if (!method.UsesChunks) return TiledAttention.CausalFlops(n);
        long nc = n / c;
        return 2.0 * 2 * AttentionMethod.HeadDim * AttentionMethod.Heads * (nc * c * (c + 1) / 2.0 + nc * (nc + 1) / 2.0);
    }

    /// <summary>This thread's time on a CPU (ns) from /proc/thread-self/schedstat; 0 where there is none.</summary>
    public static long ThreadCpuNs()
    {
        try
        {
            string text = File.ReadAllText("/proc/thread-self/schedstat");
            return long.Parse(text.AsSpan(0, text.IndexOf(' ', StringComparison.Ordinal)), CultureInfo.InvariantCulture);
        }
        catch (IOException)
        {
            return 0;
        }
        catch (UnauthorizedAccessException)
        {
            return 0;
        }
    }
}
