using System.Diagnostics;
using DualChunk.Core;

namespace DualChunk.Bench.Peers;

/// <summary>One row of the peers table.</summary>
public sealed record PeerRow(PeerConfig Config, string Peer, int Threads, string Status, double FirstCallMs,
    TimingResult? Timing, double MaxAbsDiff, double MaxAbsOurs)
{
    public bool Timed => Timing is not null;
}

/// <summary>
/// Runs every peer on every config with the same random weights (seed 1) and input (seed 2):
/// first call timed on a fresh runner, output checked against DualChunk.NET's (max|peer − ours| ≤
/// 1e-5·max|ours|) before any timing, then the timing loop.
/// </summary>
public static class PeersBench
{
    public const double Tolerance = 1e-5;

    public static List<PeerRow> Run(IReadOnlyList<PeerConfig> configs, IReadOnlyList<IPeer> peers, BenchMode mode, TextWriter log)
    {
        ArgumentNullException.ThrowIfNull(configs);
        ArgumentNullException.ThrowIfNull(peers);
        ArgumentNullException.ThrowIfNull(mode);
        ArgumentNullException.ThrowIfNull(log);
        var rows = new List<PeerRow>();
        foreach (var config in configs)
        {
            var weights = RandomWeights.Create(config.Model, seed: 1);
            var input = RandomWeights.Input(config.Batch * config.SeqLen * config.Model.EmbedDim, seed: 2);
            float[]? reference = null;
            foreach (var peer in peers)
            {
                if (peer.Unavailable is { } why)
                {
                    rows.Add(new PeerRow(config, peer.Name, peer.Threads, why, double.NaN, null, double.NaN, double.NaN));
                    log.WriteLine($"[{config}] {peer.Name} ×{peer.Threads}: {why}");
                    continue;
                }
                try
                {
                    rows.Add(RunOne(config, peer, weights, input, ref reference, mode, log));
                }
#pragma warning disable CA1031 // a peer that throws becomes a row that says so; the other rows still run
                catch (Exception ex)
#pragma warning restore CA1031
                {
                    string why2 = $"failed: {ex.GetType().Name}: {ex.Message.ReplaceLineEndings(" ")}";
                    rows.Add(new PeerRow(config, peer.Name, peer.Threads, why2, double.NaN, null, double.NaN, double.NaN));
                    log.WriteLine($"[{config}] {peer.Name} ×{peer.Threads}: {why2}");
                }
            }
        }
        return rows;
    }

    private static PeerRow RunOne(PeerConfig config, IPeer peer, Dictionary<string, Tensor> weights, float[] input,
        ref float[]? reference, BenchMode mode, TextWriter log)
    {
        using var runner = peer.Create(config, weights, input);
        long t0 = Stopwatch.GetTimestamp();
        runner.Run();
        double firstMs = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
        var output = runner.Output.ToArray();
        // The first peer (DualChunk.NET, 1 thread) is the reference.
        reference ??= output;
        double maxOurs = 0, maxDiff = 0;
        for (int i = 0; i < reference.Length; i++)
        {
            maxOurs = Math.Max(maxOurs, Math.Abs(reference[i]));
            maxDiff = Math.Max(maxDiff, Math.Abs((double)output[i] - reference[i]));
        }
        if (output.Length != reference.Length || !(maxDiff <= Tolerance * maxOurs))
        {
            string wrong = $"wrong: max|Δ| = {maxDiff:G3} > 1e-5·max|ours| = {Tolerance * maxOurs:G3}; not timed";
            log.WriteLine($"[{config}] {peer.Name} ×{peer.Threads}: {wrong}");
            return new PeerRow(config, peer.Name, peer.Threads, wrong, firstMs, null, maxDiff, maxOurs);
        }
        var timing = Timing.Measure(runner.Run, mode.WarmupSeconds, mode.BudgetSeconds, mode.MinSamples, mode.MaxSamples);
        log.WriteLine($"[{config}] {peer.Name} ×{peer.Threads}: first {firstMs:F2} ms, median {timing.MedianMs:F3} ms, p90 {timing.P90Ms:F3} ms, " +
            $"{timing.AllocatedBytesPerCall:F0} B/call, n={timing.Samples}, max|Δ|/max|ours| = {maxDiff / maxOurs:G3}");
        return new PeerRow(config, peer.Name, peer.Threads, "ok", firstMs, timing, maxDiff, maxOurs);
    }
}
