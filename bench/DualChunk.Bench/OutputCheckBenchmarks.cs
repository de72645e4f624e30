using BenchmarkDotNet.Attributes;
using DualChunk.Kernels;

namespace DualChunk.Bench;

/// <summary>
/// The cost of the non-finite output check every call makes (NonFinite.IndexOf over the output), at the output
/// sizes of the end-to-end configs: [1, 256] (last_timestep, mean_pool) up to [1, 4096, 256] (all, config d).
/// Compare with EndToEndBenchmarks' forward pass of the same config.
/// </summary>
public class OutputCheckBenchmarks
{
    private float[] _output = [];

    /// <summary>Floats in the output: B·H for last_timestep (a, d), B·N·H for all (a, d).</summary>
    [Params(256, 64 * 256, 4096 * 256)]
    public int Floats { get; set; }

    [GlobalSetup]
    public void Setup() => _output = Core.RandomWeights.Input(Floats, 3);

    [Benchmark]
    public int Check() => NonFinite.IndexOf(_output);
}
