using System.Diagnostics;
using System.Globalization;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using DualChunk.Core;
using DualChunk.Kernels;

namespace DualChunk.Bench;

/// <summary>
/// Where one last_timestep forward pass spends its time, per layer type: each benchmark runs one layer type at every
/// place DualChunkModel.Forward runs it (L−1 full blocks, then the last block's reduced work), on the real shapes and
/// the same layer structs and workspace buffers. <see cref="Forward"/> is the whole pass for comparison; the
/// "Share" column gives each part's percentage of the sum of the parts, and on the Forward row the sum itself.
/// </summary>
/// <remarks>
/// Mirrors DualChunkModel.Forward's last_timestep path (keep in step with it). A block runs row group by row group
/// there (QKV, intra-chunk attention, out-proj, FFN per group of Workspace.GroupRows rows, the FFN in blocks of
/// Workspace.FfnRowBlock rows); here each part runs over all groups in turn on the same group buffers, so they are
/// as cache-hot as in the pass, but the residual rows are re-read per part.
/// </remarks>
[Config(typeof(BreakdownConfig))]
public class BreakdownBenchmarks
{
    /// <summary>"name:BxN" (default dims, C = 64).</summary>
    [Params("a:1x64", "b:1x128", "d:1x4096")]
    public string Config { get; set; } = "a:1x64";

    private static readonly ModelConfig M = Nominal.Default;
    private int _b, _n, _rows;
    private DenseLayer _inputProjection;
    private DualChunkBlock[] _blocks = [];
    private LayerNormLayer _finalNorm;
    private Workspace _ws = null!;
    private float[] _input = [], _output = [];
    private DualChunkModel _model = null!;
    private Workspace _modelWs = null!;

    [GlobalSetup]
    public void Setup()
    {
        _b = Nominal.Batch(Config);
        _n = Nominal.SeqLen(Config);
        _rows = _b * _n;
        var tensors = RandomWeights.Create(M, 1);
        _inputProjection = new DenseLayer(tensors[CheckpointNames.InputKernel], tensors[CheckpointNames.InputBias], GemmEpilogue.Bias, copy: true);
        _blocks = Enumerable.Range(1, M.NumLayers).Select(l => new DualChunkBlock(M, tensors, l, copy: true)).ToArray();
        _finalNorm = new LayerNormLayer(tensors[CheckpointNames.FinalGamma], tensors[CheckpointNames.FinalBeta], copy: true);
        _ws = new Workspace(M, _b, _n, workers: 1);
        _input = RandomWeights.Input(_rows * M.EmbedDim, 2);
        _output = new float[_b * M.HiddenSize];
        _model = DualChunkModel.FromTensors(tensors, M);
        _modelWs = _model.CreateWorkspace(_b, _n);
        // Fill every buffer with real activations (one pass of the parts in order), then warm to tier 1.
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < 300 && (i < 3 || clock.Elapsed.TotalSeconds < 1.5); i++)
        {
            InputProjection(); AttnNorm(); Qkv(); InterChunk(); IntraChunk(); AttnOut(); FfnNorm(); FfnUp(); FfnDown(); FinalNorm(); Forward();
        }
    }

    private int H => M.HiddenSize;
    private int Full => M.NumLayers - 1;   // blocks run over all positions; the last one is reduced
    private bool SplitQkv => H % PackedMatrix.PanelWidth == 0;

    /// <summary>The whole pass (DualChunkModel.Run with a caller-owned workspace).</summary>
    [Benchmark]
    public void Forward() => _model.Run(_input, _b, _n, _output, OutputMode.LastTimestep, _modelWs);

    /// <summary>x = input · W_in + b_in: [B·N, E]·[E, H].</summary>
    [Benchmark]
    public void InputProjection() => _inputProjection.Apply(_input, _rows, M.EmbedDim, _ws.X, H);

    /// <summary>LN before attention: all rows in every block (the last block needs every chunk's mean).</summary>
    [Benchmark]
    public void AttnNorm()
    {
        foreach (ref readonly var block in _blocks.AsSpan())
            block.AttnNorm.Apply(_ws.X, _rows, _ws.Normed);
    }

    /// <summary>qkv = h · W_qkv + b: [G, H]·[H, 3H] per row group in full blocks; in the last, K and V of each last chunk and Q of its last row.</summary>
    [Benchmark]
    public void Qkv()
    {
        Span<float> normed = _ws.Normed[..(_rows * H)], qkv = _ws.GroupQkv(0);
        int g = _ws.GroupRows, c = M.ChunkSize;
        for (int l = 0; l < Full; l++)
            for (int r0 = 0; r0 < _rows; r0 += g)
                _blocks[l].Qkv.Apply(normed[(r0 * H)..], Math.Min(g, _rows - r0), H, qkv, 3 * H);
        ref readonly var last = ref _blocks[^1];
        for (int b = 0; b < _b; b++)
        {
            var hChunk = normed[((b * _n + _n - c) * H)..];
            if (SplitQkv)
            {
                last.Qkv.ApplyColumns(hChunk, c, H, qkv, 3 * H, H, 2 * H);
                last.Qkv.ApplyColumns(hChunk[((c - 1) * H)..], 1, H, qkv[((c - 1) * 3 * H)..], 3 * H, 0, H);
            }
            else
            {
                last.Qkv.Apply(hChunk, c, H, qkv, 3 * H);
            }
        }
    }

    /// <summary>Chunk means of h, summaries q̄|k̄|v̄ = h̄ · W_qkv + b, causal attention over them; the last block: the last chunk's row.</summary>
    [Benchmark]
    public void InterChunk()
    {
        int chunks = _n / M.ChunkSize;
        for (int l = 0; l < M.NumLayers; l++)
        {
            ref readonly var block = ref _blocks[l];
            block.Inter.ChunkMeans(_ws.Normed, 0, _b * chunks, _ws.ChunkMeans);
            block.Qkv.Apply(_ws.ChunkMeans, _b * chunks, H, _ws.Summaries, 3 * H);
            for (int b = 0; b < _b; b++)
                for (int head = 0; head < block.Inter.Heads; head++)
                    block.Inter.ApplyHead(_ws.Summaries, _n, _ws.Inter, _ws.Scratch(0), lastChunkOnly: l == Full, b, head);
        }
    }

    /// <summary>The chunk means and summary GEMM alone (part of <see cref="InterChunk"/>, not counted separately in the share).</summary>
    [Benchmark]
    public void InterSummariesOnly()
    {
        int chunks = _n / M.ChunkSize;
        for (int l = 0; l < M.NumLayers; l++)
        {
            _blocks[l].Inter.ChunkMeans(_ws.Normed, 0, _b * chunks, _ws.ChunkMeans);
            _blocks[l].Qkv.Apply(_ws.ChunkMeans, _b * chunks, H, _ws.Summaries, 3 * H);
        }
    }

    /// <summary>Causal attention inside every chunk (row group by row group) with the gate blend fused; the last block: position N−1 only.</summary>
    [Benchmark]
    public void IntraChunk()
    {
        int c = M.ChunkSize, g = _ws.GroupRows, chunks = _n / c;
        Span<float> qkv = _ws.GroupQkv(0), attn = _ws.GroupAttn(0), inter = _ws.Inter;
        for (int l = 0; l < M.NumLayers; l++)
        {
            ref readonly var block = ref _blocks[l];
            if (l < Full)
            {
                for (int r0 = 0; r0 < _rows; r0 += g)
                    for (int chunk = 0; chunk < Math.Min(g, _rows - r0) / c; chunk++)
                        for (int head = 0; head < block.Intra.Heads; head++)
                            block.Intra.ApplyHead(qkv[(chunk * c * 3 * H)..], inter.Slice((r0 / c + chunk) * H, H), block.Gate, attn[(chunk * c * H)..], _ws.Scratch(0), false, head);
                continue;
            }
            for (int b = 0; b < _b; b++)
                for (int head = 0; head < block.Intra.Heads; head++)
                    block.Intra.ApplyHead(qkv, inter.Slice((b * chunks + chunks - 1) * H, H), block.Gate, attn, _ws.Scratch(0), true, head);
        }
    }

    /// <summary>x += attn · W_out + b_out: [G, H]·[H, H] per row group; the last block: B rows (with the copies of the rows).</summary>
    [Benchmark]
    public void AttnOut()
    {
        Span<float> x = _ws.X[..(_rows * H)], attn = _ws.GroupAttn(0);
        int g = _ws.GroupRows, c = M.ChunkSize;
        for (int l = 0; l < Full; l++)
            for (int r0 = 0; r0 < _rows; r0 += g)
                _blocks[l].AttnOut.Apply(attn, Math.Min(g, _rows - r0), H, x[(r0 * H)..], H);
        Span<float> lastX = _ws.Last[..(_b * H)], lastAttn = _ws.LastAttn[..(_b * H)];
        for (int b = 0; b < _b; b++)
        {
            attn.Slice((c - 1) * H, H).CopyTo(lastAttn.Slice(b * H, H));
            x.Slice((b * _n + _n - 1) * H, H).CopyTo(lastX.Slice(b * H, H));
        }
        _blocks[^1].AttnOut.Apply(lastAttn, _b, H, lastX, H);
    }

    /// <summary>LN before the FFN, per row block; the last block: B rows.</summary>
    [Benchmark]
    public void FfnNorm() => FfnPart(0);

    /// <summary>GELU(h · W_up + b_up): [rows, H]·[H, F] with GELU fused.</summary>
    [Benchmark]
    public void FfnUp() => FfnPart(1);

    /// <summary>x += ffn · W_down + b_down: [rows, F]·[F, H] with the residual add fused.</summary>
    [Benchmark]
    public void FfnDown() => FfnPart(2);

    private void FfnPart(int part)
    {
        for (int l = 0; l < M.NumLayers; l++)
        {
            ref readonly var block = ref _blocks[l];
            bool last = l == Full;
            int rows = last ? _b : _rows;
            Span<float> x = last ? _ws.Last : _ws.X, normed = last ? _ws.LastNormed : _ws.Normed, ffn = _ws.Ffn(0);
            for (int r0 = 0; r0 < rows; r0 += Workspace.FfnRowBlock)
            {
                int n = Math.Min(Workspace.FfnRowBlock, rows - r0);
                var xBlock = x.Slice(r0 * H, n * H);
                var hBlock = normed.Slice(r0 * H, n * H);
                switch (part)
                {
                    case 0: block.FfnNorm.Apply(xBlock, n, hBlock); break;
                    case 1: block.FfnUp.Apply(hBlock, n, H, ffn, M.FfnSize); break;
                    default: block.FfnDown.Apply(ffn, n, M.FfnSize, xBlock, H); break;
                }
            }
        }
    }

    /// <summary>Final LN of the B readout rows.</summary>
    [Benchmark]
    public void FinalNorm() => _finalNorm.Apply(_ws.Last[..(_b * H)], _b, _output);

    /// <summary>The parts whose times add up to a forward pass.</summary>
    internal static readonly string[] Parts =
        [nameof(InputProjection), nameof(AttnNorm), nameof(Qkv), nameof(InterChunk), nameof(IntraChunk), nameof(AttnOut), nameof(FfnNorm), nameof(FfnUp), nameof(FfnDown), nameof(FinalNorm)];

    /// <summary>FLOP of one call of a part: dense layers exactly, attention by the nominal formula (full squares).</summary>
    internal static double Flops(BenchmarkCase benchmarkCase)
    {
        var config = Cases.Param(benchmarkCase, nameof(Config));
        if (config is null) return 0;
        double b = Nominal.Batch(config), n = Nominal.SeqLen(config), rows = b * n, h = M.HiddenSize, f = M.FfnSize, e = M.EmbedDim,
            c = M.ChunkSize, nc = n / c, full = M.NumLayers - 1;
        bool split = M.HiddenSize % PackedMatrix.PanelWidth == 0;
        return Cases.Method(benchmarkCase) switch
        {
            nameof(Forward) => Nominal.ForwardFlops(M, (int)b, (int)n),
            nameof(InputProjection) => 2 * rows * e * h,
            nameof(Qkv) => full * 2 * rows * h * 3 * h + (split ? 2 * b * c * h * 2 * h + 2 * b * h * h : 2 * b * c * h * 3 * h),
            nameof(InterChunk) => (full + 1) * 2 * b * nc * h * 3 * h + full * 4 * b * nc * nc * h + 4 * b * nc * h,
            nameof(IntraChunk) => full * 4 * rows * c * h + 4 * b * c * h,
            nameof(AttnOut) => full * 2 * rows * h * h + 2 * b * h * h,
            nameof(FfnUp) or nameof(FfnDown) => full * 2 * rows * h * f + 2 * b * h * f,
            _ => 0,
        };
    }

    private sealed class BreakdownConfig : ManualConfig
    {
        public BreakdownConfig() => AddColumn(
            new GflopsColumn(Flops, RateBasis.Median), new GflopsColumn(Flops, RateBasis.Min),
            new PercentOfPeakColumn(Flops, RateBasis.Min), new ShareColumn());
    }

    /// <summary>A part's median over the sum of the parts' medians (same config and job); on Forward rows, that sum.</summary>
    private sealed class ShareColumn : IColumn
    {
        public string Id => nameof(ShareColumn);
        public string ColumnName => "Share";
        public bool AlwaysShow => true;
        public ColumnCategory Category => ColumnCategory.Custom;
        public int PriorityInCategory => 10;
        public bool IsNumeric => false;
        public UnitType UnitType => UnitType.Dimensionless;
        public string Legend => "Part: % of Σ parts (medians). Forward row: Σ parts in ms, to compare with Forward's median";
        public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
        public bool IsAvailable(Summary summary) => true;
        public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

        public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
        {
            string? config = Cases.Param(benchmarkCase, nameof(Config));
            double sum = 0;
            foreach (var other in summary.BenchmarksCases)
            {
                if (Cases.Param(other, nameof(Config)) != config || other.Job.Id != benchmarkCase.Job.Id || !Parts.Contains(Cases.Method(other)))
                    continue;
                var s = summary[other]?.ResultStatistics;
                if (s is null) return "-";
                sum += s.Median;
            }
            if (sum <= 0) return "-";
            string method = Cases.Method(benchmarkCase);
            if (method == nameof(Forward))
                return "Σ parts " + (sum / 1e6).ToString("F3", CultureInfo.InvariantCulture) + " ms";
            var own = summary[benchmarkCase]?.ResultStatistics;
            if (own is null || !Parts.Contains(method)) return "-";
            return (100 * own.Median / sum).ToString("F1", CultureInfo.InvariantCulture) + "%";
        }
    }
}
