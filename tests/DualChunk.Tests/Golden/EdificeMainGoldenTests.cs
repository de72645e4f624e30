using System.Text.Json;
using DualChunk.Core;
using DualChunk.Kernels;

namespace DualChunk.Tests.Golden;

/// <summary>
/// tests/golden/edifice-l: cases computed by Edifice's newest commit itself (README there), DualChunk.build (d1, d2)
/// and DecoderOnly with <c>attention_type: :dual_chunk</c> (x1, x2), loaded from their <c>model.safetensors</c> with
/// the chunk size of config.json, on 1 and 2 threads, in every output mode, and fed chunk by chunk to a stream.
/// Bound: max|ours − Edifice f64| ≤ max(1e-6, 5 × Edifice's own float32 error for the case and mode) × max|ref|.
/// </summary>
[TestFixture]
public sealed class EdificeMainGoldenTests
{
    private static readonly string Root = Path.Combine(AppContext.BaseDirectory, "golden", "edifice-l");

    private static readonly string[] CaseNames = ["d1", "d2", "x1", "x2"];

    private static readonly (OutputMode Mode, string Key)[] ModeKeys =
        [(OutputMode.LastTimestep, "last"), (OutputMode.All, "all"), (OutputMode.MeanPool, "mean")];

    private sealed record Case(string Dir, ModelArchitecture Architecture, int ChunkSize, int Batch, int SeqLen, int EmbedDim, JsonElement Outputs);

    private static Case Read(string name)
    {
        string dir = Path.Combine(Root, name);
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "config.json")));
        var r = json.RootElement;
        var arch = r.GetProperty("arch").GetString() == "decoder_only" ? ModelArchitecture.DecoderOnly : ModelArchitecture.DualChunk;
        return new Case(dir, arch, r.GetProperty("build_opts").GetProperty("chunk_size").GetInt32(), r.GetProperty("batch").GetInt32(),
            r.GetProperty("seq_len").GetInt32(), r.GetProperty("embed_dim").GetInt32(), r.GetProperty("outputs").Clone());
    }

    [Test]
    public void MatchesEdificeFloat64([ValueSource(nameof(CaseNames))] string name, [Values(1, 2)] int threads)
    {
        var golden = Read(name);
        using var model = DualChunkModel.Load(Path.Combine(golden.Dir, "model.safetensors"),
            new DualChunkModelOptions { ChunkSize = golden.ChunkSize, MaxDegreeOfParallelism = threads });
        Assert.That(model.Config.Architecture, Is.EqualTo(golden.Architecture), "architecture inferred from the tensor names");
        var io = SafetensorsReader.Read(Path.Combine(golden.Dir, "io.safetensors"));
        var input = io["input"].Data.ToArray();
        foreach (var (mode, key) in ModeKeys)
        {
            var ours = model.Run(input, golden.Batch, golden.SeqLen, mode);
            AssertWithinBound(golden, key, ours, $"{name} {mode} threads {threads} isa {KernelSelection.Isa}");
        }
    }

    /// <summary>The decoder cases appended chunk by chunk: each mode's last output equals Run's bitwise, so it is within the bound too.</summary>
    [Test]
    public void StreamedChunkByChunkEqualsRun([Values("x1", "x2")] string name)
    {
        var golden = Read(name);
        using var model = DualChunkModel.Load(Path.Combine(golden.Dir, "model.safetensors"), golden.ChunkSize);
        var input = SafetensorsReader.Read(Path.Combine(golden.Dir, "io.safetensors"))["input"].Data.ToArray();
        int c = golden.ChunkSize, n = golden.SeqLen, e = golden.EmbedDim;
        foreach (var (mode, key) in ModeKeys)
        {
            if (mode == OutputMode.All) continue; // a stream returns the last chunk's rows; Run's are compared in MatchesEdificeFloat64
            using var stream = model.CreateStream(golden.Batch);
            var output = new float[stream.OutputLength(mode)];
            for (int k = 0; k < n / c; k++)
                stream.Append(Model.StreamTests.Chunk(input, golden.Batch, n, e, c, k), output, mode);
            Serving.ServingTestSupport.AssertBitwise(model.Run(input, golden.Batch, n, mode), output, $"{name} {mode}");
            AssertWithinBound(golden, key, output, $"{name} streamed {mode}");
        }
    }

    private static void AssertWithinBound(Case golden, string key, float[] ours, string what)
    {
        var entry = golden.Outputs.GetProperty(key);
        var reference = ReadF64(Path.Combine(golden.Dir, "io.safetensors"), entry.GetProperty("f64_key").GetString()!);
        double bound = Math.Max(1e-6, 5 * entry.GetProperty("rel_err").GetDouble());
        double maxRef = reference.Max(Math.Abs), maxErr = 0;
        Assert.That(ours, Has.Length.EqualTo(reference.Length), $"{what}: length");
        Assert.That(maxRef, Is.GreaterThan(0.1), "the reference is not trivial");
        for (int i = 0; i < reference.Length; i++) maxErr = Math.Max(maxErr, Math.Abs(ours[i] - reference[i]));
        TestContext.Out.WriteLine($"{what}: max|ours − f64| / max|f64| = {maxErr / maxRef:E2} (bound {bound:E1})");
        Assert.That(maxErr / maxRef, Is.LessThanOrEqualTo(bound), what);
    }

    private static double[] ReadF64(string path, string key)
    {
        var bytes = File.ReadAllBytes(path);
        long headerLength = BitConverter.ToInt64(bytes, 0);
        using var header = JsonDocument.Parse(bytes.AsMemory(8, (int)headerLength));
        var entry = header.RootElement.GetProperty(key);
        Assert.That(entry.GetProperty("dtype").GetString(), Is.EqualTo("F64"), $"{key} dtype");
        var offsets = entry.GetProperty("data_offsets");
        int start = (int)(8 + headerLength + offsets[0].GetInt64()), end = (int)(8 + headerLength + offsets[1].GetInt64());
        var result = new double[(end - start) / 8];
        for (int i = 0; i < result.Length; i++) result[i] = BitConverter.ToDouble(bytes, start + 8 * i);
        return result;
    }
}
