using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using DualChunk.Core;
using DualChunk.Tests.Loading;
using static DualChunk.Tests.Loading.NxTestFiles;

namespace DualChunk.Tests.Cli;

/// <summary>
/// Issue 20's "must hold" for hostile .nx files, at the command line: each file below, made from Edifice's own golden
/// files, is given to the built CLI as a process (<c>run</c> and <c>inspect</c>), which must exit 1 with one line on
/// stderr naming the file and the problem, with a peak resident set of at most 600 MB (measured by
/// <c>/usr/bin/time</c>, i.e. the kernel's maxrss of the child). Valid files written by a newer OTP load and give the
/// original's output bit for bit. The in-process twins of these checks (message details, 50 MB/1 s budgets) are
/// NxCheckpointTests and ResourceBudgetTests; this test is about the real binary: its exit code, its one line, its memory.
/// </summary>
[TestFixture]
public sealed class CliHostileNxTests
{
    private const long PeakRssBudgetKb = 600 * 1024;
    private const string Time = "/usr/bin/time";

    private TempDir _dir = null!;

    [OneTimeSetUp]
    public void OneTimeSetUp() => _dir = new TempDir();

    [OneTimeTearDown]
    public void OneTimeTearDown() => _dir.Dispose();

    private static string Golden(string c, string file) => Path.Combine(TestContext.CurrentContext.TestDirectory, "golden", "edifice-l", c, file);

    /// <summary>A hostile file and a fragment its one error line must hold (besides the file's path).</summary>
    private sealed record Hostile(Func<byte[]> Make, string Names);

    private static readonly Dictionary<string, Hostile> HostileFiles = new(StringComparer.Ordinal)
    {
        // Truncations of an uncompressed checkpoint with the spec (d1 model.nx), at every structural boundary.
        ["flag-byte-only"] = new(() => File.ReadAllBytes(Golden("d1", "model.nx"))[..1], "metadata size"),
        ["cut-in-metadata-size"] = new(() => File.ReadAllBytes(Golden("d1", "model.nx"))[..3], "metadata size"),
        ["cut-in-metadata-term"] = new(() => Cut("d1", "model.nx", (f, m) => 5 + m / 2), "metadata"),
        ["cut-after-metadata"] = new(() => Cut("d1", "model.nx", (f, m) => 5 + m), "inside its 12-byte header"),
        ["cut-in-nx-header"] = new(() => Cut("d1", "model.nx", (f, m) => 5 + m + 7), "inside its 12-byte header"),
        ["cut-in-first-tensor-header"] = new(() => CutInTensorHeader("d1", "model.nx", first: true), "term"),
        ["cut-in-last-tensor-header"] = new(() => CutInTensorHeader("d1", "model.nx", first: false), "term"),
        ["cut-in-data"] = new(() => Cut("d1", "model.nx", (f, m) => f.Length - Split(f).Buffers.Length / 2), "data"),
        ["cut-last-byte"] = new(() => Cut("d1", "model.nx", (f, m) => f.Length - 1), "truncated"),
        // The compressed variant (d1 model_c6.nx): in the zlib header, in the stream, in the adler32 trailer.
        ["zlib-cut-in-header"] = new(() => Cut("d1", "model_c6.nx", (f, m) => 5 + m + 1), "zlib"),
        ["zlib-cut-in-stream"] = new(() => Cut("d1", "model_c6.nx", (f, m) => 5 + m + (f.Length - 5 - m) / 2), "zlib"),
        ["zlib-cut-in-adler32"] = new(() => Cut("d1", "model_c6.nx", (f, m) => f.Length - 2), "zlib"),
        ["zlib-wrong-adler32"] = new(() => Changed("d1", "model_c6.nx", f => f[^1] ^= 0x5A), "zlib"),
        // A bare Nx.serialize payload of the decoder (x1 model_serialize.nx).
        ["serialize-cut-in-header"] = new(() => File.ReadAllBytes(Golden("x1", "model_serialize.nx"))[..6], "inside its 12-byte header"),
        ["serialize-cut-in-term"] = new(() => Cut("x1", "model_serialize.nx", (f, m) => 12 + (int)BinaryPrimitives.ReadUInt64BigEndian(f.AsSpan(4)) / 2), "term"),
        ["serialize-cut-in-data"] = new(() => Cut("x1", "model_serialize.nx", (f, m) => f.Length - 5), "data"),
        // Sizes that lie.
        ["metadata-size-4GB"] = new(() => Changed("d1", "model.nx", f => BinaryPrimitives.WriteUInt32BigEndian(f.AsSpan(1), uint.MaxValue)), "metadata size"),
        ["term-size-2^40"] = new(() => Changed("d1", "model_nospec.nx", f => BinaryPrimitives.WriteUInt64BigEndian(f.AsSpan(5 + 4), 1UL << 40)), "term"),
        ["tensor-offset-2^40"] = new(() => WithFirstTensorItem("d1", "model.nx", 5, 1L << 40), "ends past them"),
        ["tensor-size-doubled"] = new(() => WithFirstTensorItem("d1", "model.nx", 6, -2), "does not match its type"),
        ["list-count-2^31"] = new(() => SerializePayload([131, 108, 0x80, 0, 0, 0, 106]), "term"),
        // zlib bombs: a 200-byte file whose tensor claims 4 GB; a payload followed by 256 MB of zeros (~0.3 MB packed).
        ["zlib-bomb-4GB-tensor"] = new(NxCheckpointTests.HugeTensorCompressed, "zlib bomb"),
        ["zlib-bomb-256MB-of-zeros"] = new(ZerosBomb, "inflates to more than"),
        // A million nested lists, in the metadata and in the Nx term.
        ["nested-lists-in-metadata"] = new(() => CheckpointWithMetadata(NestedLists(1_000_000)), "nest deeper"),
        ["nested-lists-in-term"] = new(() => SerializePayload(NestedLists(1_000_000)), "nest deeper"),
        // Specs that contradict the tensors, of both architectures.
        ["spec-hidden-size"] = new(() => WithSpecOption("d1", "hidden_size", 64), "hidden_size = 64"),
        ["spec-num-heads"] = new(() => WithSpecOption("d1", "num_heads", 8), "num_heads = 8"),
        ["spec-num-layers"] = new(() => WithSpecOption("d1", "num_layers", 3), "num_layers = 3"),
        ["spec-chunk-size-0"] = new(() => WithSpecOption("d1", "chunk_size", 0), "chunk_size is 0"),
        ["spec-chunk-size-huge"] = new(() => WithSpecOption("d1", "chunk_size", int.MaxValue), "chunk_size is 2147483647"),
        ["decoder-spec-hidden-size"] = new(() => WithSpecOption("x1", "hidden_size", 40), "hidden_size = 40"),
        ["decoder-spec-num-layers"] = new(() => WithSpecOption("x1", "num_layers", 1), "num_layers = 1"),
    };

    public static IEnumerable<TestCaseData> HostileCases() => HostileFiles.Keys.Select(k => new TestCaseData(k).SetName("CliRejectsHostileNx_" + k));

    [TestCaseSource(nameof(HostileCases))]
    public void HostileNxIsExitOneWithOneLineWithinTheMemoryBudget(string kind)
    {
        var hostile = HostileFiles[kind];
        string path = _dir.File(kind + ".nx");
        File.WriteAllBytes(path, hostile.Make());
        string input = Input("d1"), output = _dir.File(kind + ".out.npy");
        // Both commands at once: they are independent processes, each measured on its own.
        var run = Task.Run(() => Cli(kind + ".run", "run", "--model", path, "--input", input, "--output", output));
        var inspect = Task.Run(() => Cli(kind + ".inspect", "inspect", path));
        foreach (var (command, r) in new[] { ("run", run.Result), ("inspect", inspect.Result) })
        {
            string what = $"dualchunk {command} on {kind}: exit {r.Code}, stderr: {r.Err}";
            Assert.That(r.Code, Is.EqualTo(1), what);
            Assert.That(r.Err.TrimEnd('\n').Split('\n'), Has.Length.EqualTo(1), what);
            Assert.That(r.Err, Does.StartWith("dualchunk: error: ").And.Contain(path).And.Contain(hostile.Names), what);
            if (r.PeakRssKb is long kb) Assert.That(kb, Is.LessThanOrEqualTo(PeakRssBudgetKb), $"{what}; peak RSS {kb} KB");
            TestContext.Out.WriteLine($"{command}: peak RSS {r.PeakRssKb} KB; {r.Err.TrimEnd()}");
        }
        Assert.That(File.Exists(output), Is.False, "no output written");
        if (!File.Exists(Time)) Assert.Ignore($"exit codes and messages checked; peak RSS not measured: {Time} is missing (apt-get install time)");
    }

    /// <summary>Edifice's files with every atom re-encoded as OTP 26+ writes them (118, 119): they load, bit for bit.</summary>
    [TestCase("d1", "model.nx", (byte)119)]
    [TestCase("x1", "model_c6.nx", (byte)118)]
    [TestCase("x1", "model_serialize.nx", (byte)119)]
    public void FilesOfANewerOtpRunLikeTheOriginals(string c, string variant, byte atomTag)
    {
        string original = Golden(c, variant), rewritten = _dir.File($"{c}-{atomTag}-{variant}");
        var parts = Split(File.ReadAllBytes(original));
        File.WriteAllBytes(rewritten, Join(parts, atomTag));
        Assert.That(File.ReadAllBytes(rewritten), Is.Not.EqualTo(File.ReadAllBytes(original)), "the atoms were re-encoded");
        // model_serialize.nx carries no spec: its chunk size is given.
        string[] chunk = parts.Metadata is null ? ["--chunk-size", "4"] : [];
        string input = Input(c), expected = _dir.File($"{c}-{atomTag}-expected.npy"), actual = _dir.File($"{c}-{atomTag}-actual.npy");
        var reference = Task.Run(() => Cli("reference", ["run", "--model", original, .. chunk, "--input", input, "--output", expected]));
        var run = Cli("newer-otp", ["run", "--model", rewritten, .. chunk, "--input", input, "--output", actual]);
        var inspect = Cli("newer-otp-inspect", ["inspect", rewritten, .. chunk]);
        Assert.That(reference.Result.Code, Is.EqualTo(0), reference.Result.Err);
        Assert.That(run.Code, Is.EqualTo(0), run.Err);
        Assert.That(inspect.Code, Is.EqualTo(0), inspect.Err);
        Assert.That(File.ReadAllBytes(actual), Is.EqualTo(File.ReadAllBytes(expected)), "same output as Edifice's own file");
        if (run.PeakRssKb is long kb) Assert.That(kb, Is.LessThanOrEqualTo(PeakRssBudgetKb), $"peak RSS {kb} KB");
    }

    private sealed record CliResult(int Code, string Err, long? PeakRssKb);

    /// <summary>
    /// The built CLI (dualchunk.dll) as a process under <c>/usr/bin/time -f %M</c> when present, whose figure is the
    /// child's peak resident set from wait4 (no sampling race). A hang fails after CliTests.RunProcess's bound.
    /// </summary>
    private CliResult Cli(string label, params string[] args)
    {
        string dll = Path.Combine(TestContext.CurrentContext.TestDirectory, "dualchunk.dll");
        string rss = _dir.File(label + ".rss");
        var psi = File.Exists(Time)
            ? new ProcessStartInfo(Time, ["-f", "%M", "-o", rss, "dotnet", dll, .. args])
            : new ProcessStartInfo("dotnet", [dll, .. args]);
        psi.RedirectStandardError = true;
        psi.RedirectStandardOutput = true;
        var (code, _, err) = CliTests.RunProcess(psi);
        long? peak = null;
        if (File.Exists(Time))
        {
            // time writes "Command exited with non-zero status N" before the figure when the child fails.
            string last = File.ReadAllLines(rss).Last(l => l.Length > 0);
            peak = long.Parse(last, CultureInfo.InvariantCulture);
        }
        return new CliResult(code, err, peak);
    }

    private string Input(string c) => EdificeCliCase.Load(c, _dir.Path).Input;

    private static int MetadataSize(byte[] file) => (int)BinaryPrimitives.ReadUInt32BigEndian(file.AsSpan(1));

    /// <summary>The golden file cut at <paramref name="at"/>(file, metadata size).</summary>
    private static byte[] Cut(string c, string variant, Func<byte[], int, int> at)
    {
        var file = File.ReadAllBytes(Golden(c, variant));
        int n = at(file, variant == "model_serialize.nx" ? 0 : MetadataSize(file));
        Assert.That(n, Is.InRange(1, file.Length - 1), "a cut inside the file");
        return file[..n];
    }

    private static byte[] Changed(string c, string variant, Action<byte[]> change)
    {
        var file = File.ReadAllBytes(Golden(c, variant));
        change(file);
        return file;
    }

    /// <summary>The file cut 3 bytes into the first or the last tensor tuple <c>{:t, shape, type, ...}</c> of its Nx term.</summary>
    private static byte[] CutInTensorHeader(string c, string variant, bool first)
    {
        var file = File.ReadAllBytes(Golden(c, variant));
        var starts = new List<int>();
        // SMALL_TUPLE_EXT of 7 whose first item is the atom t, in any of OTP's atom encodings.
        for (int i = 5 + MetadataSize(file); i + 6 < file.Length; i++)
        {
            if (file[i] != 104 || file[i + 1] != 7) continue;
            if ((file[i + 2] == 100 && file[i + 3] == 0 && file[i + 4] == 1 && file[i + 5] == 't')
                || (file[i + 2] is 115 or 119 && file[i + 3] == 1 && file[i + 4] == 't'))
                starts.Add(i);
        }
        Assert.That(starts, Has.Count.GreaterThanOrEqualTo(2), "tensor headers found in the term");
        return file[..((first ? starts[0] : starts[^1]) + 3)];
    }

    /// <summary>The golden d1 checkpoint with item <paramref name="index"/> of its first tensor tuple set (-2: doubled).</summary>
    private static byte[] WithFirstTensorItem(string c, string variant, int index, long value)
    {
        var parts = Split(File.ReadAllBytes(Golden(c, variant)));
        bool done = false;
        var term = Rewrite(parts.Term, t =>
        {
            if (done || t.Kind != EtfKind.Tuple || t.Items.Count != 7 || !t.Items[0].IsAtom("t")) return null;
            done = true;
            var items = t.Items.ToArray();
            items[index] = Int(value == -2 ? 2 * items[index].Integer : value);
            return EtfTerm.MakeCompound(EtfKind.Tuple, items);
        });
        Assert.That(done, "a tensor was changed");
        return Join(parts with { Term = term });
    }

    private static byte[] WithSpecOption(string c, string key, long value)
    {
        var parts = Split(File.ReadAllBytes(Golden(c, "model.nx")));
        return Join(parts with { Metadata = WithOption(parts.Metadata!, key, Int(value)) });
    }

    /// <summary>d1's compressed checkpoint whose zlib stream carries 256 MB of zeros after the real payload.</summary>
    private static byte[] ZerosBomb()
    {
        var file = File.ReadAllBytes(Golden("d1", "model_c6.nx"));
        int meta = MetadataSize(file);
        var body = Inflate(file[(5 + meta)..]);
        var packed = new MemoryStream();
        packed.Write(file, 0, 5 + meta);
        using (var z = new System.IO.Compression.ZLibStream(packed, System.IO.Compression.CompressionLevel.Fastest, leaveOpen: true))
        {
            z.Write(body);
            var zeros = new byte[1 << 20];
            for (int i = 0; i < 256; i++) z.Write(zeros);
        }
        return packed.ToArray();
    }
}
