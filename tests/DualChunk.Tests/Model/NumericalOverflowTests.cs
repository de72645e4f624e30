using DualChunk.Cli;
using DualChunk.Core;
using DualChunk.Tests.Loading;
using static DualChunk.Tests.Serving.ServingTestSupport;

namespace DualChunk.Tests.Model;

/// <summary>
/// Issue 9 item 8: finite but extreme weights pass validation, but a forward pass whose output is not finite throws
/// <see cref="NumericalOverflowException"/> naming the stage, never a silent NaN; the CLI prints one line, exit 1.
/// </summary>
[TestFixture]
public sealed class NumericalOverflowTests
{
    private static readonly ModelConfig Config = new(20, 64, 4, 3, 8, 128);

    /// <summary>Kernels × <paramref name="kernelScale"/>; the biases of <paramref name="biasLayer"/> (1-based; 0 none) set to 3e38.</summary>
    private static Dictionary<string, CheckpointTensor> Extreme(float kernelScale, int biasLayer) => Extreme(Config, kernelScale, biasLayer);

    private static Dictionary<string, CheckpointTensor> Extreme(ModelConfig config, float kernelScale, int biasLayer)
    {
        var result = new Dictionary<string, CheckpointTensor>(StringComparer.Ordinal);
        string block = config.Architecture == ModelArchitecture.DecoderOnly ? "decoder_block_" : "dual_chunk_block_";
        foreach (var (name, t) in RandomWeights.Create(config, 11))
        {
            var data = t.Data.ToArray();
            bool kernel = name.EndsWith(".kernel", StringComparison.Ordinal);
            bool bias = name.StartsWith($"{block}{biasLayer}_", StringComparison.Ordinal) && name.EndsWith(".bias", StringComparison.Ordinal);
            for (int i = 0; i < data.Length; i++)
                data[i] = kernel ? data[i] * kernelScale : bias ? 3e38f : data[i];
            result[name] = new CheckpointTensor(name, [.. t.Shape], data);
        }
        return result;
    }

    [Test]
    public void ExtremeWeightsThrowNamingTheFirstNonFiniteStage([Values(1, 2)] int threads)
    {
        using var splits = threads > 1 ? ForceSplits() : null;
        var input = RandomWeights.Input(2 * 32 * Config.EmbedDim, 12);
        // Biases 3e38 in block 2 only: blocks before it stay finite, so the stage named must be block 2.
        using var model = DualChunkModel.FromTensors(Extreme(1, biasLayer: 2), Config, new DualChunkModelOptions { MaxDegreeOfParallelism = threads });
        foreach (var mode in Modes)
        {
            var ex = Assert.Throws<NumericalOverflowException>(() => Run(model, input, 2, 32, mode), mode.ToString());
            Assert.That(ex!.Stage, Is.EqualTo("dual_chunk_block_2"), ex.Message);
            Assert.That(ex.Message, Does.Contain("from finite input").And.Contain("extreme").And.Contain("dual_chunk_block_2"));
            Assert.That(ex, Is.InstanceOf<ArithmeticException>());
        }
        // Kernels × 1e30 everywhere: the input projection already overflows.
        using var scaled = DualChunkModel.FromTensors(Extreme(1e30f, biasLayer: 0), Config, new DualChunkModelOptions { MaxDegreeOfParallelism = threads });
        var first = Assert.Throws<NumericalOverflowException>(() => Run(scaled, input, 2, 32, OutputMode.All));
        Assert.That(first!.Stage, Is.EqualTo("input_projection").Or.StartsWith("dual_chunk_block_1"), first.Message);
    }

    [Test]
    public void StreamAppendsAndTheDecoderNameTheirStageAsTheCheckpointDoes([Values(1, 2)] int threads)
    {
        using var splits = threads > 1 ? ForceSplits() : null;
        var options = new DualChunkModelOptions { MaxDegreeOfParallelism = threads };
        var decoderConfig = new ModelConfig(20, 64, 4, 3, 8, ModelConfig.SwiGluInnerSize(64)) { Architecture = ModelArchitecture.DecoderOnly };
        foreach (var (config, expected) in new[] { (Config, "dual_chunk_block_2"), (decoderConfig, "decoder_block_2") })
        {
            using var model = DualChunkModel.FromTensors(Extreme(config, 1, biasLayer: 2), config, options);
            var input = RandomWeights.Input(2 * 16 * config.EmbedDim, 12);
            foreach (var mode in Modes)
            {
                var ex = Assert.Throws<NumericalOverflowException>(() => Run(model, input, 2, 16, mode), $"{expected} {mode}");
                Assert.That(ex!.Stage, Is.EqualTo(expected), ex.Message);
                Assert.That(ex.Message, Does.Contain($"in {expected} (block 2 of 3)"));
                using var stream = model.CreateStream(2);
                var output = new float[stream.OutputLength(mode)];
                var streamed = Assert.Throws<NumericalOverflowException>(() => stream.Append(input.AsSpan(0, 2 * 8 * config.EmbedDim), output, mode), $"stream {expected} {mode}");
                Assert.That(streamed!.Stage, Is.EqualTo(expected), streamed.Message);
                Assert.That(stream.Length, Is.Zero, "a failed append leaves the stream as it was");
            }
        }
    }

    [Test]
    public void TheModelStaysUsableAfterAnOverflowAndFiniteOutputsAreUnchecked()
    {
        using var model = DualChunkModel.FromTensors(Extreme(1, biasLayer: 3), Config);
        var input = RandomWeights.Input(32 * Config.EmbedDim, 13);
        Assert.Throws<NumericalOverflowException>(() => Run(model, input, 1, 32, OutputMode.LastTimestep));
        using var sane = DualChunkModel.FromTensors(RandomWeights.Create(Config, 11), Config);
        Assert.That(Run(sane, input, 1, 32, OutputMode.All).All(float.IsFinite), Is.True);
        Assert.That(model.PooledWorkspaceBytes, Is.GreaterThan(0), "the workspace went back to the pool");
    }

    [Test]
    public void TheCliPrintsOneLineAndExits1()
    {
        string dir = Path.Combine(Path.GetTempPath(), "dualchunk-nan-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            string model = Path.Combine(dir, "m.safetensors"), input = Path.Combine(dir, "x.npy"), output = Path.Combine(dir, "y.npy");
            File.WriteAllBytes(model, LoadingTestData.SafetensorsOf(Extreme(1e30f, biasLayer: 1), Config));
            Npy.Write(input, RandomWeights.Input(16 * Config.EmbedDim, 14), [1, 16, Config.EmbedDim]);
            var stdout = new StringWriter();
            var stderr = new StringWriter();
            int code = CommandLine.Run(["run", "--model", model, "--chunk-size", "8", "--input", input, "--output", output], stdout, stderr);
            string err = stderr.ToString();
            Assert.That(code, Is.EqualTo(1), err);
            Assert.That(err.TrimEnd('\n').Split('\n'), Has.Length.EqualTo(1), err);
            Assert.That(err, Does.StartWith("dualchunk: error: The forward pass produced").And.Contain("extreme"));
            Assert.That(File.Exists(output), Is.False, "no output file for a failed run");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
