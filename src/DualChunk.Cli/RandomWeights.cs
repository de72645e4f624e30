using System.Globalization;

namespace DualChunk.Core;

/// <summary>
/// Seeded random parameters drawn by the golden cases' rules (kernels N(0, 1/√fan_in), biases,
/// betas N(0, 0.1), gammas 1 + N(0, 0.1), gates N(0, 1)): for benchmarks and tests of shapes no
/// trained checkpoint is at hand for (<c>dualchunk bench --random-model</c>). Built on the public API only; internal to
/// each assembly that compiles it: the CLI, and (linked) the tests and benchmarks. Not part of any package's API.
/// </summary>
internal static class RandomWeights
{
    /// <summary>Every tensor <paramref name="config"/> needs, deterministic in <paramref name="seed"/>.</summary>
    /// <exception cref="ArgumentException">The weights would not fit in the memory this process may use.</exception>
    public static Dictionary<string, CheckpointTensor> Create(ModelConfig config, int seed)
    {
        ArgumentNullException.ThrowIfNull(config);
        // Checked before allocating: a configuration too large for this machine is a message, not an OutOfMemoryException.
        long bytes = 4 * config.ParameterCount, available = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        if (bytes > available)
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture,
                $"Random weights for {config} need {bytes / 1e9:F1} GB, more than the {available / 1e9:F1} GB this process may use; use smaller dimensions."),
                nameof(config));
        var rng = new Random(seed);
        var result = new Dictionary<string, CheckpointTensor>(StringComparer.Ordinal);
        foreach (var (name, shape) in CheckpointNames.Expected(config))
        {
            int count = 1;
            foreach (int s in shape) count *= s;
            var data = new float[count];
            bool kernel = name.EndsWith(".kernel", StringComparison.Ordinal);
            bool gamma = name.EndsWith(".gamma", StringComparison.Ordinal) || name.EndsWith("_norm_gamma", StringComparison.Ordinal); // LayerNorm γ, RMSNorm scale
            bool gate = name.EndsWith("_attn_gate", StringComparison.Ordinal);
            double std = kernel ? 1.0 / Math.Sqrt(shape[0]) : gate ? 1.0 : 0.1;
            for (int i = 0; i < count; i++)
                data[i] = (float)((gamma ? 1.0 : 0.0) + std * Normal(rng));
            result[name] = new CheckpointTensor(name, shape, data);
        }
        return result;
    }

    /// <summary><paramref name="length"/> standard-normal floats, deterministic in <paramref name="seed"/>.</summary>
    public static float[] Input(int length, int seed)
    {
        var rng = new Random(seed);
        var x = new float[length];
        for (int i = 0; i < x.Length; i++) x[i] = (float)Normal(rng);
        return x;
    }

#pragma warning disable CA5394 // benchmark and test data, not security
    private static double Normal(Random rng)
        => Math.Sqrt(-2.0 * Math.Log(1.0 - rng.NextDouble())) * Math.Cos(2.0 * Math.PI * rng.NextDouble());
#pragma warning restore CA5394
}
