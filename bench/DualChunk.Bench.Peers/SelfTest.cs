using DualChunk.Core;

namespace DualChunk.Bench.Peers;

/// <summary>
/// <c>--selftest</c>: fast checks of the harness itself (no timing): the dense and tiled baselines
/// agree, the Edifice-materialised and fused DCA agree, and each available peer matches the engine
/// on a tiny model. Exit code 0 when all pass.
/// </summary>
public static class SelfTest
{
    public static int Run(TextWriter log)
    {
        ArgumentNullException.ThrowIfNull(log);
        int failures = 0;
        void Check(string what, double maxDiff, double maxRef)
        {
            bool ok = maxDiff <= PeersBench.Tolerance * maxRef;
            if (!ok) failures++;
            log.WriteLine($"{(ok ? "pass" : "FAIL")}  {what}: max|Δ| = {maxDiff:G3}, max|ref| = {maxRef:G3}, max|Δ|/max|ref| = {maxDiff / maxRef:G3}");
        }

        // The tiled kernel against the naive one at every tail of its 64-row blocks, 4-row groups and vector widths.
        var dense = new DenseAttention();
        var tiled = new TiledAttention();
        foreach (int n in new[] { 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 66, 67, 127, 129, 190, 300 })
        {
            var qkv = MemorySweep.Inputs(n, seed: 11 + n);
            var want = new float[n * AttentionMethod.Hidden];
            var got = new float[n * AttentionMethod.Hidden];
            dense.Run(qkv, n, 64, want);
            Array.Fill(got, float.NaN); // every output element must be written
            tiled.Run(qkv, n, 64, got);
            Check($"tiled vs dense, N={n}", MaxDiff(got, want), MaxAbs(want));
        }

        foreach (var (n, c) in new[] { (256, 32), (512, 64) })
        {
            var qkv = MemorySweep.Inputs(n, seed: 5);
            var outs = AttentionMethod.All.ToDictionary(m => m.Key, m =>
            {
                var o = new float[n * AttentionMethod.Hidden];
                m.Run(qkv, n, c, o);
                return o;
            });
            Check($"tiled vs dense, N={n}", MaxDiff(outs["tiled"], outs["dense"]), MaxAbs(outs["dense"]));
            Check($"DCA fused vs Edifice-materialised, N={n} C={c}", MaxDiff(outs["dca-fused"], outs["dca-edifice"]), MaxAbs(outs["dca-edifice"]));
        }

        // Both architectures; libtorch builds DualChunk.build only.
        foreach (var pc in new[] { new PeerConfig("tiny", 2, 32, 8), new PeerConfig("tiny-e", 1, 64, 16),
                     new PeerConfig("tiny", 2, 32, 8, ModelArchitecture.DecoderOnly), new PeerConfig("tiny-e", 1, 64, 16, ModelArchitecture.DecoderOnly) })
        {
            var weights = RandomWeights.Create(pc.Model, seed: 7);
            var input = RandomWeights.Input(pc.Batch * pc.SeqLen * pc.Model.EmbedDim, seed: 8);
            float[]? reference = null;
            foreach (IPeer peer in pc.IsDecoder ? new IPeer[] { new EnginePeer(1), new OnnxPeer(1) } : [new EnginePeer(1), new OnnxPeer(1), new TorchPeer(1)])
            {
                if (peer.Unavailable is { } why)
                {
                    log.WriteLine($"skip  {peer.Name} on {pc}: {why}");
                    continue;
                }
                using var runner = peer.Create(pc, weights, input);
                runner.Run();
                if (reference is null)
                {
                    reference = runner.Output.ToArray();
                    continue;
                }
                Check($"{peer.Name} vs DualChunk.NET, {pc}", MaxDiff(runner.Output.ToArray(), reference), MaxAbs(reference));
            }
        }
        log.WriteLine(failures == 0 ? "selftest: all passed" : $"selftest: {failures} failed");
        return failures == 0 ? 0 : 1;
    }

    private static double MaxDiff(float[] a, float[] b)
    {
        double m = 0;
        for (int i = 0; i < a.Length; i++)
        {
            double d = Math.Abs((double)a[i] - b[i]);
            m = double.IsNaN(d) ? double.PositiveInfinity : Math.Max(m, d);
        }
        return a.Length == b.Length ? m : double.PositiveInfinity;
    }

    private static double MaxAbs(float[] a)
    {
        double m = 0;
        foreach (float x in a) m = Math.Max(m, Math.Abs(x));
        return m;
    }
}
