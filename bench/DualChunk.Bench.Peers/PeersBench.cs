using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using DualChunk.Core;

namespace DualChunk.Bench.Peers;

/// <summary>One child's measurement of one engine on one config (one round).</summary>
public sealed record EngineRun(string Status, double FirstCallMs, TimingResult? Timing, double MaxAbsDiff, double MaxAbsOurs, int OsThreads);

/// <summary>One row of the peers table: an engine on a config and thread count, over every round.</summary>
public sealed record PeerRow(PeerConfig Config, string Peer, int Threads, string Status, double FirstCallMs,
    TimingResult? Timing, double MaxAbsDiff, double MaxAbsOurs, IReadOnlyList<EngineRun> Rounds)
{
    public bool Timed => Timing is not null;
}

/// <summary>
/// Runs every peer on every config with the same random weights (seed 1) and input (seed 2), each engine's timing in
/// a process of its own: the parent starts this program again with <c>--engine KEY --threads T --config NAME</c> for
/// one engine at a time and waits for it to exit before starting the next, in the same order every round (DualChunk.NET,
/// ONNX Runtime, libtorch on 1 thread, then on 2; round after round: A B A B), so no engine's threads exist, spinning
/// or not, while another is timed. In the child: the first call is timed on a fresh runner, the output is checked against
/// DualChunk.NET's on one thread (max|peer − ours| ≤ 1e-5·max|ours|; the first child writes that reference) before any
/// timing, then the timing loop, and one JSON line back.
/// </summary>
public static class PeersBench
{
    public const double Tolerance = 1e-5;

    private const string Prefix = "ENGINE ";

    public static List<PeerRow> Run(IReadOnlyList<PeerConfig> configs, IReadOnlyList<IPeer> peers, BenchMode mode, TextWriter log)
    {
        ArgumentNullException.ThrowIfNull(configs);
        ArgumentNullException.ThrowIfNull(peers);
        ArgumentNullException.ThrowIfNull(mode);
        ArgumentNullException.ThrowIfNull(log);
        var rows = new List<PeerRow>();
        string dir = Directory.CreateTempSubdirectory("dualchunk-peers-").FullName;
        try
        {
            foreach (var config in configs)
            {
                string reference = Path.Combine(dir, config.Key + ".f32");
                var runs = peers.ToDictionary(p => p, _ => new List<EngineRun>());
                for (int round = 1; round <= mode.Rounds; round++)
                {
                    foreach (var peer in peers)
                    {
                        // An engine that cannot run or gives a wrong answer says so once; it is not started again.
                        if (runs[peer] is [{ Timing: null }, ..]) continue;
                        var run = peer.Unavailable is { } why ? new EngineRun(why, double.NaN, null, double.NaN, double.NaN, 0)
                            : RunChild(config, peer, mode, reference);
                        runs[peer].Add(run);
                        log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"[{config}] round {round} {peer.Name} ×{peer.Threads}: {Describe(run)}"));
                    }
                }
                rows.AddRange(peers.Select(p => Aggregate(config, p, runs[p])));
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
        return rows;
    }

    private static string Describe(EngineRun r) => r.Timing is not { } t ? r.Status : string.Create(CultureInfo.InvariantCulture,
        $"first {r.FirstCallMs:F2} ms, median {t.MedianMs:F3} ms, p90 {t.P90Ms:F3} ms, {t.AllocatedBytesPerCall:F0} B/call, n={t.Samples}, " +
        $"process CPU/wall {t.CpuPerWall:F2}, {r.OsThreads} OS threads, max|Δ|/max|ours| = {r.MaxAbsDiff / r.MaxAbsOurs:G3}");

    /// <summary>Median of the rounds' medians and p90s, the fastest call, the most bytes; the first round's first call.</summary>
    private static PeerRow Aggregate(PeerConfig config, IPeer peer, List<EngineRun> runs)
    {
        var timed = runs.Where(r => r.Timing is not null).ToList();
        var first = runs[0];
        if (timed.Count == 0)
            return new PeerRow(config, peer.Name, peer.Threads, first.Status, first.FirstCallMs, null, first.MaxAbsDiff, first.MaxAbsOurs, runs);
        var t = timed.Select(r => r.Timing!).ToList();
        static double Median(IEnumerable<double> xs) { var s = xs.Order().ToList(); return s.Count % 2 == 1 ? s[s.Count / 2] : (s[s.Count / 2 - 1] + s[s.Count / 2]) / 2; }
        var timing = new TimingResult(Median(t.Select(x => x.MedianMs)), Median(t.Select(x => x.P90Ms)), t.Min(x => x.MinMs), t.Sum(x => x.Samples),
            t.Max(x => x.AllocatedBytesPerCall), t.Sum(x => x.LoopWallSeconds), t.Sum(x => x.LoopProcessCpuSeconds));
        return new PeerRow(config, peer.Name, peer.Threads, "ok", first.FirstCallMs, timing, timed.Max(r => r.MaxAbsDiff), first.MaxAbsOurs, runs);
    }

    private static EngineRun RunChild(PeerConfig config, IPeer peer, BenchMode mode, string reference)
    {
        var args = new List<string> { "--engine", peer.Key, "--threads", peer.Threads.ToString(CultureInfo.InvariantCulture), "--config", config.Key, "--mode", mode.Name };
        // The first child (DualChunk.NET, 1 thread) writes the reference output; every later one is checked against it.
        args.AddRange(File.Exists(reference) ? ["--reference", reference] : ["--write-reference", reference]);
        var child = ChildProcess.Run(args, null, TimeSpan.FromSeconds(120 + 20 * (mode.WarmupSeconds + mode.BudgetSeconds)));
        string? json = child.Line(Prefix);
        if (child.ExitCode != 0 || json is null) return new EngineRun($"failed: child {child.Failure}", double.NaN, null, double.NaN, double.NaN, 0);
        return JsonSerializer.Deserialize(json, PeersJson.Default.EngineRun) ?? throw new InvalidOperationException("child printed null");
    }

    /// <summary>
    /// The child: builds one engine on one config, times its first call, checks its output against the reference (or
    /// writes it), times it, and prints one line "ENGINE {json}". Exit code 0 whenever it could report.
    /// </summary>
    public static int RunEngine(string key, int threads, string configName, BenchMode mode, string? referencePath, string? writeReference)
    {
        ArgumentNullException.ThrowIfNull(mode);
        var config = PeerConfig.Find(configName);
        IPeer peer = key switch
        {
            "dualchunk" => new EnginePeer(threads),
            "onnx" => new OnnxPeer(threads),
            "torch" => new TorchPeer(threads),
            _ => throw new ArgumentException($"Unknown --engine '{key}': dualchunk, onnx or torch."),
        };
        EngineRun run;
        if (peer.Unavailable is { } why)
            run = new EngineRun(why, double.NaN, null, double.NaN, double.NaN, OsThreads());
        else
        {
            try
            {
                run = Measure(config, peer, mode, referencePath, writeReference);
            }
#pragma warning disable CA1031 // a peer that throws becomes a row that says so; the other rows still run
            catch (Exception ex)
#pragma warning restore CA1031
            {
                run = new EngineRun($"failed: {ex.GetType().Name}: {ex.Message.ReplaceLineEndings(" ")}", double.NaN, null, double.NaN, double.NaN, OsThreads());
            }
        }
        Console.WriteLine(Prefix + JsonSerializer.Serialize(run, PeersJson.Default.EngineRun));
        return 0;
    }

    private static EngineRun Measure(PeerConfig config, IPeer peer, BenchMode mode, string? referencePath, string? writeReference)
    {
        var weights = RandomWeights.Create(config.Model, seed: 1);
        var input = RandomWeights.Input(config.Batch * config.SeqLen * config.Model.EmbedDim, seed: 2);
        using var runner = peer.Create(config, weights, input);
        long t0 = Stopwatch.GetTimestamp();
        runner.Run();
        double firstMs = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
        var output = runner.Output.ToArray();
        if (writeReference is not null)
            File.WriteAllBytes(writeReference, System.Runtime.InteropServices.MemoryMarshal.AsBytes(output.AsSpan()).ToArray());
        float[] reference = referencePath is null ? output : ReadReference(referencePath, output.Length);
        double maxOurs = 0, maxDiff = 0;
        for (int i = 0; i < reference.Length; i++)
        {
            maxOurs = Math.Max(maxOurs, Math.Abs(reference[i]));
            double d = Math.Abs((double)output[i] - reference[i]);
            maxDiff = double.IsNaN(d) ? double.PositiveInfinity : Math.Max(maxDiff, d);
        }
        if (!(maxDiff <= Tolerance * maxOurs))
            return new EngineRun($"wrong: max|Δ| = {maxDiff:G3} > 1e-5·max|ours| = {Tolerance * maxOurs:G3}; not timed", firstMs, null, maxDiff, maxOurs, OsThreads());
        var timing = Timing.Measure(runner.Run, mode.WarmupSeconds, mode.BudgetSeconds, mode.MinSamples, mode.MaxSamples);
        return new EngineRun("ok", firstMs, timing, maxDiff, maxOurs, OsThreads());
    }

    private static float[] ReadReference(string path, int floats)
    {
        byte[] bytes = File.ReadAllBytes(path);
        if (bytes.Length != 4L * floats)
            throw new InvalidDataException($"reference {path} has {bytes.Length} bytes, the output has {floats} floats ({4L * floats} bytes).");
        return System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes).ToArray();
    }

    /// <summary>The process's OS threads now (/proc/self/status "Threads:"), the engine's pools included; 0 where unknown.</summary>
    private static int OsThreads()
    {
        if (!File.Exists("/proc/self/status")) return 0;
        string? line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("Threads:", StringComparison.Ordinal));
        return line is null ? 0 : int.Parse(line["Threads:".Length..].Trim(), CultureInfo.InvariantCulture);
    }
}

/// <summary>Source-generated JSON for the child's line (reflection-free, trimming-safe).</summary>
[System.Text.Json.Serialization.JsonSourceGenerationOptions(NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals)]
[System.Text.Json.Serialization.JsonSerializable(typeof(EngineRun))]
internal sealed partial class PeersJson : System.Text.Json.Serialization.JsonSerializerContext;
