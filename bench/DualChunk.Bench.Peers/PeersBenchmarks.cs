using BenchmarkDotNet.Attributes;
using DualChunk.Core;

namespace DualChunk.Bench.Peers;

/// <summary>
/// The peers comparison under BenchmarkDotNet (`-- --bdn`): the same engines, weights (seed 1) and
/// input (seed 2) as the harness's own loop, each peer's output checked against DualChunk.NET first.
/// Medians, p90 and allocated bytes (MemoryDiagnoser: managed only) per engine, config and thread count.
/// </summary>
[MemoryDiagnoser]
public class PeersBenchmarks
{
    private IPeerRunner? _runner;

    [Params("a", "b", "c", "d")]
    public string Config { get; set; } = "a";

    [Params("DualChunk.NET", "ONNX Runtime")]
    public string Engine { get; set; } = "DualChunk.NET";

    [Params(1, 2)]
    public int Threads { get; set; } = 1;

    [GlobalSetup]
    public void Setup()
    {
        var config = PeerConfig.All.Single(c => c.Name == Config);
        var weights = RandomWeights.Create(config.Model, seed: 1);
        var input = RandomWeights.Input(config.Batch * config.SeqLen * config.Model.EmbedDim, seed: 2);
        IPeer peer = Engine == "DualChunk.NET" ? new EnginePeer(Threads) : new OnnxPeer(Threads);
        if (peer.Unavailable is { } why) throw new InvalidOperationException($"{Engine} is unavailable: {why}");

        // Check against DualChunk.NET on one thread before timing, as the harness does (1e-5 relative).
        using (var reference = new EnginePeer(1).Create(config, weights, input))
        {
            reference.Run();
            _runner = peer.Create(config, weights, input);
            _runner.Run();
            var ours = reference.Output;
            var theirs = _runner.Output;
            double maxOurs = 0, maxDiff = 0;
            for (int i = 0; i < ours.Length; i++)
            {
                maxOurs = Math.Max(maxOurs, Math.Abs(ours[i]));
                maxDiff = Math.Max(maxDiff, Math.Abs(ours[i] - theirs[i]));
            }
            if (maxDiff > 1e-5 * maxOurs)
                throw new InvalidOperationException($"{Engine} disagrees with DualChunk.NET: max|Δ| = {maxDiff:G3}, max|ours| = {maxOurs:G3}.");
        }
        // Reach tier 1 before BenchmarkDotNet's own warm-up (small configs need a few hundred calls).
        var clock = System.Diagnostics.Stopwatch.StartNew();
        for (int i = 0; i < 500 && clock.Elapsed.TotalSeconds < 3; i++) _runner.Run();
    }

    [Benchmark]
    public void Forward() => _runner!.Run();

    [GlobalCleanup]
    public void Cleanup() => _runner?.Dispose();
}
