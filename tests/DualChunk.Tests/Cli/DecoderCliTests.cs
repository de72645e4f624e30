using System.Buffers.Binary;
using System.Diagnostics;
using DualChunk.Core;
using DualChunk.Tests.Loading;

namespace DualChunk.Tests.Cli;

/// <summary>
/// Edifice's DecoderOnly through the built CLI as a process: <c>stream</c> on the golden x2 checkpoint (with its spec,
/// so no --chunk-size) is bitwise <c>run</c>: for <c>all</c> the whole output, for <c>last</c>/<c>mean</c> the row of
/// the last chunk, which is run's output on the whole input.
/// </summary>
[TestFixture]
public sealed class DecoderCliTests
{
    private TempDir _dir = null!;

    [SetUp]
    public void SetUp() => _dir = new TempDir();

    [TearDown]
    public void TearDown() => _dir.Dispose();

    [TestCase("last")]
    [TestCase("all")]
    [TestCase("mean")]
    public void StreamOnTheDecoderIsBitwiseRun(string mode)
    {
        var x2 = EdificeCliCase.Load("x2", _dir);
        string run = _dir.File("run.npy"), stream = _dir.File("stream.npy");
        var r = Jit("run", "--model", x2.Model, "--input", x2.Input, "--output-mode", mode, "--output", run);
        Assert.That(r.Code, Is.EqualTo(0), r.Err);
        var s = Jit("stream", "--model", x2.Model, "--input", x2.Input, "--output-mode", mode, "--output", stream, "--threads", "2");
        Assert.That(s.Code, Is.EqualTo(0), s.Err);
        Assert.That(s.Out, Does.Contain($"{x2.SeqLen / x2.ChunkSize} chunks streamed"));
        var (runData, runShape) = EdificeCliCase.ReadFloat32Npy(run);
        var (streamData, streamShape) = EdificeCliCase.ReadFloat32Npy(stream);
        if (mode == "all")
        {
            Assert.That(streamShape, Is.EqualTo(runShape));
            Assert.That(streamData, Is.EqualTo(runData));
            return;
        }
        int chunks = x2.SeqLen / x2.ChunkSize, h = runShape[1];
        Assert.That(streamShape, Is.EqualTo(new[] { x2.Batch, chunks, h }));
        for (int b = 0; b < x2.Batch; b++)
            Assert.That(streamData.AsSpan((b * chunks + chunks - 1) * h, h).ToArray(), Is.EqualTo(runData.AsSpan(b * h, h).ToArray()), $"batch row {b}");
    }

    /// <summary>The JIT CLI (dualchunk.dll beside the tests) as a process.</summary>
    internal static (int Code, string Out, string Err) Jit(params string[] args)
        => CliTests.RunProcess(new ProcessStartInfo("dotnet", [Path.Combine(TestContext.CurrentContext.TestDirectory, "dualchunk.dll"), .. args])
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
        });
}

/// <summary>
/// The NativeAOT binary (.ci/aot-check sets DUALCHUNK_AOT_BINARY) on the decoder: golden x2's model.nx, every output
/// mode, <c>run</c> and <c>stream</c>, bitwise equal to the JIT CLI's output.
/// </summary>
[TestFixture]
public sealed class DecoderAotBinaryTests
{
    private string _binary = "";
    private TempDir _dir = null!;

    [OneTimeSetUp]
    public void FindBinary()
    {
        _binary = Environment.GetEnvironmentVariable("DUALCHUNK_AOT_BINARY") ?? "";
        if (_binary.Length == 0) Assert.Ignore("DUALCHUNK_AOT_BINARY not set: .ci/aot-check publishes the binary and sets it");
        Assert.That(File.Exists(_binary), Is.True, _binary);
    }

    [SetUp]
    public void SetUp() => _dir = new TempDir();

    [TearDown]
    public void TearDown() => _dir.Dispose();

    [Test]
    public void DecoderOutputIsBitwiseEqualToTheJitBuild([Values("run", "stream")] string command, [Values("last", "all", "mean")] string mode)
    {
        var x2 = EdificeCliCase.Load("x2", _dir);
        string jit = _dir.File("jit.npy"), aot = _dir.File("aot.npy");
        string[] args = [command, "--model", x2.Model, "--input", x2.Input, "--output-mode", mode, "--output"];
        var j = DecoderCliTests.Jit([.. args, jit]);
        Assert.That(j.Code, Is.EqualTo(0), j.Err);
        var a = CliTests.RunProcess(new ProcessStartInfo(_binary, [.. args, aot]) { RedirectStandardError = true, RedirectStandardOutput = true });
        Assert.That(a.Code, Is.EqualTo(0), a.Err);
        Assert.That(a.Out, Does.Contain("DecoderOnly"), "the spec's architecture was used");
        Assert.That(File.ReadAllBytes(aot), Is.EqualTo(File.ReadAllBytes(jit)));
    }
}

/// <summary>A golden edifice-l case as the CLI sees it: model.nx (with Edifice's spec) and its input as an .npy.</summary>
internal sealed record EdificeCliCase(string Model, string Input, int Batch, int SeqLen, int ChunkSize)
{
    public static EdificeCliCase Load(string name, TempDir dir)
    {
        string root = Path.Combine(TestContext.CurrentContext.TestDirectory, "golden", "edifice-l", name);
        var input = SafetensorsReader.Read(Path.Combine(root, "io.safetensors"))["input"];
        string npy = dir.File(name + "-input.npy");
        CliTests.WriteF64Npy(npy, input.Data.ToArray(), [.. input.Shape]);
        using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(root, "config.json")));
        int chunk = json.RootElement.GetProperty("build_opts").GetProperty("chunk_size").GetInt32();
        return new EdificeCliCase(Path.Combine(root, "model.nx"), npy, input.Shape[0], input.Shape[1], chunk);
    }

    /// <summary>The data and shape of a little-endian float32 C-order .npy of format 1.0 (what the CLI writes).</summary>
    public static (float[] Data, int[] Shape) ReadFloat32Npy(string path)
    {
        byte[] bytes = File.ReadAllBytes(path);
        Assert.That(bytes[6], Is.EqualTo(1), "format 1.0");
        int headerLength = BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(8));
        string header = System.Text.Encoding.ASCII.GetString(bytes, 10, headerLength);
        Assert.That(header, Does.Contain("'descr': '<f4'").And.Contain("'fortran_order': False"));
        string dims = header[(header.IndexOf("'shape': (", StringComparison.Ordinal) + 10)..];
        int[] shape = [.. dims[..dims.IndexOf(')')].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(int.Parse)];
        var data = new float[shape.Aggregate(1, (x, y) => x * y)];
        Assert.That(bytes.Length - 10 - headerLength, Is.EqualTo(4 * data.Length), "data length");
        Buffer.BlockCopy(bytes, 10 + headerLength, data, 0, 4 * data.Length);
        return (data, shape);
    }
}
