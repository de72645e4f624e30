using System.Globalization;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Environments;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using DualChunk.Kernels;

namespace DualChunk.Bench;

/// <summary>
/// The per-ISA jobs. Each runs the benchmark in its own process with the environment variables that pick the
/// kernel path: none for AVX-512; <c>DOTNET_EnableAVX512F=0</c> (read by <see cref="KernelSelection"/>) and
/// <c>DOTNET_EnableAVX512=0</c> (the .NET 10 JIT's switch, so Vector512 and TensorPrimitives drop to 256 bits too)
/// for AVX2; <c>DOTNET_EnableAVX2=0</c> for portable (the JIT then also turns off FMA, so the Vector128 path
/// runs SSE multiply + add).
/// </summary>
public static class IsaJobs
{
    /// <summary>Job ids, also the values of <c>--isa</c>.</summary>
    public const string Avx512 = "avx512", Avx2 = "avx2", Portable = "portable";

    private const string Avx512F = "DOTNET_EnableAVX512F", Avx512Group = "DOTNET_EnableAVX512", Avx2Var = "DOTNET_EnableAVX2";

    /// <summary>The jobs for a comma-separated list of ISAs ("all" = the three).</summary>
    public static IEnumerable<Job> For(string isas, Job baseJob)
    {
        var names = isas == "all" ? [Avx512, Avx2, Portable] : isas.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        foreach (var name in names)
        {
            yield return name switch
            {
                // Explicit "1"s so a host started with one of the switches off does not leak it into this job.
                Avx512 => baseJob.WithEnvironmentVariables(new EnvironmentVariable(Avx512F, "1"), new EnvironmentVariable(Avx512Group, "1"), new EnvironmentVariable(Avx2Var, "1")).WithId(Avx512),
                Avx2 => baseJob.WithEnvironmentVariables(new EnvironmentVariable(Avx512F, "0"), new EnvironmentVariable(Avx512Group, "0"), new EnvironmentVariable(Avx2Var, "1")).WithId(Avx2),
                Portable => baseJob.WithEnvironmentVariables(new EnvironmentVariable(Avx512F, "0"), new EnvironmentVariable(Avx512Group, "0"), new EnvironmentVariable(Avx2Var, "0")).WithId(Portable),
                _ => throw new ArgumentException($"Unknown ISA '{name}': use all, {Avx512}, {Avx2} or {Portable} (comma-separated)."),
            };
        }
    }

    /// <summary>The kernel path a job's process selects (capped at what this machine has).</summary>
    public static KernelIsa IsaOf(Job job)
    {
        string? Get(string key) => job.Environment.EnvironmentVariables?.FirstOrDefault(v => v.Key == key)?.Value ?? Environment.GetEnvironmentVariable(key);
        KernelIsa isa = Get(Avx2Var) == "0" ? KernelIsa.Portable
            : Get(Avx512F) == "0" || Get(Avx512Group) == "0" ? KernelIsa.Vector256
            : KernelIsa.Vector512;
        return isa <= KernelSelection.Isa ? isa : KernelSelection.Isa;
    }

    /// <summary>Vector width in floats of a path.</summary>
    public static int Width(KernelIsa isa) => isa switch { KernelIsa.Vector512 => 16, KernelIsa.Vector256 => 8, _ => 4 };
}

/// <summary>
/// One core's FP32 peak per path, measured on the benchmark machine with <see cref="PeakBenchmarks"/> (best of
/// several runs; see docs/benchmarks.md). The % of peak columns divide by these. Override with
/// <c>DUALCHUNK_PEAK_GFLOPS=avx512:V,avx2:V,portable:V</c> when benchmarking on another machine.
/// </summary>
public static class MeasuredPeak
{
    // Measured here (Intel Xeon, Sapphire Rapids class, 2 vCPUs), single thread: best of 2 × 400 calls of
    // `DualChunk.Bench peak` per ISA job environment; PeakBenchmarks (minimum time) agrees.
    private const double Avx512Gflops = 178.8, Avx2Gflops = 93.4, PortableGflops = 31.1;

    /// <summary>GFLOP/s of one core on a path.</summary>
    public static double Gflops(KernelIsa isa)
    {
        var over = Environment.GetEnvironmentVariable("DUALCHUNK_PEAK_GFLOPS");
        if (!string.IsNullOrEmpty(over))
        {
            foreach (var part in over.Split(','))
            {
                var kv = part.Split(':');
                if (kv.Length == 2 && IsaName(isa) == kv[0].Trim() && double.TryParse(kv[1], NumberStyles.Float, CultureInfo.InvariantCulture, out double v))
                    return v;
            }
        }
        return isa switch { KernelIsa.Vector512 => Avx512Gflops, KernelIsa.Vector256 => Avx2Gflops, _ => PortableGflops };
    }

    private static string IsaName(KernelIsa isa) => isa switch { KernelIsa.Vector512 => IsaJobs.Avx512, KernelIsa.Vector256 => IsaJobs.Avx2, _ => IsaJobs.Portable };
}

/// <summary>Which statistic a rate column divides by.</summary>
public enum RateBasis
{
    /// <summary>The median time.</summary>
    Median,

    /// <summary>The minimum time (other processes only ever make a run slower: the figure to trust on a busy machine).</summary>
    Min,
}

/// <summary>GFLOP/s = FLOP of one invocation / time, from a per-benchmark FLOP count.</summary>
public sealed class GflopsColumn(Func<BenchmarkCase, double> flopsOf, RateBasis basis) : IColumn
{
    public string Id => nameof(GflopsColumn) + basis;
    public string ColumnName => basis == RateBasis.Min ? "GFLOP/s (min)" : "GFLOP/s";
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => basis == RateBasis.Min ? 1 : 0;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => $"Single-thread GFLOP/s: FLOP per call / {(basis == RateBasis.Min ? "minimum" : "median")} time";

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
    public bool IsAvailable(Summary summary) => true;
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        double g = Rate(summary, benchmarkCase, flopsOf, basis);
        return g > 0 ? g.ToString("F1", CultureInfo.InvariantCulture) : "-";
    }

    /// <summary>FLOP / ns = GFLOP/s; 0 when unknown.</summary>
    internal static double Rate(Summary summary, BenchmarkCase benchmarkCase, Func<BenchmarkCase, double> flopsOf, RateBasis basis)
    {
        var stats = summary[benchmarkCase]?.ResultStatistics;
        double ns = stats is null ? 0 : basis == RateBasis.Min ? stats.Min : stats.Median;
        double flops = flopsOf(benchmarkCase);
        return ns > 0 && flops > 0 ? flops / ns : 0;
    }
}

/// <summary>GFLOP/s as a percentage of <see cref="MeasuredPeak"/> for the job's ISA.</summary>
public sealed class PercentOfPeakColumn(Func<BenchmarkCase, double> flopsOf, RateBasis basis) : IColumn
{
    public string Id => nameof(PercentOfPeakColumn) + basis;
    public string ColumnName => basis == RateBasis.Min ? "% peak (min)" : "% peak";
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => 2 + (int)basis;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => "GFLOP/s over the measured one-core FP32 peak of the job's ISA (MeasuredPeak; PeakBenchmarks measures it)";

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
    public bool IsAvailable(Summary summary) => true;
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        double g = GflopsColumn.Rate(summary, benchmarkCase, flopsOf, basis);
        return g > 0 ? (100 * g / MeasuredPeak.Gflops(IsaJobs.IsaOf(benchmarkCase.Job))).ToString("F0", CultureInfo.InvariantCulture) + "%" : "-";
    }
}

/// <summary>Helpers to read a case's parameters.</summary>
internal static class Cases
{
    public static string? Param(BenchmarkCase benchmarkCase, string name)
        => benchmarkCase.Parameters.Items.FirstOrDefault(p => p.Name == name)?.Value?.ToString();

    public static string Method(BenchmarkCase benchmarkCase) => benchmarkCase.Descriptor.WorkloadMethod.Name;

    public static int Int(string s) => int.Parse(s, CultureInfo.InvariantCulture);
}
