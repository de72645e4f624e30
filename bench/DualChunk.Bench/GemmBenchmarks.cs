using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using DualChunk.Kernels;

namespace DualChunk.Bench;

/// <summary>
/// Single-thread GEMM on the model's shapes, per supported ISA path, with a GFLOP/s column (2·M·N·K / mean time).
/// Run: <c>dotnet run -c Release --project bench/DualChunk.Bench -- --filter '*Gemm*' --job short</c>.
/// </summary>
[Config(typeof(GemmBenchmarkConfig))]
public class GemmBenchmarks
{
    /// <summary>M×K·K×N as "MxKxN".</summary>
    [Params("64x256x768", "64x256x1024", "64x1024x256", "64x287x256", "4096x256x768")]
    public string Shape { get; set; } = "64x256x768";

    [ParamsSource(nameof(SupportedIsas))]
    public KernelIsa Isa { get; set; }

    public static IEnumerable<KernelIsa> SupportedIsas()
        => Enum.GetValues<KernelIsa>().Where(isa => isa <= KernelSelection.Isa);

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
        _w = PackedMatrix.Pack(w, _k, _n, Isa);
    }

    [Benchmark]
    public void Run() => Gemm.Run(_a, _m, _k, _w, _bias, _c, _n, GemmEpilogue.Bias, Isa);

    internal static (int M, int K, int N) ParseShape(string shape)
    {
        var parts = shape.Split('x');
        return (int.Parse(parts[0], System.Globalization.CultureInfo.InvariantCulture),
            int.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture),
            int.Parse(parts[2], System.Globalization.CultureInfo.InvariantCulture));
    }
}

/// <summary>
/// Adds GFLOP/s from the mean time and from the minimum time (the latter is the figure to trust on a busy,
/// shared machine: other processes only ever make a run slower).
/// </summary>
public class GemmBenchmarkConfig : ManualConfig
{
    public GemmBenchmarkConfig() => AddColumn(StatisticColumn.Min, new GflopsColumn(fromMinimum: false), new GflopsColumn(fromMinimum: true));
}

/// <summary>2·M·N·K / time, from the benchmark's Shape parameter.</summary>
public sealed class GflopsColumn(bool fromMinimum) : IColumn
{
    public string Id => nameof(GflopsColumn) + (fromMinimum ? "Min" : "Mean");
    public string ColumnName => fromMinimum ? "GFLOP/s (min)" : "GFLOP/s";
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => fromMinimum ? 1 : 0;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => fromMinimum ? "Single-thread GFLOP/s: 2·M·N·K / minimum time" : "Single-thread GFLOP/s: 2·M·N·K / mean time";

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
    public bool IsAvailable(Summary summary) => true;

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase)
        => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var shape = benchmarkCase.Parameters.Items.FirstOrDefault(p => p.Name == nameof(GemmBenchmarks.Shape))?.Value as string;
        var stats = summary[benchmarkCase]?.ResultStatistics;
        double nanoseconds = stats is null ? 0 : fromMinimum ? stats.Min : stats.Mean;
        if (shape is null || nanoseconds <= 0)
            return "-";
        var (m, k, n) = GemmBenchmarks.ParseShape(shape);
        double flops = 2.0 * m * n * k;
        return (flops / nanoseconds).ToString("F1", System.Globalization.CultureInfo.InvariantCulture); // FLOP per ns = GFLOP/s
    }
}
