using System.Diagnostics;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Running;
using DualChunk.Core;

namespace DualChunk.Bench;

/// <summary>
/// One forward pass of a random model with Edifice's default dims (E=287, H=256, NH=8, L=4, C=64, F=1024),
/// single-threaded, for the speed issue's configs a–d, on the job's ISA. Workspace pre-planned: steady-state
/// latency, 0 B allocated per call. GFLOP/s by the nominal formula (<see cref="Nominal.ForwardFlops"/>).
/// </summary>
[Config(typeof(EndToEndConfig))]
public class EndToEndBenchmarks
{
    private DualChunkModel _model = null!;
    private Workspace _workspace = null!;
    private float[] _input = [];
    private float[] _output = [];

    /// <summary>"B,N": a = 1,64; b = 1,128; c = 16,64; d = 1,4096.</summary>
    [Params("a:1x64", "b:1x128", "c:16x64", "d:1x4096")]
    public string Config { get; set; } = "a:1x64";

    [Params(OutputMode.LastTimestep)]
    public OutputMode Mode { get; set; }

    // Parsed once in Setup: parsing Config per call allocated two substrings (56 B per op in MemoryDiagnoser).
    private int _batch, _seqLen;

    [GlobalSetup]
    public void Setup()
    {
        _batch = Nominal.Batch(Config);
        _seqLen = Nominal.SeqLen(Config);
        _model = DualChunkModel.FromTensors(RandomWeights.Create(Nominal.Default, 1), Nominal.Default);
        _workspace = _model.CreateWorkspace(_batch, _seqLen);
        _input = RandomWeights.Input(_batch * _seqLen * Nominal.Default.EmbedDim, 2);
        _output = new float[_model.OutputLength(_batch, _seqLen, Mode)];
        // Tier 1 before BenchmarkDotNet's own warm-up: small configs need a few hundred calls (OSR, then tier 1
        // after the call-count threshold and the tiering delay). 500 calls or 3 s, at least 5 calls.
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < 500 && (i < 5 || clock.Elapsed.TotalSeconds < 3); i++)
            Forward();
    }

    [Benchmark]
    public void Forward() => _model.Run(_input, _batch, _seqLen, _output, Mode, _workspace);

    private static double Flops(BenchmarkCase benchmarkCase)
    {
        var config = Cases.Param(benchmarkCase, nameof(Config));
        return config is null ? 0 : Nominal.ForwardFlops(Nominal.Default, Nominal.Batch(config), Nominal.SeqLen(config));
    }

    private sealed class EndToEndConfig : ManualConfig
    {
        public EndToEndConfig() => AddColumn(new GflopsColumn(Flops, RateBasis.Median), new GflopsColumn(Flops, RateBasis.Min));
    }
}

/// <summary>The default model and the nominal FLOP count.</summary>
public static class Nominal
{
    /// <summary>Edifice's default dims: E=287, H=256, NH=8, L=4, C=64, F=1024.</summary>
    public static readonly ModelConfig Default = new(287, 256, 8, 4, 64, 1024);

    /// <summary>B of a "name:BxN" config.</summary>
    public static int Batch(string config) => Cases.Int(config[(config.IndexOf(':', StringComparison.Ordinal) + 1)..config.IndexOf('x', StringComparison.Ordinal)]);

    /// <summary>N of a "name:BxN" config.</summary>
    public static int SeqLen(string config) => Cases.Int(config[(config.IndexOf('x', StringComparison.Ordinal) + 1)..]);

    /// <summary>
    /// 2·B·N·(E·H [if E≠H] + L·(4H² + 2·H·F)) + L·(4·B·N·C·H + 4·B·NC²·H), as BenchCommand and the issue count it
    /// (the whole pass in all-positions mode; attention over full squares).
    /// </summary>
    public static double ForwardFlops(ModelConfig m, int batch, int seqLen)
    {
        double b = batch, n = seqLen, e = m.EmbedDim, h = m.HiddenSize, f = m.FfnSize, l = m.NumLayers, c = m.ChunkSize, nc = n / c;
        double dense = 2 * b * n * ((m.HasInputProjection ? e * h : 0) + l * (4 * h * h + 2 * h * f));
        return dense + l * (4 * b * n * c * h + 4 * b * nc * nc * h);
    }
}
