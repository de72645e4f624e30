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
/// Where one last_timestep forward pass spends its time, per box of the model: each benchmark runs one box
/// (DualChunkBlock's Summaries, Attention, OutputProjection, FeedForward, and the input projection and final norm)
/// at every place ForwardPass.Run runs it (L−1 full blocks row group by row group, then the last block's reduced
/// work), through the same box methods on the same workspace buffers, on one thread. <see cref="Forward"/> is the
/// whole pass for comparison; the "Share" column gives each part's percentage of the sum of the parts, and on the
/// Forward row the sum itself.
/// </summary>
/// <remarks>
/// Each part runs over all row groups in turn on the same group buffers, so they are as cache-hot as in the pass,
/// but the residual rows are re-read per part.
/// </remarks>
[Config(typeof(BreakdownConfig))]
public class BreakdownBenchmarks
{
    /// <summary>"name:BxN" (default dims, C = 64).</summary>
    [Params("a:1x64", "b:1x128", "d:1x4096")]
    public string Config { get; set; } = "a:1x64";

    private static readonly ModelConfig M = Nominal.Default;
    private int _b, _n, _rows;
    private ForwardPass<LayerNormLayer, GeluFeedForward> _pass = null!;
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
        _pass = (ForwardPass<LayerNormLayer, GeluFeedForward>)ForwardPass.Create(M, tensors, copy: true);
        _input = RandomWeights.Input(_rows * M.EmbedDim, 2);
        _output = new float[_b * M.HiddenSize];
        _model = DualChunkModel.FromTensors(tensors, M);
        _ws = _model.CreateWorkspace(_b, _n);
        _modelWs = _model.CreateWorkspace(_b, _n);
        // Fill every buffer with real activations (one pass of the parts in order), then warm to tier 1.
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < 300 && (i < 3 || clock.Elapsed.TotalSeconds < 1.5); i++)
        {
            InputProjection(); Summaries(); Attention(); OutputProjection(); FeedForward(); FinalNorm(); Forward();
        }
    }

    private int H => M.HiddenSize;
    private int Full => M.NumLayers - 1;   // blocks run over all positions; the last one is reduced
    private OnThisThread Ex => new(_ws.Workers, 0);

    /// <summary>The whole pass (DualChunkModel.Run with a caller-owned workspace).</summary>
    [Benchmark]
    public void Forward() => _model.Run(_input, _b, _n, _output, OutputMode.LastTimestep, _modelWs);

    /// <summary>x = input · W_in + b_in: [B·N, E]·[E, H].</summary>
    [Benchmark]
    public void InputProjection() => Ex.Dense(_pass.InputProjection!.Value, _input, _rows, M.EmbedDim, _ws.X, H, 0, H);

    /// <summary>LN, chunk means, summaries q̄|k̄|v̄ = h̄ · W_qkv + b, causal attention over them; every block (the last: its last chunk).</summary>
    [Benchmark]
    public void Summaries()
    {
        for (int l = 0; l < M.NumLayers; l++)
            _pass.Block(l).Summaries(Ex, _ws.X, _ws.Normed, _ws.ChunkMeans, _ws.Summaries, _ws.Inter, _b, _n, lastChunkOnly: l == Full);
    }

    /// <summary>qkv = h · W_qkv + b and intra-chunk attention with the blend, per row group; the last block: each last chunk, row C−1.</summary>
    [Benchmark]
    public void Attention()
    {
        int g = _ws.Workers.GroupRows, c = M.ChunkSize, chunks = _n / c;
        Span<float> normed = _ws.Normed[..(_rows * H)], qkv = _ws.Workers.GroupQkv(0), attn = _ws.Workers.GroupAttn(0), inter = _ws.Inter;
        for (int l = 0; l < Full; l++)
            for (int r0 = 0; r0 < _rows; r0 += g)
            {
                int n = Math.Min(g, _rows - r0);
                _pass.Block(l).Attention(Ex, normed.Slice(r0 * H, n * H), n, qkv, inter.Slice(r0 / c * H, n / c * H), attn, lastRowOnly: false);
            }
        for (int b = 0; b < _b; b++)
            _pass.Block(Full).Attention(Ex, normed.Slice((b * _n + _n - c) * H, c * H), c, qkv, inter.Slice((b * chunks + chunks - 1) * H, H), attn, lastRowOnly: true);
    }

    /// <summary>x += attn · W_out + b_out per row group; the last block: B rows (with the copies of the rows).</summary>
    [Benchmark]
    public void OutputProjection()
    {
        Span<float> x = _ws.X[..(_rows * H)], attn = _ws.Workers.GroupAttn(0);
        int g = _ws.Workers.GroupRows, c = M.ChunkSize;
        for (int l = 0; l < Full; l++)
            for (int r0 = 0; r0 < _rows; r0 += g)
            {
                int n = Math.Min(g, _rows - r0);
                _pass.Block(l).OutputProjection(Ex, attn, n, x.Slice(r0 * H, n * H));
            }
        Span<float> lastX = _ws.Last[..(_b * H)], lastAttn = _ws.LastAttn[..(_b * H)];
        for (int b = 0; b < _b; b++)
        {
            attn.Slice((c - 1) * H, H).CopyTo(lastAttn.Slice(b * H, H));
            x.Slice((b * _n + _n - 1) * H, H).CopyTo(lastX.Slice(b * H, H));
        }
        _pass.Block(Full).OutputProjection(Ex, lastAttn, _b, lastX);
    }

    /// <summary>x += GELU(LN(x) · W_up + b_up) · W_down + b_down per row group; the last block: B rows.</summary>
    [Benchmark]
    public void FeedForward()
    {
        Span<float> x = _ws.X[..(_rows * H)], normed = _ws.Normed[..(_rows * H)];
        int g = _ws.Workers.GroupRows;
        for (int l = 0; l < Full; l++)
            for (int r0 = 0; r0 < _rows; r0 += g)
            {
                int n = Math.Min(g, _rows - r0);
                _pass.Block(l).FeedForward(Ex, x.Slice(r0 * H, n * H), normed.Slice(r0 * H, n * H), n);
            }
        _pass.Block(Full).FeedForward(Ex, _ws.Last[..(_b * H)], _ws.LastNormed[..(_b * H)], _b);
    }

    /// <summary>Final LN of the B readout rows.</summary>
    [Benchmark]
    public void FinalNorm() => Ex.Norm(_pass.FinalNorm, _ws.Last[..(_b * H)], _b, _output);

    /// <summary>The parts whose times add up to a forward pass.</summary>
    internal static readonly string[] Parts =
        [nameof(InputProjection), nameof(Summaries), nameof(Attention), nameof(OutputProjection), nameof(FeedForward), nameof(FinalNorm)];

    /// <summary>FLOP of one call of a part: dense layers exactly, attention by the nominal formula (full squares).</summary>
    internal static double Flops(BenchmarkCase benchmarkCase)
    {
        var config = Cases.Param(benchmarkCase, nameof(Config));
        if (config is null) return 0;
        double b = Nominal.Batch(config), n = Nominal.SeqLen(config), rows = b * n, h = M.HiddenSize, f = M.FfnSize, e = M.EmbedDim,
            c = M.ChunkSize, nc = n / c, full = M.NumLayers - 1;
        bool split = PackedMatrix.CanStartColumnRange(M.HiddenSize);
        return Cases.Method(benchmarkCase) switch
        {
            nameof(Forward) => Nominal.ForwardFlops(M, (int)b, (int)n),
            nameof(InputProjection) => 2 * rows * e * h,
            nameof(Attention) => full * 2 * rows * h * 3 * h + (split ? 2 * b * c * h * 2 * h + 2 * b * h * h : 2 * b * c * h * 3 * h)
                + full * 4 * rows * c * h + 4 * b * c * h,
            nameof(Summaries) => (full + 1) * 2 * b * nc * h * 3 * h + full * 4 * b * nc * nc * h + 4 * b * nc * h,
            nameof(OutputProjection) => full * 2 * rows * h * h + 2 * b * h * h,
            nameof(FeedForward) => 2 * (full * 2 * rows * h * f + 2 * b * h * f),
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
