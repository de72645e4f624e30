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
            golden.AssertMatches(y, shape, mode, $"{name} {mode} from {Path.GetFileName(model)}");
        }
    }

    [TestCase("tiny", "last")]
    [TestCase("proj_multi", "all")]
    [TestCase("long", "mean")]
    public void StreamWritesEveryChunksOutputAsRunOnThePrefix(string name, string mode)
    {
        // Row k of [B, N/C, H] (last, mean) is run's output on the first k + 1 chunks; all is run's [B, N, H] bitwise.
        var golden = GoldenCase.Load(name);
        int b = golden.Batch, n = golden.SeqLen, c = golden.ChunkSize, e = golden.EmbedDim, h = golden.HiddenSize;
        string input = Path.Combine(_dir, "x.npy"), output = Path.Combine(_dir, "y.npy");
        Npy.Write(input, golden.Input, [b, n, e]);
        var r = Cli("stream", "--model", golden.ModelPath, "--chunk-size", c.ToString(), "--input", input, "--output", output, "--output-mode", mode, "--threads", "2");
        Assert.That(r.Code, Is.EqualTo(0), r.Err);
        Assert.That(r.Out, Does.Contain($"{n / c} chunks streamed"));
        var (y, shape) = Npy.Read(output);
        using var model = DualChunkModel.Load(golden.ModelPath, c);
        var outputMode = mode == "all" ? OutputMode.All : mode == "mean" ? OutputMode.MeanPool : OutputMode.LastTimestep;
        if (mode == "all")
        {
            Assert.That(shape, Is.EqualTo(new[] { b, n, h }));
            Assert.That(y, Is.EqualTo(model.Run(golden.Input, b, n, OutputMode.All)));
            return;
        }
        Assert.That(shape, Is.EqualTo(new[] { b, n / c, h }));
        for (int k = 0; k < n / c; k++)
        {
            int len = (k + 1) * c;
            var prefix = new float[b * len * e];
            for (int s = 0; s < b; s++) golden.Input.AsSpan(s * n * e, len * e).CopyTo(prefix.AsSpan(s * len * e));
            var expected = model.Run(prefix, b, len, outputMode);
            for (int s = 0; s < b; s++)
                Assert.That(y.AsSpan((s * (n / c) + k) * h, h).ToArray(), Is.EqualTo(expected.AsSpan(s * h, h).ToArray()), $"sequence {s} chunk {k}");
        }
    }

    [Test]
    public void StreamRefusesPartialChunksLikeRun()
    {
        var golden = GoldenCase.Load("tiny");
        int c = golden.ChunkSize, e = golden.EmbedDim;
        string input = Path.Combine(_dir, "x.npy"), output = Path.Combine(_dir, "y.npy");
        Npy.Write(input, new float[(c + 1) * e], [1, c + 1, e]);
        var r = Cli("stream", "--model", golden.ModelPath, "--chunk-size", c.ToString(), "--input", input, "--output", output);
        var run = Cli("run", "--model", golden.ModelPath, "--chunk-size", c.ToString(), "--input", input, "--output", output);
        Assert.That(r.Code, Is.EqualTo(1));
        Assert.That(r.Code, Is.EqualTo(run.Code), "the same exit code as run");
        Assert.That(r.Err.TrimEnd().Split('\n'), Has.Length.EqualTo(1));
        Assert.That(r.Err, Does.Contain($"not a multiple of the chunk size {c}").And.EqualTo(run.Err));
        Assert.That(File.Exists(output), Is.False);
        var bad = Cli("stream", "--model", golden.ModelPath, "--input", input, "--output", output, "--output-mode", "first");
        Assert.That(bad.Code, Is.EqualTo(2), bad.Err);
        var help = Cli("--help");
        Assert.That(help.Out, Does.Contain("stream"));
    }

    [Test]
    public void BenchStreamTimesOneAppendAtTheGivenLength()
    {
        var r = Cli("bench", "--random-model", "20,32,4,2", "--chunk-size", "8", "--batch", "2", "--seq", "64", "--stream", "--warmup", "2", "--iterations", "3", "--output-mode", "mean");
        Assert.That(r.Code, Is.EqualTo(0), r.Err);
        using var json = System.Text.Json.JsonDocument.Parse(r.Out);
        var root = json.RootElement;
        Assert.That(root.GetProperty("stream").GetBoolean(), Is.True);
        Assert.That(root.GetProperty("seq_len").GetInt32(), Is.EqualTo(64));
        Assert.That(root.GetProperty("iterations").GetInt32(), Is.EqualTo(3));
        Assert.That(root.GetProperty("median_ms").GetDouble(), Is.GreaterThan(0));
        Assert.That(root.GetProperty("stream_state_bytes").GetInt64(), Is.EqualTo(root.GetProperty("stream_state_bytes_formula").GetInt64()));
        Assert.That(root.GetProperty("stream_state_bytes").GetInt64(), Is.EqualTo(2L * 2 * 8 * 2 * 32 * 4 + 2 * 2 * 32 * 8));
        Assert.That(root.GetProperty("allocated_bytes_per_call").GetInt64(), Is.Zero);
        var plain = Cli("bench", "--random-model", "20,32,4,2", "--chunk-size", "8", "--batch", "2", "--seq", "64", "--warmup", "1", "--iterations", "1");
        Assert.That(plain.Code, Is.EqualTo(0), plain.Err);
        var names = System.Text.Json.JsonDocument.Parse(plain.Out).RootElement.EnumerateObject().Select(p => p.Name);
        Assert.That(root.EnumerateObject().Select(p => p.Name), Is.SupersetOf(names), "the same JSON fields as bench");
    }

    [Test]
    public void BenchCallersCountsTheCallsOfConcurrentCallers()
    {
        var r = Cli("bench", "--random-model", "20,32,4,2", "--chunk-size", "8", "--batch", "1", "--seq", "16", "--callers", "3", "--seconds", "0.3", "--warmup", "2");
        Assert.That(r.Code, Is.EqualTo(0), r.Err);
        var root = System.Text.Json.JsonDocument.Parse(r.Out).RootElement;
        int calls = root.GetProperty("calls").GetInt32();
        double seconds = root.GetProperty("seconds").GetDouble();
        Assert.Multiple(() =>
        {
            Assert.That(root.GetProperty("callers").GetInt32(), Is.EqualTo(3));
            Assert.That(calls, Is.GreaterThanOrEqualTo(3), "every caller makes at least one timed call");
            Assert.That(seconds, Is.GreaterThanOrEqualTo(0.3), "the callers run until the deadline");
            Assert.That(root.GetProperty("calls_per_second").GetDouble(), Is.EqualTo(calls / seconds).Within(0.01 * calls / seconds + 0.01));
            Assert.That(root.GetProperty("median_ms").GetDouble(), Is.GreaterThan(0));
        });
        var bad = Cli("bench", "--random-model", "20,32,4,2", "--chunk-size", "8", "--batch", "1", "--seq", "16", "--callers", "2", "--stream");
        Assert.That(bad.Code, Is.EqualTo(2), bad.Err);
        Assert.That(bad.Err, Does.Contain("does not combine with --stream"));
        var noCallers = Cli("bench", "--random-model", "20,32,4,2", "--chunk-size", "8", "--batch", "1", "--seq", "16", "--seconds", "1");
        Assert.That(noCallers.Code, Is.EqualTo(2), noCallers.Err);
        Assert.That(noCallers.Err, Does.Contain("--seconds applies to --callers"));
    }

    [Test]
    public void BenchArchDecoderTimesARandomDecoderOnlyModel()
    {
        var r = Cli("bench", "--random-model", "20,32,4,2", "--arch", "decoder", "--chunk-size", "8", "--batch", "2", "--seq", "64", "--warmup", "2", "--iterations", "3");
        Assert.That(r.Code, Is.EqualTo(0), r.Err);
        var root = System.Text.Json.JsonDocument.Parse(r.Out).RootElement;
        Assert.That(root.GetProperty("architecture").GetString(), Is.EqualTo("decoder"));
        Assert.That(root.GetProperty("config").GetString(), Does.StartWith("DecoderOnly ").And.Contain("F=88"));
        Assert.That(root.GetProperty("allocated_bytes_per_call").GetInt64(), Is.Zero);
        var plain = Cli("bench", "--random-model", "20,32,4,2", "--chunk-size", "8", "--batch", "2", "--seq", "64", "--warmup", "1", "--iterations", "1");
        Assert.That(System.Text.Json.JsonDocument.Parse(plain.Out).RootElement.GetProperty("architecture").GetString(), Is.EqualTo("dualchunk"));
        var bad = Cli("bench", "--random-model", "20,32,4,2", "--arch", "gpt", "--chunk-size", "8", "--batch", "2", "--seq", "64");
        Assert.That(bad.Code, Is.EqualTo(2), bad.Err);
        Assert.That(bad.Err, Does.Contain("--arch 'gpt'"));
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
        golden.AssertMatches(y, shape, "last", "[N, E] input");
    }

    [Test]
    public void Float64InputIsAccepted()
    {
        var golden = GoldenCase.Load("tiny");
        string input = Path.Combine(_dir, "x.npy"), output = Path.Combine(_dir, "y.npy");
        WriteF64Npy(input, golden.Input, [golden.Batch, golden.SeqLen, golden.EmbedDim]);
        var run = Cli("run", "--model", golden.ModelPath, "--chunk-size", "4", "--input", input, "--output", output);
        Assert.That(run.Code, Is.EqualTo(0), run.Err);
        var (y, shape) = Npy.Read(output);
        golden.AssertMatches(y, shape, "last", "float64 input");
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

        // Exit code 2: the command line itself is wrong (README: "2 for a usage error"); 1: it is well formed but
        // the run fails (a file, its contents, a value the model rejects).
        const int usage = 2, failure = 1;
        var cases = new (string[] Args, string Expect, int Code)[]
        {
            (["run", "--model", dcw, "--chunk-size", "8", "--input", input, "--output", output], "chunk size", failure),
            (["run", "--model", golden.ModelPath, "--chunk-size", "4", "--input", badShape, "--output", output], "embed_dim = 32", failure),
            (["run", "--model", golden.ModelPath, "--chunk-size", "4", "--input", nonDiv, "--output", output], "not a multiple of the chunk size 4", failure),
            (["run", "--model", golden.ModelPath, "--chunk-size", "4", "--input", nan, "--output", output], "NaN", failure),
            (["run", "--model", golden.ModelPath, "--chunk-size", "4", "--input", notNpy, "--output", output], "not a .npy file", failure),
            (["run", "--model", golden.ModelPath, "--chunk-size", "4", "--input", Path.Combine(_dir, "none.npy"), "--output", output], "none.npy", failure),
            (["run", "--model", Path.Combine(_dir, "missing.safetensors"), "--input", input, "--output", output], "missing.safetensors", failure),
            (["convert", Path.Combine(_dir, "missing.safetensors"), "--chunk-size", "4", "-o", dcw + "2"], "missing.safetensors", failure),
            (["inspect", notNpy], "junk.npy", failure),
            (["run", "--model", golden.ModelPath, "--chunk-size", "0", "--input", input, "--output", output], "--chunk-size 0", usage),
            (["run", "--model", golden.ModelPath, "--chunk-size", "four", "--input", input, "--output", output], "--chunk-size 'four'", usage),
            (["run", "--model", golden.ModelPath, "--chunk-size", "4", "--input", input, "--output", output, "--output-mode", "first"], "last, all, mean", usage),
            (["run", "--model", golden.ModelPath, "--input", input], "--output", usage),
            (["run", "--model", golden.ModelPath, "--chunk-size", "4", "--input", input, "--output", output, "--bogus", "1"], "--bogus", usage),
            (["run", "--model", golden.ModelPath, "--chunk-size", "4", "--input", input, "--output", output, "--threads", "0"], "--threads", usage),
            (["convert", golden.ModelPath, "--chunk-size", "4"], "-o", usage),
            (["inspect"], "Required argument missing", usage),
            (["bench", "--random-model", "20,32,4,1", "--chunk-size", "8", "--seq", "16"], "--batch", usage),
            (["bench", "--random-model", "20,32,4", "--chunk-size", "8", "--batch", "1", "--seq", "16"], "E,H,NH,L", usage),
            (["frobnicate"], "unknown command", usage),
        };
        foreach (var (args, expect, code) in cases)
        {
            var r = Cli(args);
            Assert.That(r.Code, Is.EqualTo(code), string.Join(' ', args) + " => " + r.Err);
            if (args[0] != "inspect") // inspect prints the file line before it reads the file
                Assert.That(r.Out, Is.Empty, "nothing on stdout: " + string.Join(' ', args));
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
        var (code, _, err) = RunProcess(psi);
        Assert.That(code, Is.EqualTo(1), err);
        Assert.That(err.Trim().Split('\n'), Has.Length.EqualTo(1));
        Assert.That(err, Does.Contain("nope.safetensors"));

        psi = new ProcessStartInfo("dotnet", [dll, "run", "--model", "nope.safetensors", "--input", "x.npy"])
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
        };
        (code, _, err) = RunProcess(psi);
        Assert.That(code, Is.EqualTo(2), "usage error: " + err);
        Assert.That(err, Does.Contain("--output"));
    }

    /// <summary>
    /// README's quick-start, the first command as it is written there, run by the built CLI from the repository root;
    /// its out.npy against samples/tiny/expected_last_f64.npy (Edifice's float64 result, the golden "tiny" case).
    /// The second command (<c>dotnet test -c Release</c>) is what .ci/run runs first.
    /// </summary>
    [Test]
    public void ReadmeQuickStartRunsAndMatchesTheExpectedOutput()
    {
        string root = RepositoryRoot();
        string readme = File.ReadAllText(Path.Combine(root, "README.md"));
        int fence = readme.IndexOf("```sh\n", StringComparison.Ordinal);
        Assert.That(fence, Is.GreaterThanOrEqualTo(0), "README has a ```sh quick-start block");
        string block = readme[(fence + 6)..readme.IndexOf("```", fence + 6, StringComparison.Ordinal)];
        var commands = block.Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith('#')).ToArray();
        Assert.That(commands, Is.EqualTo(new[] { commands[0], "dotnet test -c Release" }), "two commands: run, then the tests");
        const string prefix = "dotnet run -c Release --project src/DualChunk.Cli -- ";
        Assert.That(commands[0], Does.StartWith(prefix));
        var args = commands[0][prefix.Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries).ToList();
        Assert.That(args[0], Is.EqualTo("run"));
        int o = args.IndexOf("--output");
        Assert.That(args[o + 1], Is.EqualTo("out.npy"));
        string output = Path.Combine(_dir, "out.npy");
        args[o + 1] = output; // the README writes into the working directory; keep the repository clean

        string dll = Path.Combine(TestContext.CurrentContext.TestDirectory, "dualchunk.dll");
        var psi = new ProcessStartInfo("dotnet", [dll, .. args]) { WorkingDirectory = root, RedirectStandardError = true, RedirectStandardOutput = true };
        var (code, _, err) = RunProcess(psi);
        Assert.That(code, Is.EqualTo(0), err);

        var (y, shape) = Npy.Read(output);
        var (expected, expectedShape) = ReadNpy(Path.Combine(root, "samples", "tiny", "expected_last_f64.npy"), "<f8");
        var tiny = GoldenCase.Load("tiny");
        Assert.That(expected, Is.EqualTo(tiny.ReferenceF64("last")), "samples/tiny is the golden tiny case");
        Assert.That(shape, Is.EqualTo(expectedShape), "out.npy shape");
        tiny.AssertMatches(y, shape, "last", "README quick-start out.npy");
    }

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(TestContext.CurrentContext.TestDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "README.md")) && Directory.Exists(Path.Combine(dir.FullName, "samples", "tiny")))
                return dir.FullName;
        Assert.Fail("no repository root (README.md and samples/tiny) above " + TestContext.CurrentContext.TestDirectory);
        return "";
    }

    /// <summary>
    /// A little-endian C-order .npy of format 1.0 and dtype <paramref name="descr"/> (<c>&lt;f8</c>, as numpy wrote
    /// samples/tiny, or <c>&lt;f4</c>, as the CLI writes), as float64 (exact for both).
    /// </summary>
    internal static (double[] Data, int[] Shape) ReadNpy(string path, string descr)
    {
        byte[] bytes = File.ReadAllBytes(path);
        Assert.That(bytes.AsSpan(0, 6).ToArray(), Is.EqualTo(new byte[] { 0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y' }));
        Assert.That(bytes[6], Is.EqualTo(1), "version 1.0");
        int headerLength = bytes[8] | bytes[9] << 8;
        string header = System.Text.Encoding.ASCII.GetString(bytes, 10, headerLength);
        Assert.That(header, Does.Contain($"'descr': '{descr}'").And.Contain("'fortran_order': False"));
        string dims = header[(header.IndexOf("'shape': (", StringComparison.Ordinal) + 10)..];
        int[] shape = [.. dims[..dims.IndexOf(')')].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(int.Parse)];
        var data = new double[shape.Aggregate(1, (a, b) => a * b)];
        int size = descr == "<f8" ? 8 : 4;
        Assert.That(bytes.Length - 10 - headerLength, Is.EqualTo(size * data.Length), "data length");
        for (int i = 0; i < data.Length; i++)
            data[i] = size == 8 ? BitConverter.ToDouble(bytes, 10 + headerLength + 8 * i) : BitConverter.ToSingle(bytes, 10 + headerLength + 4 * i);
        return (data, shape);
    }

    /// <summary>Runs a process with a bound: reads both streams concurrently; kills it (and fails) after 3 minutes.</summary>
    internal static (int Code, string Out, string Err) RunProcess(ProcessStartInfo psi)
    {
        using var p = Process.Start(psi) ?? throw new InvalidOperationException("dotnet did not start");
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(3)))
        {
            p.Kill(entireProcessTree: true);
            p.WaitForExit(TimeSpan.FromSeconds(30));
            Assert.Fail($"{psi.FileName} {string.Join(' ', psi.ArgumentList)} did not exit within 3 minutes; killed");
        }
        if (!Task.WaitAll([stdout, stderr], TimeSpan.FromSeconds(30)))
            Assert.Fail("the process exited but its output streams stayed open for 30 s");
        return (p.ExitCode, stdout.GetAwaiter().GetResult(), stderr.GetAwaiter().GetResult());
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

    internal static void WriteF64Npy(string path, float[] data, int[] shape)
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
