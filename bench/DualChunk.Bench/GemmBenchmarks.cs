using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Running;
using DualChunk.Kernels;

namespace DualChunk.Bench;

/// <summary>
/// Single-thread GEMM C = A·W + b on the model's shapes, on the job's ISA (the path <see cref="KernelSelection"/>
/// picks in the job's process: see <see cref="IsaJobs"/>), with GFLOP/s (2·M·N·K / time) and % of the measured peak.
/// M = 64 is one chunk of rows (config a); M = 1 is the last-timestep readout; 4096×256×768 is config d's QKV.
/// </summary>
[Config(typeof(GemmConfig))]
public class GemmBenchmarks
{
    /// <summary>M×K·K×N as "MxKxN".</summary>
    [Params("64x256x768", "64x256x1024", "64x1024x256", "64x287x256", "1x256x768", "1x256x1024", "1x1024x256", "1x287x256", "4096x256x768")]
    public string Shape { get; set; } = "64x256x768";

    private int _m, _k, _n;
    private float[] _a = [], _bias = [], _c = [];
    private PackedMatrix _w = null!;

    [GlobalSetup]
    public void Setup()
    {
        (_m, _k, _n) = ParseShape(Shape);
        var random = new Random(42);
        _a = Enumerable.Range(0, _m * _k).Select(_ => random.NextSingle() - 0.5f).ToArray();
        var w = Enumerable.Range(0, _k * _n).Select(_ => random.NextSingle() - 0.5f).ToArray();
        _bias = Enumerable.Range(0, _n).Select(_ => random.NextSingle() - 0.5f).ToArray();
        _c = new float[_m * _n];
        _w = PackedMatrix.Pack(w, _k, _n);
    }

    [Benchmark]
    public void Run() => Gemm.Run(_a, _m, _k, _w, _bias, _c, _n, GemmEpilogue.Bias);

    internal static (int M, int K, int N) ParseShape(string shape)
    {
        var parts = shape.Split('x');
        return (Cases.Int(parts[0]), Cases.Int(parts[1]), Cases.Int(parts[2]));
    }

    internal static double Flops(BenchmarkCase benchmarkCase)
    {
        var shape = Cases.Param(benchmarkCase, nameof(Shape));
        if (shape is null) return 0;
        var (m, k, n) = ParseShape(shape);
        return 2.0 * m * n * k;
    }

    internal sealed class GemmConfig : ManualConfig
    {
        public GemmConfig() => AddColumn(
            new GflopsColumn(Flops, RateBasis.Median), new GflopsColumn(Flops, RateBasis.Min),
            new PercentOfPeakColumn(Flops, RateBasis.Median), new PercentOfPeakColumn(Flops, RateBasis.Min));
    }
}

/// <summary>
/// The FFN-up GEMM [M,256]·[256,1024] with its GELU epilogue against the plain bias epilogue on the same shape:
/// the difference is what the epilogue costs. GFLOP/s count only the GEMM's 2·M·N·K.
/// </summary>
[Config(typeof(GemmBenchmarks.GemmConfig))]
public class GemmEpilogueBenchmarks
{
    /// <summary>M×K·K×N as "MxKxN".</summary>
    [Params("64x256x1024")]
    public string Shape { get; set; } = "64x256x1024";

    /// <summary>The epilogue applied to each finished tile.</summary>
    [Params(GemmEpilogue.Bias, GemmEpilogue.BiasGelu)]
    public GemmEpilogue Epilogue { get; set; } = GemmEpilogue.Bias;

    private int _m, _n;
    private float[] _a = [], _bias = [], _c = [];
    private PackedMatrix _w = null!;

    [GlobalSetup]
    public void Setup()
    {
        int k;
        (_m, k, _n) = GemmBenchmarks.ParseShape(Shape);
        var random = new Random(42);
        // Unit-variance A (LayerNorm output) and W of variance 1/K, as RandomWeights: the pre-activations the GELU
        // sees have standard deviation ≈ 1, as in the model.
        _a = Enumerable.Range(0, _m * k).Select(_ => 3.4641f * (random.NextSingle() - 0.5f)).ToArray();
        var w = Enumerable.Range(0, k * _n).Select(_ => 3.4641f / MathF.Sqrt(k) * (random.NextSingle() - 0.5f)).ToArray();
        _bias = Enumerable.Range(0, _n).Select(_ => 0.2f * (random.NextSingle() - 0.5f)).ToArray();
        _c = new float[_m * _n];
        _w = PackedMatrix.Pack(w, k, _n);
    }

    [Benchmark]
    public void Run() => Gemm.Run(_a, _m, _a.Length / _m, _w, _bias, _c, _n, Epilogue);
}
