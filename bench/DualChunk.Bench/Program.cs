using System.Globalization;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using Perfolizer.Horology;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;
using DualChunk.Bench;
using DualChunk.Core;
using DualChunk.Kernels;

if (args is ["export-random", var dir])
{
    // The default-dims model (E=287, H=256, NH=8, L=4, C=64, random weights) as m.dcw and m.safetensors,
    // for the CLI's load / first-call / RSS measurements (docs/benchmarks.md, "serving").
    var modelConfig = new ModelConfig(287, 256, 8, 4, 64, 1024);
    var tensors = RandomWeights.Create(modelConfig, 1);
    Directory.CreateDirectory(dir);
    DcwFile.Write(Path.Combine(dir, "m.dcw"), modelConfig, tensors);
    SafetensorsWriter.Write(Path.Combine(dir, "m.safetensors"), modelConfig, tensors);
    return;
}

// Own options, taken out before BenchmarkDotNet sees the rest:
//   --isa all|avx512|avx2|portable[,...]   per-ISA jobs (environment variables, see IsaJobs); default avx512 (or the best here)
//   --run quick|standard|default           iteration budget; standard (the documented one) unless given
//   peak [runs]                            no BenchmarkDotNet: print this process's FMA peak (quick check)
//   blocking [runs]                        no BenchmarkDotNet: config a's GEMMs at the old, the cache-derived and whole-K blockings
//   idle-streams [count] [chunks]          no BenchmarkDotNet: managed bytes retained per idle stream (default 10000, 4)
var rest = new List<string>();
string isa = KernelSelection.Isa switch { KernelIsa.Vector512 => IsaJobs.Avx512, KernelIsa.Vector256 => IsaJobs.Avx2, _ => IsaJobs.Portable };
string run = "standard";
for (int i = 0; i < args.Length; i++)
{
    if (args[i] == "--isa" && i + 1 < args.Length) isa = args[++i];
    else if (args[i] == "--run" && i + 1 < args.Length) run = args[++i];
    else rest.Add(args[i]);
}

if (rest.Count > 0 && rest[0] == "peak")
{
    int runs = rest.Count > 1 ? int.Parse(rest[1], CultureInfo.InvariantCulture) : 200;
    var me = KernelSelection.Isa;
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"kernel_isa={me} chains={FmaPeak.Chains} peak_gflops={FmaPeak.Measure(me, runs):F1} (best of {runs} calls of {PeakBenchmarks.Iterations} trips)"));
    return;
}

if (rest.Count > 0 && rest[0] == "idle-streams")
{
    IdleStreams.Run(rest.Count > 1 ? int.Parse(rest[1], CultureInfo.InvariantCulture) : 10_000,
        rest.Count > 2 ? int.Parse(rest[2], CultureInfo.InvariantCulture) : 4);
    return;
}

if (rest.Count > 0 && rest[0] == "blocking")
{
    BlockingCheck.Run(rest.Count > 1 ? int.Parse(rest[1], CultureInfo.InvariantCulture) : 300);
    return;
}

Job baseJob = run switch
{
    // Enough for tier 1 and a stable median on the small cases; the whole documented set fits in ~10 minutes.
    "standard" => Job.Default.WithLaunchCount(1).WithWarmupCount(6).WithIterationCount(10).WithIterationTime(TimeInterval.FromMilliseconds(100)),
    "quick" => Job.Default.WithLaunchCount(1).WithWarmupCount(4).WithIterationCount(5).WithIterationTime(TimeInterval.FromMilliseconds(80)),
    "default" => Job.Default,
    _ => throw new ArgumentException($"Unknown --run '{run}': quick, standard or default."),
};

var config = ManualConfig.Create(DefaultConfig.Instance)
    .AddJob(IsaJobs.For(isa, baseJob).ToArray())
    .AddDiagnoser(MemoryDiagnoser.Default)
    .AddColumn(BenchmarkDotNet.Columns.StatisticColumn.Median, BenchmarkDotNet.Columns.StatisticColumn.Min, BenchmarkDotNet.Columns.StatisticColumn.P90);

BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run([.. rest], config);
