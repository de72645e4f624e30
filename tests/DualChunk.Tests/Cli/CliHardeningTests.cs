using System.Buffers.Binary;
using System.Diagnostics;
using DualChunk.Cli;
using DualChunk.Core;
using DualChunk.Tests.Loading;

namespace DualChunk.Tests.Cli;

/// <summary>
/// Issue 9 at the command line: special files, <c>convert -o</c> through links, messages that say what is wrong and
/// the fix, and an <c>inspect</c> that fails on everything <c>run</c> rejects. Every failure is one line on stderr and
/// exit 1 or 2.
/// </summary>
[TestFixture]
public sealed class CliHardeningTests
{
    private TempDir _dir = null!;

    [SetUp]
    public void SetUp() => _dir = new TempDir();

    [TearDown]
    public void TearDown() => _dir.Dispose();

    private static (int Code, string Out, string Err) Cli(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = CommandLine.Run(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    /// <summary>Runs the CLI on a worker thread with a bound, so that a hang fails the test instead of stalling it.</summary>
    private static (int Code, string Out, string Err) CliBounded(string? fifoToRelease, params string[] args)
    {
        var task = Task.Run(() => Cli(args));
        if (!task.Wait(TimeSpan.FromSeconds(60)))
        {
            if (fifoToRelease is not null)
                using (new FileStream(fifoToRelease, FileMode.Open, FileAccess.Write)) { } // unblock the reader
            Assert.Fail($"dualchunk {string.Join(' ', args)} blocked");
        }
        return task.Result;
    }

    private static void AssertOneLineError(int code, string err, int expectedCode, params string[] fragments)
    {
        Assert.That(code, Is.EqualTo(expectedCode), err);
        Assert.That(err.TrimEnd('\n').Split('\n'), Has.Length.EqualTo(1), err);
        Assert.That(err, Does.StartWith("dualchunk: error: "));
        foreach (var f in fragments) Assert.That(err, Does.Contain(f));
    }

    private string MakeFifo(string name)
    {
        string path = _dir.File(name);
        using var mkfifo = Process.Start("mkfifo", path);
        Assert.That(mkfifo.WaitForExit(30_000) && mkfifo.ExitCode == 0, "mkfifo");
        return path;
    }

    private string SmallDcwFile(string name = "m.dcw", Action<byte[]>? tamper = null)
    {
        var bytes = LoadingTestData.SmallDcw();
        tamper?.Invoke(bytes);
        string path = _dir.File(name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    [Test]
    public void SpecialFilesAreRefusedInOneLine()
    {
        if (!OperatingSystem.IsLinux()) Assert.Ignore("FIFOs and /dev/zero");
        string fifo = MakeFifo("pipe.dcw");
        string input = _dir.File("x.npy");
        Npy.Write(input, new float[2 * 6], [2, 6]);
        foreach (var (path, kind) in new[] { (fifo, "FIFO"), ("/dev/zero", "character device") })
        {
            var inspect = CliBounded(fifo, "inspect", path);
            AssertOneLineError(inspect.Code, inspect.Err, 1, path, kind, "not a regular file");
            var run = CliBounded(fifo, "run", "--model", path, "--input", input, "--output", _dir.File("y.npy"));
            AssertOneLineError(run.Code, run.Err, 1, path, kind, "not a regular file");
            var convert = CliBounded(fifo, "convert", path, "-o", _dir.File("out.dcw"));
            AssertOneLineError(convert.Code, convert.Err, 1, path, kind);
        }
    }

    [Test]
    public void ConvertRefusesToReplaceAFifo()
    {
        if (!OperatingSystem.IsLinux()) Assert.Ignore("FIFOs");
        string fifo = MakeFifo("out.dcw");
        var r = CliBounded(fifo, "convert", LoadingTestData.GoldenModel("tiny"), "--chunk-size", "4", "-o", fifo);
        AssertOneLineError(r.Code, r.Err, 1, fifo, "FIFO", "pass another output path");
        Assert.That(RegularFile.NonRegularKind(fifo), Does.Contain("FIFO"), "the FIFO is still there");
    }

    [Test]
    public void ConvertWritesThroughASymlinkToItsTarget()
    {
        string target = _dir.File("real.dcw"), link = _dir.File("link.dcw"), direct = _dir.File("direct.dcw");
        File.WriteAllText(target, "old contents");
        File.CreateSymbolicLink(link, "real.dcw"); // relative: resolved against the link's folder
        string model = LoadingTestData.GoldenModel("tiny");
        Assert.That(Cli("convert", model, "--chunk-size", "4", "-o", link).Code, Is.EqualTo(0));
        Assert.That(Cli("convert", model, "--chunk-size", "4", "-o", direct).Code, Is.EqualTo(0));
        Assert.That(new FileInfo(link).LinkTarget, Is.EqualTo("real.dcw"), "the link is still a link");
        Assert.That(File.ReadAllBytes(target), Is.EqualTo(File.ReadAllBytes(direct)), "the target holds the converted model");
        Assert.That(Directory.GetFiles(_dir.Path).Select(Path.GetFileName), Is.EquivalentTo(new[] { "real.dcw", "link.dcw", "direct.dcw" }), "no temp file left");
    }

    [Test]
    public void ConvertOfADcwUsesItsOwnChunkSize()
    {
        string dcw = _dir.File("in.dcw"), again = _dir.File("again.dcw");
        Assert.That(Cli("convert", LoadingTestData.GoldenModel("tiny"), "--chunk-size", "4", "-o", dcw).Code, Is.EqualTo(0));
        var r = Cli("convert", dcw, "-o", again);
        Assert.That(r.Code, Is.EqualTo(0), r.Err);
        Assert.That(r.Err, Does.Not.Contain("--chunk-size"), "no chunk size was given, none is blamed or assumed");
        Assert.That(File.ReadAllBytes(again), Is.EqualTo(File.ReadAllBytes(dcw)));
        var wrong = Cli("convert", dcw, "--chunk-size", "8", "-o", again);
        AssertOneLineError(wrong.Code, wrong.Err, 1, "converted with chunk size 4", "requested chunk size 8");
    }

    public static IEnumerable<TestCaseData> FilesRunRejects()
    {
        yield return new TestCaseData("padding").SetName("InspectFailsOnNonZeroPadding");
        yield return new TestCaseData("nan").SetName("InspectFailsOnANaNWeight");
        yield return new TestCaseData("layers").SetName("InspectFailsOnAHugeLayerCount");
    }

    [TestCaseSource(nameof(FilesRunRejects))]
    public void InspectFailsOnEveryFileRunRejects(string damage)
    {
        string path = SmallDcwFile(tamper: bytes =>
        {
            using var ms = new MemoryStream(bytes, writable: false);
            var info = DcwFile.Inspect(ms, "x");
            var t = info.Tensors[2];
            switch (damage)
            {
                case "padding": bytes[t.Offset + t.ByteLength] = 0xAA; break;
                case "nan": BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan((int)t.Offset), float.NaN); break;
                default: BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(28), 1_000_000); break;
            }
            LoadingTestData.Resign(bytes);
        });
        string input = _dir.File("x.npy");
        Npy.Write(input, new float[2 * 6], [2, 6]);
        var run = Cli("run", "--model", path, "--input", input, "--output", _dir.File("y.npy"));
        var inspect = Cli("inspect", path);
        AssertOneLineError(run.Code, run.Err, 1);
        AssertOneLineError(inspect.Code, inspect.Err, 1);
        Assert.That(inspect.Err, Is.EqualTo(run.Err), "inspect reports the problem run reports");
    }

    [Test]
    public void InspectFailsOnEveryFlippedByte()
    {
        var good = LoadingTestData.SmallDcw();
        string path = _dir.File("flip.dcw");
        for (int pos = 0; pos < good.Length; pos += 3)
        {
            var bad = (byte[])good.Clone();
            bad[pos] ^= 0x10;
            File.WriteAllBytes(path, bad);
            var r = Cli("inspect", path);
            Assert.That(r.Code, Is.EqualTo(1), $"flip at {pos}: {r.Err}");
            Assert.That(r.Err.TrimEnd('\n').Split('\n'), Has.Length.EqualTo(1), $"flip at {pos}");
        }
    }

    [TestCase("32,50000,1,1", "64", "1", "attention QKV kernel", "smaller hidden_size")]
    [TestCase("32,600000000,1,1", "64", "1", "FFN width", "smaller hidden size")]
    [TestCase("32,32,1,1", "64", "2147483647", "input floats", "smaller --batch or --seq")]
    [TestCase("32,32,1,1", "2147483584", "1", "input floats", "smaller --batch or --seq")]
    [TestCase("32,32,1,1", "65536", "65536", "input floats", "smaller --batch or --seq")]
    [TestCase("32,32,1,1", "2147483644", "1", "Trim the input to 2147483584", "chunk size 64")]
    public void BenchSizesThatCannotWorkSayWhy(string random, string seq, string batch, string what, string fix)
    {
        var r = CliBounded(null, "bench", "--random-model", random, "--batch", batch, "--seq", seq, "--iterations", "1", "--warmup", "0");
        AssertOneLineError(r.Code, r.Err, 1, what, fix);
        Assert.That(r.Err, Does.Not.Contain("overflow").And.Not.Contain("Input has 0"));
    }

    [Test]
    public void SequenceOfOnePositionSuggestsOneLength()
    {
        var r = Cli("bench", "--random-model", "32,32,1,1", "--chunk-size", "4", "--batch", "1", "--seq", "1", "--iterations", "1", "--warmup", "0");
        AssertOneLineError(r.Code, r.Err, 1, "Pad the input to 4 positions");
        Assert.That(r.Err, Does.Not.Contain("4 or 4"));
    }

    [Test]
    public void DamagedDcwMagicIsNamedAsSuch()
    {
        string path = SmallDcwFile(tamper: b => b[1] ^= 0x01);
        var r = Cli("inspect", path);
        AssertOneLineError(r.Code, r.Err, 1, path, ".dcw file whose magic is damaged");
        Assert.That(r.Err, Does.Not.Contain("safetensors header length"));
    }
}
