using System.Diagnostics;
using System.Globalization;
using DualChunk.Core;
using DualChunk.Kernels;

namespace DualChunk.Cli;

/// <summary>
/// <c>dualchunk bench</c>: times the forward pass on random input and prints one JSON line.
/// Nominal FLOPs (docs/benchmarks.md): 2·B·N·(E·H [if E≠H] + L·(3H² + H² + 2·H·F)) for the dense
/// layers, plus 4·B·N·C·H·L for intra-chunk QKᵀ and P·V and 4·B·NC²·H·L for inter-chunk ones.
/// </summary>
internal static class BenchCommand
{
    public static double NominalGflop(ModelConfig c, int batch, int seqLen)
    {
        double rows = (double)batch * seqLen, h = c.HiddenSize, chunks = seqLen / c.ChunkSize;
        double dense = 2 * rows * ((c.HasInputProjection ? c.EmbedDim * h : 0) + c.NumLayers * (4 * h * h + 2 * h * c.FfnSize));
        double attention = c.NumLayers * (4 * rows * c.ChunkSize * h + 4 * batch * chunks * chunks * h);
        return (dense + attention) / 1e9;
    }

    public static void Run(DualChunkModel model, int batch, int seqLen, OutputMode mode, int warmup, int iterations, TextWriter o)
    {
        var input = RandomWeights.Input(batch * seqLen * model.Config.EmbedDim, seed: 12345);
        var output = new float[model.OutputLength(batch, seqLen, mode)];
        var workspace = model.CreateWorkspace(batch, seqLen);
        for (int i = 0; i < warmup; i++)
            model.Run(input, batch, seqLen, output, mode, workspace);

        var samples = new double[iterations];
        long allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        for (int i = 0; i < iterations; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            model.Run(input, batch, seqLen, output, mode, workspace);
            samples[i] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
        }
        long allocated = GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;
        Array.Sort(samples);
        double median = Percentile(samples, 0.5), p90 = Percentile(samples, 0.9);
        double gflop = NominalGflop(model.Config, batch, seqLen);
        o.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{{\"median_ms\":{median:F4},\"p90_ms\":{p90:F4},\"min_ms\":{samples[0]:F4},\"gflop\":{gflop:F6},\"gflops_at_median\":{gflop / (median / 1000):F2},\"allocated_bytes_per_call\":{allocated / iterations},\"threads\":1,\"kernel_isa\":\"{KernelSelection.Isa}\",\"gemm_micro_kernel\":\"{Gemm.MicroKernel}\",\"batch\":{batch},\"seq_len\":{seqLen},\"chunk_size\":{model.Config.ChunkSize},\"output_mode\":\"{ModeName(mode)}\",\"iterations\":{iterations},\"warmup\":{warmup},\"config\":\"{model.Config}\"}}"));
    }

    public static string ModeName(OutputMode mode) => mode switch
    {
        OutputMode.All => "all",
        OutputMode.MeanPool => "mean",
        _ => "last",
    };

    private static double Percentile(double[] sorted, double q)
    {
        // Nearest-rank on the sorted sample, interpolated between neighbours.
        double pos = q * (sorted.Length - 1);
        int lo = (int)Math.Floor(pos), hi = Math.Min(lo + 1, sorted.Length - 1);
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
    }
}
