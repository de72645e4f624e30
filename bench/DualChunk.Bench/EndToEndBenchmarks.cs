using BenchmarkDotNet.Attributes;
using DualChunk.Core;

namespace DualChunk.Bench;

/// <summary>
/// One forward pass of a random model with Edifice's default dims (E=287, H=256, NH=8, L=4, C=64),
/// single-threaded, for the speed issue's configs a–d. Workspace pre-planned: steady-state latency.
/// </summary>
[MemoryDiagnoser]
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

    private int Batch => int.Parse(Config[2..Config.IndexOf('x', StringComparison.Ordinal)], System.Globalization.CultureInfo.InvariantCulture);
    private int SeqLen => int.Parse(Config[(Config.IndexOf('x', StringComparison.Ordinal) + 1)..], System.Globalization.CultureInfo.InvariantCulture);

    [GlobalSetup]
    public void Setup()
    {
        var config = new ModelConfig(287, 256, 8, 4, 64, 1024);
        _model = DualChunkModel.FromTensors(RandomWeights.Create(config, 1), config);
        _workspace = _model.CreateWorkspace(Batch, SeqLen);
        _input = RandomWeights.Input(Batch * SeqLen * config.EmbedDim, 2);
        _output = new float[_model.OutputLength(Batch, SeqLen, Mode)];
    }

    [Benchmark]
    public void Forward() => _model.Run(_input, Batch, SeqLen, _output, Mode, _workspace);
}
