using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Running;
using DualChunk.Kernels;

namespace DualChunk.Bench;

/// <summary>
/// The fused causal attention kernel on the model's shapes (H = 256, NH = 8, D = 32), all 8 heads of one
/// [T, 3H] qkv block: intra-chunk (T = C = 64, gate blend fused), inter-chunk (T = NC = 64 summaries, config d;
/// T = 256 summaries for N = 16384) and the last-timestep readout (query row C-1 only). GFLOP/s by the nominal
/// formula of the FLOP count, 4·T²·H per block (q·kᵀ and P·V over the full square, not halved for the causal
/// mask), 4·T·H for one row.
/// </summary>
[Config(typeof(AttentionConfig))]
public class AttentionBenchmarks
{
    private const int H = 256, Heads = 8, D = H / Heads, T = 64, LongT = 256;
    private static readonly float Scale = 1f / MathF.Sqrt(D);
    private float[] _qkv = [], _blend = [], _gate = [], _out = [], _scratch = [];

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(7);
        _qkv = Enumerable.Range(0, LongT * 3 * H).Select(_ => 2 * random.NextSingle() - 1).ToArray();
        _blend = Enumerable.Range(0, H).Select(_ => random.NextSingle() - 0.5f).ToArray();
        _gate = Enumerable.Range(0, H).Select(_ => random.NextSingle()).ToArray();
        _out = new float[LongT * H];
        _scratch = new float[CausalAttention.ScratchFloats(LongT, D)];
    }

    /// <summary>One chunk, 8 heads, blend with the chunk's inter-chunk row fused into the store.</summary>
    [Benchmark]
    public void IntraChunk() => RunHeads(T, blend: true, firstRow: 0);

    /// <summary>Causal attention over NC = 64 chunk summaries, 8 heads (no blend).</summary>
    [Benchmark]
    public void InterChunk() => RunHeads(T, blend: false, firstRow: 0);

    /// <summary>Causal attention over NC = 256 chunk summaries (N = 16384), 8 heads (no blend).</summary>
    [Benchmark]
    public void InterChunkLong() => RunHeads(LongT, blend: false, firstRow: 0);

    /// <summary>Only query row C-1 of one chunk, 8 heads (last-timestep readout of the last block).</summary>
    [Benchmark]
    public void IntraChunkLastRow() => RunHeads(T, blend: true, firstRow: T - 1);

    private void RunHeads(int t, bool blend, int firstRow)
    {
        ReadOnlySpan<float> qkv = _qkv;
        for (int head = 0; head < Heads; head++)
        {
            int col = head * D;
            CausalAttention.Run(qkv[col..], 3 * H, qkv[(H + col)..], 3 * H, qkv[(2 * H + col)..], 3 * H, t, D, Scale,
                _out.AsSpan(col), H, _scratch, blend ? _blend.AsSpan(col, D) : default, blend ? _gate.AsSpan(col, D) : default, firstRow);
        }
    }

    internal static double Flops(BenchmarkCase benchmarkCase) => Cases.Method(benchmarkCase) switch
    {
        nameof(IntraChunkLastRow) => 4.0 * T * H,
        nameof(InterChunkLong) => 4.0 * LongT * LongT * H,
        _ => 4.0 * T * T * H,
    };

    private sealed class AttentionConfig : ManualConfig
    {
        public AttentionConfig() => AddColumn(
            new GflopsColumn(Flops, RateBasis.Median), new GflopsColumn(Flops, RateBasis.Min),
            new PercentOfPeakColumn(Flops, RateBasis.Median), new PercentOfPeakColumn(Flops, RateBasis.Min));
    }
}
