using System.Globalization;
using DualChunk.Bench.Peers;

// dotnet run -c Release --project bench/DualChunk.Bench.Peers -- [--short | --full] [--peers-only | --memory-only] [--configs a,b,...] [--arch dualchunk,decoder]
//   --arch LIST                the peers table's architectures (default dualchunk): DualChunk.build, DecoderOnly (ORT and us; libtorch builds only DualChunk.build)
//   --bdn [BenchmarkDotNet args] the peers comparison under BenchmarkDotNet (PeersBenchmarks), docs untouched
//   --gflops                   only the attention GFLOP/s table's measurements, printed (no docs)
//   --selftest                 checks the harness (baselines agree, peers match the engine on tiny models), no timing
//   --rounds K, --budget S, --sweep-cap S, --max-n N  rounds per engine (A B A B), timing budget per child, sweep time cap per point, sweep's largest N
//   --point METHOD N C         (internal) one memory-sweep point in this fresh process
//   --engine KEY --threads T --config NAME [--reference F | --write-reference F]  (internal) one engine's timing, one JSON line
if (args.Length >= 4 && args[0] == "--point")
    return MemorySweep.RunPoint(args[1], int.Parse(args[2], CultureInfo.InvariantCulture), int.Parse(args[3], CultureInfo.InvariantCulture),
        args.Contains("--full") ? BenchMode.Full.SweepRepeatSeconds : BenchMode.Quick.SweepRepeatSeconds);
if (args.Length >= 2 && args[0] == "--engine")
    return PeersBench.RunEngine(args[1], int.Parse(BenchMode.Value(args, "--threads") ?? "1", CultureInfo.InvariantCulture),
        BenchMode.Value(args, "--config") ?? "a", BenchMode.FromArgs(args), BenchMode.Value(args, "--reference"), BenchMode.Value(args, "--write-reference"));
if (args.Contains("--gflops"))
{
    Gflops.Run(BenchMode.FromArgs(args), Console.Out);
    return 0;
}
if (args.Contains("--selftest"))
    return SelfTest.Run(Console.Out);
if (args.Length > 0 && args[0] == "--bdn")
{
    // The same comparison under BenchmarkDotNet (medians, p90, MemoryDiagnoser); the rest goes to BDN,
    // e.g. `-- --bdn --filter '*' --job short`. It does not write docs/benchmarks.md.
    BenchmarkDotNet.Running.BenchmarkSwitcher.FromTypes([typeof(PeersBenchmarks)]).Run(args[1..],
        BenchmarkDotNet.Configs.ManualConfig.Create(BenchmarkDotNet.Configs.DefaultConfig.Instance).AddColumn(BenchmarkDotNet.Columns.StatisticColumn.Median, BenchmarkDotNet.Columns.StatisticColumn.P90));
    return 0;
}

var mode = BenchMode.FromArgs(args);
string command = "dotnet run -c Release --project bench/DualChunk.Bench.Peers -- " + string.Join(' ', args);
string root = Docs.RepoRoot();
string docs = Path.Combine(root, "docs"), md = Path.Combine(docs, "benchmarks.md");
Directory.CreateDirectory(docs);
Directory.SetCurrentDirectory(root);
Console.WriteLine($"DualChunk.Bench.Peers, {mode.Name} mode; writing {md}");

int configsAt = Array.IndexOf(args, "--configs");
var configs = configsAt >= 0 && configsAt + 1 < args.Length
    ? [.. PeerConfig.All.Where(c => args[configsAt + 1].Split(',').Contains(c.Name))]
    : PeerConfig.All.ToList();

if (!args.Contains("--memory-only"))
{
    // Every engine on 1 thread and on 2 (ORT IntraOpNumThreads, torch.set_num_threads, our MaxDegreeOfParallelism),
    // each timed in a child process of its own, in this order every round.
    var peers = new IPeer[] { new EnginePeer(1), new OnnxPeer(1), new TorchPeer(1), new EnginePeer(2), new OnnxPeer(2), new TorchPeer(2) };
    int archAt = Array.IndexOf(args, "--arch");
    var arches = archAt >= 0 && archAt + 1 < args.Length ? args[archAt + 1].Split(',') : ["dualchunk"];
    var rows = new List<PeerRow>();
    foreach (string arch in arches)
    {
        if (arch == "dualchunk")
            rows.AddRange(PeersBench.Run(configs, peers, mode, Console.Out));
        else if (arch == "decoder")
            rows.AddRange(PeersBench.Run([.. configs.Select(c => c with { Architecture = DualChunk.Core.ModelArchitecture.DecoderOnly })],
                [.. peers.Where(p => p is not TorchPeer)], mode, Console.Out));
        else
            throw new ArgumentException($"--arch '{arch}': dualchunk or decoder.");
    }
    Docs.WriteSection(md, "peers", Report.PeersMarkdown(rows, Report.Provenance(command, mode) + Explain.Peers), "## Peers, side by side");
    Console.WriteLine("wrote the peers section");
}
if (!args.Contains("--peers-only"))
{
    var gflops = Gflops.Run(mode, Console.Out);
    var points = MemorySweep.Run(mode, Console.Out);
    Report.Plots(points, docs);
    Docs.WriteSection(md, "memory", Report.MemoryMarkdown(points, Report.Provenance(command, mode) + Explain.Memory) + Report.GflopsMarkdown(gflops),
        "## Attention memory against dense attention");
    Console.WriteLine("wrote the memory section and docs/bench-*.png");
}
return 0;
