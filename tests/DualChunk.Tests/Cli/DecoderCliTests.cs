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
        var x2 = EdificeCliCase.Load("x2", _dir.Path);
        string run = _dir.File("run.npy"), stream = _dir.File("stream.npy");
        var r = Jit("run", "--model", x2.Model, "--input", x2.Input, "--output-mode", mode, "--output", run);
        Assert.That(r.Code, Is.EqualTo(0), r.Err);
        var s = Jit("stream", "--model", x2.Model, "--input", x2.Input, "--output-mode", mode, "--output", stream, "--threads", "2");
        Assert.That(s.Code, Is.EqualTo(0), s.Err);
        Assert.That(s.Out, Does.Contain($"{x2.SeqLen / x2.ChunkSize} chunks streamed"));
        var (runData, runShape) = CliTests.ReadNpy(run, "<f4");
        var (streamData, streamShape) = CliTests.ReadNpy(stream, "<f4");
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

/// <summary>A golden edifice-l case as the CLI sees it: model.nx (with Edifice's spec) and its input as an .npy.</summary>
internal sealed record EdificeCliCase(string Model, string Input, int Batch, int SeqLen, int ChunkSize)
{
    public static EdificeCliCase Load(string name, string dir)
    {
        string root = Path.Combine(TestContext.CurrentContext.TestDirectory, "golden", "edifice-l", name);
        var input = SafetensorsReader.Read(Path.Combine(root, "io.safetensors"))["input"];
        string npy = Path.Combine(dir, name + "-input.npy");
        CliTests.WriteF64Npy(npy, input.Data.ToArray(), [.. input.Shape]);
        using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(root, "config.json")));
        int chunk = json.RootElement.GetProperty("build_opts").GetProperty("chunk_size").GetInt32();
        return new EdificeCliCase(Path.Combine(root, "model.nx"), npy, input.Shape[0], input.Shape[1], chunk);
    }
}
