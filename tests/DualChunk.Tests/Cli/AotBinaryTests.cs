using System.Diagnostics;
using DualChunk.Cli;
using DualChunk.Core;
using DualChunk.Kernels;
using DualChunk.Tests.Golden;

namespace DualChunk.Tests.Cli;

/// <summary>
/// The NativeAOT binary that .ci/aot-check publishes (path in DUALCHUNK_AOT_BINARY): it runs the best kernel path this
/// CPU has (never silently the portable one), and its outputs for the sample and every golden case and output mode are
/// bitwise equal to the JIT build's. Without the variable (a plain `dotnet test`) the fixture is skipped.
/// </summary>
[TestFixture]
public sealed class AotBinaryTests
{
    private string _binary = "";
    private string _dir = "";

    [OneTimeSetUp]
    public void FindBinary()
    {
        _binary = Environment.GetEnvironmentVariable("DUALCHUNK_AOT_BINARY") ?? "";
        if (_binary.Length == 0) Assert.Ignore("DUALCHUNK_AOT_BINARY not set: .ci/aot-check publishes the binary and sets it");
        Assert.That(File.Exists(_binary), Is.True, _binary);
    }

    [SetUp]
    public void SetUp()
    {
        _dir = Path.Combine(Path.GetTempPath(), "dualchunk-aot-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
    }

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, recursive: true);

    private (int Code, string Out, string Err) Aot(params string[] args)
    {
        var psi = new ProcessStartInfo(_binary, args) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(120_000))
        {
            p.Kill();
            Assert.Fail($"{_binary} {string.Join(' ', args)} did not finish in 120 s");
        }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    [Test]
    public void RunsTheBestKernelPathTheCpuHas()
    {
        var r = Aot("inspect", GoldenCase.Load("tiny").ModelPath, "--chunk-size", "4");
        Assert.That(r.Code, Is.EqualTo(0), r.Err);
        // The JIT build in this process picks the CPU's best path (or what DOTNET_EnableAVX* allow; CI runs this unset).
        Assert.That(r.Out, Does.Contain($"isa={KernelSelection.Isa},").And.Contain("(NativeAOT)"));
        Assert.That(r.Out, Does.Not.Contain("note:"), "compiled for less than the CPU offers");
        Assert.That(KernelSelection.Isa, Is.EqualTo(BuildInfo.CpuIsa), "the JIT build itself uses what CPUID reports");
    }

    private static IEnumerable<TestCaseData> Cases()
    {
        foreach (string name in GoldenCase.Names)
            foreach (string mode in new[] { "last", "all", "mean" })
                yield return new TestCaseData(name, mode).SetName($"Aot_{name}_{mode}");
    }

    [TestCaseSource(nameof(Cases))]
    public void OutputIsBitwiseEqualToTheJitBuild(string name, string mode)
        => AssertSameBytesAsJit("run", name, mode);

    /// <summary><paramref name="command"/> (run or stream) on a golden case writes the same bytes from the binary and the JIT build.</summary>
    private void AssertSameBytesAsJit(string command, string name, string mode)
    {
        var golden = GoldenCase.Load(name);
        string input = Path.Combine(_dir, "x.npy"), jit = Path.Combine(_dir, "jit.npy"), aot = Path.Combine(_dir, "aot.npy");
        Npy.Write(input, golden.Input, [golden.Batch, golden.SeqLen, golden.EmbedDim]);
        string[] args = [command, "--model", golden.ModelPath, "--chunk-size", golden.ChunkSize.ToString(), "--input", input, "--output-mode", mode, "--output"];
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        Assert.That(CommandLine.Run([.. args, jit], stdout, stderr), Is.EqualTo(0), stderr.ToString());
        var r = Aot([.. args, aot]);
        Assert.That(r.Code, Is.EqualTo(0), r.Err);
        Assert.That(File.ReadAllBytes(aot), Is.EqualTo(File.ReadAllBytes(jit)));
    }

    [TestCase("tiny", "all")]
    [TestCase("proj_multi", "mean")]
    [TestCase("long", "last")]
    public void StreamOutputIsBitwiseEqualToTheJitBuild(string name, string mode)
        => AssertSameBytesAsJit("stream", name, mode);

    /// <summary>The decoder: golden x2's model.nx (with its spec, so no --chunk-size), run and stream, every mode.</summary>
    [Test]
    public void DecoderOutputIsBitwiseEqualToTheJitBuild([Values("run", "stream")] string command, [Values("last", "all", "mean")] string mode)
    {
        var x2 = EdificeCliCase.Load("x2", _dir);
        string jit = Path.Combine(_dir, "jit.npy"), aot = Path.Combine(_dir, "aot.npy");
        string[] args = [command, "--model", x2.Model, "--input", x2.Input, "--output-mode", mode, "--output"];
        var j = DecoderCliTests.Jit([.. args, jit]);
        Assert.That(j.Code, Is.EqualTo(0), j.Err);
        var a = Aot([.. args, aot]);
        Assert.That(a.Code, Is.EqualTo(0), a.Err);
        Assert.That(a.Out, Does.Contain("DecoderOnly"), "the spec's architecture was used");
        Assert.That(File.ReadAllBytes(aot), Is.EqualTo(File.ReadAllBytes(jit)));
    }

    [Test]
    public void TheSampleModelMatchesEdifice()
    {
        string samples = Loading.NpyTests.SamplesTiny, output = Path.Combine(_dir, "out.npy");
        var r = Aot("run", "--model", Path.Combine(samples, "model.safetensors"), "--chunk-size", "4",
            "--input", Path.Combine(samples, "input.npy"), "--output", output);
        Assert.That(r.Code, Is.EqualTo(0), r.Err);
        var (y, _) = Npy.Read(output);
        var (expected, _) = Npy.Read(Path.Combine(samples, "expected_last_f64.npy")); // float64, rounded to float32
        double maxRef = expected.Max(Math.Abs);
        Assert.That(y.Select((v, i) => Math.Abs(v - expected[i])).Max(), Is.LessThanOrEqualTo(3e-6 * maxRef));
    }
}
