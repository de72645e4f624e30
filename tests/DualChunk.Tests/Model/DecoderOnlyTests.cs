using DualChunk.Core;
using DualChunk.Kernels;
using static DualChunk.Tests.Serving.ServingTestSupport;

namespace DualChunk.Tests.Model;

/// <summary>
/// Edifice's DecoderOnly with <c>attention_type: :dual_chunk</c> (RMSNorm, SwiGLU; the same attention box as
/// DualChunk.build): against the float64 <see cref="ReferenceModel"/> on random models of many shapes (odd dimensions,
/// E ≠ H and E == H, C = 1, more layers, every output mode), streaming bitwise equal to Run on the prefix, every thread
/// count bitwise identical, and its checkpoint names inferred (a mix with DualChunk.build's refused).
/// Bound per shape as in <see cref="ModelTests"/>: 1.5·√K·2^-24 · max|ref|, K = max(E, H, F).
/// </summary>
[TestFixture]
public sealed class DecoderOnlyTests
{
    private static ModelConfig Decoder(int e, int h, int nh, int l, int c)
        => new ModelConfig(e, h, nh, l, c, ModelConfig.SwiGluInnerSize(h)) { Architecture = ModelArchitecture.DecoderOnly };

    // E, H, NH, L, C, N, B
    private static readonly int[][] Shapes =
    [
        [287, 256, 8, 2, 64, 128, 1],  // the documented default dims (F = 688), two chunks
        [20, 24, 3, 2, 5, 15, 2],      // odd everything: D = 8, C = 5, F = 64
        [9, 9, 9, 1, 3, 9, 1],         // E == H, D = 1, F = 24
        [33, 70, 7, 5, 7, 21, 1],      // five layers, D = 10, F = 192
        [17, 34, 2, 1, 2, 6, 3],       // D = 17, F = 96
        [13, 40, 5, 3, 1, 5, 2],       // C = 1
        [31, 63, 3, 2, 4, 40, 1],      // odd H (F = 168), ten chunks
    ];

    private static IEnumerable<TestCaseData> Cases()
    {
        for (int i = 0; i < Shapes.Length; i++)
            foreach (var mode in Modes)
            {
                var s = Shapes[i];
                yield return new TestCaseData(i, mode).SetName($"Decoder_E{s[0]}_H{s[1]}_NH{s[2]}_L{s[3]}_C{s[4]}_N{s[5]}_B{s[6]}_{mode}");
            }
    }

    [TestCaseSource(nameof(Cases))]
    public void MatchesFloat64Reference(int shapeIndex, OutputMode mode)
    {
        var s = Shapes[shapeIndex];
        var config = Decoder(s[0], s[1], s[2], s[3], s[4]);
        int n = s[5], batch = s[6];
        var tensors = RandomWeights.Create(config, seed: 500 + shapeIndex);
        var input = RandomWeights.Input(batch * n * config.EmbedDim, seed: 600 + shapeIndex);
        using var model = DualChunkModel.FromTensors(tensors, config);
        Assert.That(model.Config.Architecture, Is.EqualTo(ModelArchitecture.DecoderOnly));

        ModelTests.AssertMatchesReference(model, tensors, config, input, batch, n, mode);
    }

    [Test]
    public void TheDecoderIsNotTheDualChunkModelOnTheSameTensors()
    {
        // The reference would pass a decoder run as DualChunk.build if the architecture were ignored anywhere: it is not.
        var config = Decoder(20, 24, 3, 2, 5);
        var tensors = RandomWeights.Create(config, 1);
        var input = RandomWeights.Input(2 * 10 * 20, 2);
        using var model = DualChunkModel.FromTensors(tensors, config);
        var ours = model.Run(input, 2, 10, OutputMode.All);
        var reference = ReferenceModel.Run(tensors, config, input, 2, 10, OutputMode.All);
        Assert.That(ours.Zip(reference).Max(p => Math.Abs(p.First - p.Second)), Is.LessThan(1e-4));
        Assert.That(config.TensorCount, Is.EqualTo(tensors.Count));
        Assert.That(config.ParameterCount, Is.EqualTo(tensors.Values.Sum(t => (long)t.Data.Length)));
    }

    private static readonly (ModelConfig Config, int Chunks, int B)[] StreamShapes =
    [
        (Decoder(20, 24, 3, 2, 5), 11, 2),
        (Decoder(16, 16, 2, 3, 1), 19, 2),
        (Decoder(7, 48, 2, 2, 4), 35, 1),
    ];

    private static IEnumerable<TestCaseData> StreamCases()
    {
        for (int i = 0; i < StreamShapes.Length; i++)
            foreach (int threads in new[] { 1, 2 })
                yield return new TestCaseData(i, threads).SetName($"DecoderStreamEqualsRun_{StreamShapes[i].Config.ToString().Replace(' ', '_')}_chunks{StreamShapes[i].Chunks}_B{StreamShapes[i].B}_threads{threads}");
    }

    /// <summary>What Append returns for chunk k is bitwise what Run returns for the first k + 1 chunks, in every mode.</summary>
    [TestCaseSource(nameof(StreamCases))]
    public void StreamEqualsRunOnPrefix(int shape, int threads)
    {
        var (config, chunks, batch) = StreamShapes[shape];
        using var splits = threads > 1 ? ForceSplits() : null;
        using var model = Create(config, threads, seed: 700 + shape);
        int c = config.ChunkSize, e = config.EmbedDim, h = config.HiddenSize, n = chunks * c;
        var input = RandomWeights.Input(batch * n * e, seed: 800 + shape);
        foreach (var schedule in new[] { new[] { OutputMode.LastTimestep }, [OutputMode.All], [OutputMode.All, OutputMode.MeanPool, OutputMode.MeanPool] })
        {
            using var stream = model.CreateStream(batch, capacity: c);
            for (int k = 0; k < chunks; k++)
            {
                var mode = schedule[k % schedule.Length];
                var output = Poisoned(stream.OutputLength(mode));
                stream.Append(StreamTests.Chunk(input, batch, n, e, c, k), output, mode);
                int len = (k + 1) * c;
                var prefix = new float[batch * len * e];
                for (int b = 0; b < batch; b++)
                    input.AsSpan(b * n * e, len * e).CopyTo(prefix.AsSpan(b * len * e));
                var full = Run(model, prefix, batch, len, mode);
                if (mode == OutputMode.All)
                {
                    var rows = new float[batch * c * h];
                    for (int b = 0; b < batch; b++)
                        full.AsSpan((b * len + len - c) * h, c * h).CopyTo(rows.AsSpan(b * c * h));
                    full = rows;
                }
                AssertBitwise(full, output, $"{string.Join('/', schedule)} chunk {k} {mode}");
            }
        }
    }

    /// <summary>A snapshot of a decoder stream restores bitwise, and is refused by a DualChunk.build model of the same dimensions.</summary>
    [Test]
    public void SnapshotRestoresAndNamesTheArchitecture()
    {
        var config = Decoder(20, 24, 3, 2, 5);
        using var model = Create(config, 1, seed: 3);
        var input = RandomWeights.Input(2 * 20 * 20, 4);
        using var stream = model.CreateStream(2);
        var output = new float[stream.OutputLength(OutputMode.LastTimestep)];
        stream.Append(StreamTests.Chunk(input, 2, 20, 20, 5, 0), output);
        stream.Append(StreamTests.Chunk(input, 2, 20, 20, 5, 1), output);
        var snapshot = stream.Snapshot();
        var expected = new float[output.Length];
        stream.Append(StreamTests.Chunk(input, 2, 20, 20, 5, 2), expected);

        using var restored = model.CreateStream(2);
        restored.Restore(snapshot);
        var actual = new float[output.Length];
        restored.Append(StreamTests.Chunk(input, 2, 20, 20, 5, 2), actual);
        AssertBitwise(expected, actual, "after restore");

        using var other = Create(new ModelConfig(20, 24, 3, 2, 5, config.FfnSize), 1, seed: 3);
        using var otherStream = other.CreateStream(2);
        var ex = Assert.Throws<StreamSnapshotException>(() => otherStream.Restore(snapshot));
        Assert.That(ex!.Message, Does.Contain("DecoderOnly"));
    }

    [Test]
    public void ThreadCountDoesNotChangeBits()
    {
        var config = Decoder(33, 40, 5, 2, 8);
        var tensors = RandomWeights.Create(config, seed: 900);
        int n = 64, batch = 3;
        var input = RandomWeights.Input(batch * n * config.EmbedDim, seed: 901);
        AssertThreadCountsBitwise(tensors, config, input, batch, n);
    }

    [Test]
    public void ArchitectureIsInferredFromTheNamesAndAMixIsRefused()
    {
        var decoder = Decoder(20, 24, 3, 2, 5);
        var tensors = RandomWeights.Create(decoder, 1);
        Assert.That(TensorSetValidator.Infer(tensors, 5), Is.EqualTo(decoder));

        var dualChunk = RandomWeights.Create(new ModelConfig(20, 24, 3, 2, 5, 96), 1);
        var mixed = new Dictionary<string, CheckpointTensor>(tensors);
        foreach (var (name, t) in dualChunk)
            if (name.StartsWith(CheckpointNames.DualChunkBlockPrefix + "2_", StringComparison.Ordinal)) mixed[name] = t;
        var ex = Assert.Throws<ModelFormatException>(() => TensorSetValidator.Infer(mixed, 5));
        Assert.That(ex!.Message, Does.Contain("mixes two models").And.Contain("dual_chunk_block_2_").And.Contain("decoder_block_"));

        tensors.Remove(CheckpointNames.DecoderBlock(2, DecoderBlockTensor.GateBias));
        var missing = Assert.Throws<ModelFormatException>(() => TensorSetValidator.Infer(tensors, 5));
        Assert.That(missing!.Message, Does.Contain("decoder_block_2_ffn_gate.bias"));
    }

    /// <summary>A version-1 snapshot (no architecture field, state at byte 56) of a DualChunk.build stream still restores bitwise.</summary>
    [Test]
    public void VersionOneSnapshotsStayReadable()
    {
        var config = new ModelConfig(20, 24, 3, 2, 5, 96);
        using var model = Create(config, 1, seed: 5);
        var input = RandomWeights.Input(1 * 15 * 20, 6);
        using var stream = model.CreateStream(1);
        var output = new float[stream.OutputLength(OutputMode.LastTimestep)];
        stream.Append(StreamTests.Chunk(input, 1, 15, 20, 5, 0), output);
        stream.Append(StreamTests.Chunk(input, 1, 15, 20, 5, 1), output);
        var v2 = stream.Snapshot();
        var expected = new float[output.Length];
        stream.Append(StreamTests.Chunk(input, 1, 15, 20, 5, 2), expected);

        // The same state in the version-1 layout: the 4 architecture bytes at 56 removed, version 1, checksum redone.
        var v1 = new byte[v2.Length - 4];
        v2.AsSpan(0, 56).CopyTo(v1);
        v2.AsSpan(60).CopyTo(v1.AsSpan(56));
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(v1.AsSpan(8), 1);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(v1.AsSpan(v1.Length - 8),
            System.IO.Hashing.XxHash64.HashToUInt64(v1.AsSpan(0, v1.Length - 8)));
        using var restored = model.CreateStream(1);
        restored.Restore(v1);
        var actual = new float[output.Length];
        restored.Append(StreamTests.Chunk(input, 1, 15, 20, 5, 2), actual);
        AssertBitwise(expected, actual, "after restoring the version-1 snapshot");
    }
}
