using System.Diagnostics;
using DualChunk.Cli;
using DualChunk.Core;
using DualChunk.Tests.Golden;

namespace DualChunk.Tests.Cli;

/// <summary>The <c>dualchunk</c> contract: files in, files out, exit codes, one-line errors.</summary>
[TestFixture]
public sealed class CliTests
{
    private string _dir = "";

    [SetUp]
    public void SetUp()
    {
        _dir = Path.Combine(Path.GetTempPath(), "dualchunk-cli-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
    }

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, recursive: true);

    private static (int Code, string Out, string Err) Cli(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = CommandLine.Run(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    [TestCase("tiny", "last")]
    [TestCase("odd_dims", "all")]
    [TestCase("proj_multi", "mean")]
    public void RunWritesEdificesOutputFromSafetensorsAndDcw(string name, string mode)
    {
        var golden = GoldenCase.Load(name);
        string input = Path.Combine(_dir, "x.npy");
        Npy.Write(input, golden.Input, [golden.Batch, golden.SeqLen, golden.EmbedDim]);
        string dcw = Path.Combine(_dir, "m.dcw");
        var convert = Cli("convert", golden.ModelPath, "--chunk-size", golden.ChunkSize.ToString(), "-o", dcw);
        Assert.That(convert.Code, Is.EqualTo(0), convert.Err);

        foreach (var model in new[] { golden.ModelPath, dcw })
        {
            string output = Path.Combine(_dir, "y.npy");
            var args = new List<string> { "run", "--model", model, "--input", input, "--output", output, "--output-mode", mode };
            if (model == golden.ModelPath) args.AddRange(["--chunk-size", golden.ChunkSize.ToString()]);
            var run = Cli([.. args]);
            Assert.That(run.Code, Is.EqualTo(0), run.Err);
            var (y, shape) = Npy.Read(output);
            var reference = golden.ReferenceF64(mode);
            Assert.That(shape, Is.EqualTo(mode == "all" ? new[] { golden.Batch, golden.SeqLen, golden.HiddenSize } : new[] { golden.Batch, golden.HiddenSize }));
            double maxRef = reference.Max(Math.Abs);
            double maxErr = y.Select((v, i) => Math.Abs(v - reference[i])).Max();
            Assert.That(maxErr / maxRef, Is.LessThanOrEqualTo(3e-6));
        }
    }

    [Test]
    public void SafetensorsWithoutChunkSizeDefaultsTo64AndSaysSo()
    {
        // no_proj has N = 64, so Edifice's default chunk size 64 is valid for its input (one chunk),
        // though the model was trained with C = 16: the notice is what tells the user.
        var golden = GoldenCase.Load("no_proj");
        string input = Path.Combine(_dir, "x.npy"), output = Path.Combine(_dir, "y.npy");
        Npy.Write(input, golden.Input, [golden.Batch, golden.SeqLen, golden.EmbedDim]);
        var run = Cli("run", "--model", golden.ModelPath, "--input", input, "--output", output);
        Assert.That(run.Code, Is.EqualTo(0), run.Err);
        Assert.That(run.Err, Does.Contain("--chunk-size not given").And.Contain("64"));
    }

    [Test]
    public void TwoDimensionalInputMeansBatchOne()
    {
        var golden = GoldenCase.Load("no_proj"); // B = 1
        string input = Path.Combine(_dir, "x.npy"), output = Path.Combine(_dir, "y.npy");
        Npy.Write(input, golden.Input, [golden.SeqLen, golden.EmbedDim]);
        var run = Cli("run", "--model", golden.ModelPath, "--chunk-size", "16", "--input", input, "--output", output);
        Assert.That(run.Code, Is.EqualTo(0), run.Err);
        var (y, shape) = Npy.Read(output);
        Assert.That(shape, Is.EqualTo(new[] { 1, golden.HiddenSize }));
        var reference = golden.ReferenceF64("last");
        Assert.That(y.Select((v, i) => Math.Abs(v - reference[i])).Max(), Is.LessThan(3e-6 * reference.Max(Math.Abs)));
    }

    [Test]
    public void Float64InputIsAccepted()
    {
        var golden = GoldenCase.Load("tiny");
        string input = Path.Combine(_dir, "x.npy"), output = Path.Combine(_dir, "y.npy");
        WriteF64Npy(input, golden.Input, [golden.Batch, golden.SeqLen, golden.EmbedDim]);
        var run = Cli("run", "--model", golden.ModelPath, "--chunk-size", "4", "--input", input, "--output", output);
        Assert.That(run.Code, Is.EqualTo(0), run.Err);
        var reference = golden.ReferenceF64("last");
        var (y, _) = Npy.Read(output);
        Assert.That(y.Select((v, i) => Math.Abs(v - reference[i])).Max(), Is.LessThan(3e-6 * reference.Max(Math.Abs)));
    }

    [Test]
    public void ErrorsExitNonZeroWithOneLineOnStderr()
    {
        var golden = GoldenCase.Load("tiny");
        string input = Path.Combine(_dir, "x.npy"), output = Path.Combine(_dir, "y.npy");
        Npy.Write(input, golden.Input, [golden.Batch, golden.SeqLen, golden.EmbedDim]);
        string dcw = Path.Combine(_dir, "m.dcw");
        Assert.That(Cli("convert", golden.ModelPath, "--chunk-size", "4", "-o", dcw).Code, Is.EqualTo(0));
        string badShape = Path.Combine(_dir, "bad.npy");
        Npy.Write(badShape, new float[2 * 8 * 31], [2, 8, 31]);
        string nonDiv = Path.Combine(_dir, "nondiv.npy");
        Npy.Write(nonDiv, RandomWeights.Input(10 * 32, 1), [1, 10, 32]);
        string nan = Path.Combine(_dir, "nan.npy");
        var nanData = golden.Input;
        nanData[17] = float.NaN;
        Npy.Write(nan, nanData, [golden.Batch, golden.SeqLen, golden.EmbedDim]);
        string notNpy = Path.Combine(_dir, "junk.npy");
        File.WriteAllText(notNpy, "hello");

        var cases = new (string[] Args, string Expect)[]
        {
            (["run", "--model", dcw, "--chunk-size", "8", "--input", input, "--output", output], "chunk size"),
            (["run", "--model", golden.ModelPath, "--chunk-size", "4", "--input", badShape, "--output", output], "embed_dim = 32"),
            (["run", "--model", golden.ModelPath, "--chunk-size", "4", "--input", nonDiv, "--output", output], "not a multiple of the chunk size 4"),
            (["run", "--model", golden.ModelPath, "--chunk-size", "4", "--input", nan, "--output", output], "NaN"),
            (["run", "--model", golden.ModelPath, "--chunk-size", "4", "--input", notNpy, "--output", output], "not a .npy file"),
            (["run", "--model", Path.Combine(_dir, "missing.safetensors"), "--input", input, "--output", output], "missing.safetensors"),
            (["run", "--model", golden.ModelPath, "--chunk-size", "0", "--input", input, "--output", output], "--chunk-size 0"),
            (["run", "--model", golden.ModelPath, "--chunk-size", "4", "--input", input, "--output", output, "--output-mode", "first"], "last, all, mean"),
            (["run", "--model", golden.ModelPath, "--input", input], "--output"),
            (["run", "--model", golden.ModelPath, "--chunk-size", "4", "--input", input, "--output", output, "--bogus", "1"], "--bogus"),
            (["frobnicate"], "unknown command"),
        };
        foreach (var (args, expect) in cases)
        {
            var r = Cli(args);
            Assert.That(r.Code, Is.Not.EqualTo(0), string.Join(' ', args));
            var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.That(lines, Has.Length.EqualTo(1), string.Join(' ', args) + " => " + r.Err);
            Assert.That(lines[0], Does.Contain(expect), string.Join(' ', args));
            Assert.That(lines[0], Does.Not.Contain("(Parameter '"), "no API parameter names on the command line");
        }
    }

    [Test]
    public void InspectShowsConfigTensorsAndChecksum()
    {
        var golden = GoldenCase.Load("proj_multi");
        string dcw = Path.Combine(_dir, "m.dcw");
        Assert.That(Cli("convert", golden.ModelPath, "--chunk-size", "8", "-o", dcw).Code, Is.EqualTo(0));
        var ok = Cli("inspect", dcw);
        Assert.That(ok.Code, Is.EqualTo(0), ok.Err);
        Assert.That(ok.Out, Does.Contain("H=48").And.Contain("C=8").And.Contain("dual_chunk_block_2_ffn_down.kernel").And.Contain("checksum: ok"));

        var bytes = File.ReadAllBytes(dcw);
        bytes[^3] ^= 0x55; // inside the last tensor's data
        File.WriteAllBytes(dcw, bytes);
        var bad = Cli("inspect", dcw);
        Assert.That(bad.Out + bad.Err, Does.Contain("checksum").And.Contain("MISMATCH"));
        Assert.That(bad.Code, Is.Not.EqualTo(0));

        var st = Cli("inspect", golden.ModelPath);
        Assert.That(st.Code, Is.EqualTo(0), st.Err);
        Assert.That(st.Out, Does.Contain("input_projection.kernel").And.Contain("E=40"));
    }

    [Test]
    public void TheBuiltExecutableHonoursTheExitCodeContract()
    {
        string dll = Path.Combine(TestContext.CurrentContext.TestDirectory, "dualchunk.dll");
        var psi = new ProcessStartInfo("dotnet", [dll, "run", "--model", "nope.safetensors", "--input", "x.npy", "--output", "y.npy"])
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
        };
        using var p = Process.Start(psi)!;
        string err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.That(p.ExitCode, Is.Not.EqualTo(0));
        Assert.That(err.Trim().Split('\n'), Has.Length.EqualTo(1));
        Assert.That(err, Does.Contain("nope.safetensors"));
    }

    [Test]
    public void BenchWithoutCountsWarmsUpAndTimesByTimeAndAllocatesNothing()
    {
        var r = Cli("bench", "--random-model", "20,32,4,1", "--chunk-size", "8", "--batch", "1", "--seq", "16", "--json");
        Assert.That(r.Code, Is.EqualTo(0), r.Err);
        using var json = System.Text.Json.JsonDocument.Parse(r.Out);
        var root = json.RootElement;
        Assert.That(root.GetProperty("warmup").GetInt32(), Is.GreaterThanOrEqualTo(50), "tier-1 warm-up");
        Assert.That(root.GetProperty("iterations").GetInt32(), Is.GreaterThanOrEqualTo(30));
        Assert.That(root.GetProperty("allocated_bytes_per_call").GetInt64(), Is.EqualTo(0));
        Assert.That(root.GetProperty("median_ms").GetDouble(), Is.GreaterThan(0).And.GreaterThanOrEqualTo(root.GetProperty("min_ms").GetDouble()));
    }

    [Test]
    public void NominalFlopsMatchTheSpeedIssuesFigures()
    {
        // The speed issue quotes 0.429 GFLOP for config a; its floor for d (235 ms at 117 GFLOP/s) implies ~27.5.
        var config = new ModelConfig(287, 256, 8, 4, 64, 1024);
        Assert.That(BenchCommand.NominalGflop(config, 1, 64), Is.EqualTo(0.4288).Within(0.0001));
        Assert.That(BenchCommand.NominalGflop(config, 1, 4096), Is.EqualTo(27.46).Within(0.01));
    }

    private static void WriteF64Npy(string path, float[] data, int[] shape)
    {
        string dict = $"{{'descr': '<f8', 'fortran_order': False, 'shape': ({string.Join(", ", shape)}), }}";
        int pad = (64 - (10 + dict.Length + 1) % 64) % 64;
        string header = dict + new string(' ', pad) + "\n";
        using var s = File.Create(path);
        s.Write([0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', 1, 0, (byte)header.Length, (byte)(header.Length >> 8)]);
        s.Write(System.Text.Encoding.ASCII.GetBytes(header));
        foreach (float v in data) s.Write(BitConverter.GetBytes((double)v));
    }
}
