using BenchmarkDotNet.Attributes;
using DualChunk.Core;

namespace DualChunk.Bench;

/// <summary>
/// The serving path: pooled <see cref="DualChunkModel.Run(ReadOnlySpan{float}, int, int, Span{float}, OutputMode, CancellationToken)"/>
/// with 1 and 2 intra-op threads, for configs a, b, c, d (the speed and two-core issues) at Edifice's default dims
/// (E=287, H=256, NH=8, L=4, C=64, random weights). MemoryDiagnoser: must read 0 B.
/// </summary>
[MemoryDiagnoser]
public class ServingBenchmarks
{
    private DualChunkModel _model = null!;
    private float[] _input = [];
    private float[] _output = [];

    /// <summary>"B,N": a = 1,64; b = 1,128; c = 16,64; d = 1,4096.</summary>
    [Params("a:1x64", "b:1x128", "c:16x64", "d:1x4096")]
    public string Config { get; set; } = "a:1x64";

    [Params(1, 2)]
    public int Threads { get; set; } = 1;

    [Params(OutputMode.LastTimestep)]
    public OutputMode Mode { get; set; }

    // Parsed once in Setup: parsing in the benchmark body would allocate substrings per call.
    private int _batch, _seqLen;

    [GlobalSetup]
    public void Setup()
    {
        _batch = int.Parse(Config[2..Config.IndexOf('x', StringComparison.Ordinal)], System.Globalization.CultureInfo.InvariantCulture);
        _seqLen = int.Parse(Config[(Config.IndexOf('x', StringComparison.Ordinal) + 1)..], System.Globalization.CultureInfo.InvariantCulture);
        var config = new ModelConfig(287, 256, 8, 4, 64, 1024);
        _model = DualChunkModel.FromTensors(RandomWeights.Create(config, 1), config, new DualChunkModelOptions { MaxDegreeOfParallelism = Threads });
        _model.WarmUp(_batch, _seqLen);
        _input = RandomWeights.Input(_batch * _seqLen * config.EmbedDim, 2);
        _output = new float[_model.OutputLength(_batch, _seqLen, Mode)];
    }

    [GlobalCleanup]
    public void Cleanup() => _model.Dispose();

    [Benchmark]
    public void Run() => _model.Run(_input, _batch, _seqLen, _output, Mode);
}

/// <summary>Load time of the default-dims model (E=287, H=256, NH=8, L=4) from safetensors vs a memory-mapped .dcw.</summary>
[MemoryDiagnoser]
public class LoadBenchmarks
{
    private string _dir = "";
    private string _safetensors = "", _dcw = "";

    [GlobalSetup]
    public void Setup()
    {
        var config = new ModelConfig(287, 256, 8, 4, 64, 1024);
        var tensors = RandomWeights.Create(config, 1);
        _dir = Path.Combine(Path.GetTempPath(), "dualchunk-bench-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
        _dcw = Path.Combine(_dir, "m.dcw");
        _safetensors = Path.Combine(_dir, "m.safetensors");
        DcwFile.Write(_dcw, config, tensors);
        SafetensorsWriter.Write(_safetensors, config, tensors);
    }

    [GlobalCleanup]
    public void Cleanup() => Directory.Delete(_dir, recursive: true);

    [Benchmark(Baseline = true)]
    public void LoadSafetensors()
    {
        using var model = DualChunkModel.Load(_safetensors, 64);
    }

    [Benchmark]
    public void LoadDcwMapped()
    {
        using var model = DualChunkModel.Load(_dcw);
    }

    [Benchmark]
    public void LoadDcwRead()
    {
        using var model = DualChunkModel.Load(_dcw, new DualChunkModelOptions { MemoryMap = false });
    }
}
