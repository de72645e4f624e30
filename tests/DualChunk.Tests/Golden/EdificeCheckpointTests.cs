using System.Text.Json;
using DualChunk.Cli;
using DualChunk.Core;

namespace DualChunk.Tests.Golden;

/// <summary>
/// Every file Edifice writes (tests/golden/edifice-l: <c>Edifice.Checkpoint.save</c> .nx with its spec, compressed,
/// without a spec, <c>Nx.serialize</c> of the model state and of its data map, and the safetensors export), for both
/// DualChunk.build (d1, d2) and DecoderOnly with dual chunk attention (x1, x2), against Edifice's float64 outputs in
/// every mode, through the library and through <c>dualchunk run</c>. Files with a spec are loaded with no chunk size.
/// Bound as for tests/golden: max(1e-6, 5 × Edifice's own float32 error) × max|Edifice f64|.
/// </summary>
[TestFixture]
public sealed class EdificeCheckpointTests
{
    public static readonly string[] Cases = ["d1", "d2", "x1", "x2"];

    public static readonly string[] Variants = ["model.nx", "model_c6.nx", "model_nospec.nx", "model_serialize.nx", "model_serialize_data.nx", "model.safetensors"];

    private static readonly string[] Modes = ["last", "all", "mean"];

    private static readonly Dictionary<string, EdificeCase> Loaded = [];

    private string _dir = "";

    [SetUp]
    public void SetUp()
    {
        _dir = Path.Combine(Path.GetTempPath(), "dualchunk-edifice-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
    }

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, recursive: true);

    public static IEnumerable<TestCaseData> Files()
    {
        foreach (var c in Cases)
            foreach (var v in Variants)
                yield return new TestCaseData(c, v).SetName($"{{m}}({c}/{v})");
    }

    public static IEnumerable<TestCaseData> Runs()
    {
        foreach (var c in Cases)
            foreach (var v in Variants)
                foreach (var m in Modes)
                    yield return new TestCaseData(c, v, m).SetName($"{{m}}({c}/{v}, {m})");
    }

    [TestCaseSource(nameof(Files))]
    public void TensorsAndSpecAreWhatEdificeWrote(string name, string variant)
    {
        var c = Case(name);
        string path = Path.Combine(c.Directory, variant);
        using var fs = File.OpenRead(path);
        var reader = CheckpointReader.Open(fs, path);
        bool hasSpec = variant is "model.nx" or "model_c6.nx";
        Assert.That(reader.Format, Is.EqualTo(variant.EndsWith(".nx", StringComparison.Ordinal) ? WeightsLoader.NxFormat : WeightsLoader.SafetensorsFormat));
        Assert.That(reader.StoresChunkSize, Is.EqualTo(hasSpec));
        Assert.That(reader.Description, variant == "model_c6.nx" ? Does.Contain("zlib-compressed") : Does.Not.Contain("zlib"));
        if (hasSpec)
        {
            var spec = ((NxCheckpointReader)reader).Spec!;
            Assert.That(spec.Arch, Is.EqualTo(c.Arch));
            Assert.That(spec.ChunkSize, Is.EqualTo(c.ChunkSize));
            Assert.That(spec.Architecture, Is.EqualTo(c.Architecture));
            Assert.That(spec.CreatedAt, Is.EqualTo("2026-01-01T00:00:00Z"));
            Assert.That(string.Join("\n", reader.Header), Does.Contain($"chunk_size: {c.ChunkSize}").And.Contain("arch = :" + c.Arch));
        }
        // Names, shapes and every bit of every tensor equal Edifice's safetensors export.
        var expected = SafetensorsReader.Read(Path.Combine(c.Directory, "model.safetensors"));
        Assert.That(reader.Entries.Select(e => e.Name), Is.EquivalentTo(expected.Keys));
        if (reader is NxCheckpointReader)
        {
            var tensors = NxCheckpoint.Open(fs, path).ReadTensors();
            foreach (var (key, t) in expected)
            {
                Assert.That(tensors[key].Shape, Is.EqualTo(t.Shape), key);
                Assert.That(tensors[key].Data.ToArray(), Is.EqualTo(t.Data.ToArray()), key);
            }
        }
        Assert.That(c.Config.TensorCount, Is.EqualTo(expected.Count), "config.json's parameter list");
    }

    [TestCaseSource(nameof(Runs))]
    public void LibraryMatchesEdificeFloat64(string name, string variant, string mode)
    {
        var c = Case(name);
        string path = Path.Combine(c.Directory, variant);
        using var model = DualChunkModel.Load(path, c.ChunkSizeToPass(variant));
        Assert.That(model.Config, Is.EqualTo(c.Config));
        var output = model.Run(c.Input, c.Batch, c.SeqLen, GoldenCase.ModeFromKey(mode));
        c.AssertMatches(output, mode, $"{name}/{variant} {mode}");
    }

    [TestCaseSource(nameof(Runs))]
    public void CliRunMatchesEdificeFloat64(string name, string variant, string mode)
    {
        var c = Case(name);
        string input = Path.Combine(_dir, "x.npy"), output = Path.Combine(_dir, "y.npy");
        Npy.Write(input, c.Input, [c.Batch, c.SeqLen, c.EmbedDim]);
        List<string> args = ["run", "--model", Path.Combine(c.Directory, variant), "--input", input, "--output", output, "--output-mode", mode];
        if (c.ChunkSizeToPass(variant) is int chunk) args.AddRange(["--chunk-size", chunk.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = CommandLine.Run([.. args], stdout, stderr);
        Assert.That(code, Is.EqualTo(0), stderr.ToString());
        Assert.That(stderr.ToString(), Is.Empty, "no notice: the chunk size is the file's or the one given");
        var (result, shape) = Npy.Read(output);
        Assert.That(shape, Is.EqualTo(mode == "all" ? new[] { c.Batch, c.SeqLen, c.HiddenSize } : [c.Batch, c.HiddenSize]));
        c.AssertMatches(result, mode, $"dualchunk run {name}/{variant} {mode}");
    }

    [TestCase("d1")]
    [TestCase("d2")]
    [TestCase("x1")]
    [TestCase("x2")]
    public void ConvertCarriesTheSpecsChunkSizeAndArchitectureIntoDcw(string name)
    {
        var c = Case(name);
        string dcw = Path.Combine(_dir, "m.dcw");
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        Assert.That(CommandLine.Run(["convert", Path.Combine(c.Directory, "model_c6.nx"), "-o", dcw], stdout, stderr), Is.EqualTo(0), stderr.ToString());
        Assert.That(stderr.ToString(), Is.Empty);
        var info = DcwFile.Inspect(dcw);
        Assert.That(info.Config, Is.EqualTo(c.Config));
        Assert.That(info.Config.Architecture, Is.EqualTo(c.Architecture));
        using var model = DualChunkModel.Load(dcw);
        c.AssertMatches(model.Run(c.Input, c.Batch, c.SeqLen, OutputMode.All), "all", $"{name} via convert");
    }

    [Test]
    public void InspectShowsFormatCompressionAndSpec()
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var c = Case("d2");
        Assert.That(CommandLine.Run(["inspect", Path.Combine(c.Directory, "model_c6.nx")], stdout, stderr), Is.EqualTo(0), stderr.ToString());
        Assert.That(stdout.ToString(), Does.Contain("format:   nx (Edifice.Checkpoint, zlib-compressed, with spec)")
            .And.Contain("spec:     arch = :dual_chunk_attention")
            .And.Contain("chunk_size: 8")
            .And.Contain("C=8").And.Contain("(chunk size stored in the file)")
            .And.Contain("dual_chunk_block_2_ffn_down.kernel"));
        stdout = new StringWriter();
        Assert.That(CommandLine.Run(["inspect", Path.Combine(c.Directory, "model_serialize.nx"), "--chunk-size", "8"], stdout, stderr), Is.EqualTo(0), stderr.ToString());
        Assert.That(stdout.ToString(), Does.Contain("bare Nx.serialize payload").And.Contain("Axon.ModelState").And.Contain("C=8"));
    }

    [Test]
    public void AChunkSizeContradictingTheSpecIsAnErrorNamingBoth()
    {
        var c = Case("d1");
        string path = Path.Combine(c.Directory, "model.nx");
        var ex = Assert.Throws<ArgumentException>(() => DualChunkModel.Load(path, new DualChunkModelOptions { ChunkSize = 8 }));
        Assert.That(ex!.Message, Does.Contain("chunk size 4").And.Contain("requested chunk size 8").And.Contain(path));
        var stderr = new StringWriter();
        Assert.That(CommandLine.Run(["run", "--model", path, "--chunk-size", "8", "--input", "x.npy", "--output", "y.npy"], new StringWriter(), stderr), Is.EqualTo(1));
        Assert.That(stderr.ToString(), Does.Contain("chunk size 4").And.Contain("requested chunk size 8"));
        Assert.That(stderr.ToString().TrimEnd('\n').Split('\n'), Has.Length.EqualTo(1));
        // The same chunk size as the spec's is accepted.
        using var model = DualChunkModel.Load(path, 4);
        Assert.That(model.Config.ChunkSize, Is.EqualTo(4));
    }

    private static EdificeCase Case(string name)
    {
        lock (Loaded)
        {
            if (!Loaded.TryGetValue(name, out var c)) Loaded[name] = c = new EdificeCase(name);
            return c;
        }
    }
}

/// <summary>One case of tests/golden/edifice-l (its config.json, input and Edifice's float64 outputs).</summary>
internal sealed class EdificeCase
{
    public static string Root { get; } = Path.Combine(AppContext.BaseDirectory, "golden", "edifice-l");

    public EdificeCase(string name)
    {
        Directory = Path.Combine(Root, name);
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(Directory, "config.json")));
        var root = json.RootElement;
        var opts = root.GetProperty("build_opts");
        Arch = root.GetProperty("arch").GetString()!;
        Architecture = Arch == "decoder_only" ? ModelArchitecture.DecoderOnly : ModelArchitecture.DualChunk;
        ChunkSize = opts.GetProperty("chunk_size").GetInt32();
        EmbedDim = opts.GetProperty("embed_dim").GetInt32();
        HiddenSize = opts.GetProperty("hidden_size").GetInt32();
        Batch = root.GetProperty("batch").GetInt32();
        SeqLen = root.GetProperty("seq_len").GetInt32();
        var ffn = root.GetProperty("params").EnumerateArray()
            .First(p => p.GetProperty("name").GetString()!.EndsWith("_ffn_down.kernel", StringComparison.Ordinal))
            .GetProperty("shape")[0].GetInt32();
        Config = new ModelConfig(EmbedDim, HiddenSize, opts.GetProperty("num_heads").GetInt32(), opts.GetProperty("num_layers").GetInt32(), ChunkSize, ffn)
        {
            Architecture = Architecture,
        };
        Input = SafetensorsReader.Read(Path.Combine(Directory, "io.safetensors"))["input"].Data.ToArray();
        foreach (var mode in new[] { "last", "all", "mean" })
        {
            RelativeError[mode] = root.GetProperty("outputs").GetProperty(mode).GetProperty("rel_err").GetDouble();
            Reference[mode] = GoldenCase.ReadF64(Path.Combine(Directory, "io.safetensors"), $"output_{mode}_f64");
        }
    }

    public string Directory { get; }
    public string Arch { get; }
    public ModelArchitecture Architecture { get; }
    public ModelConfig Config { get; }
    public int ChunkSize { get; }
    public int EmbedDim { get; }
    public int HiddenSize { get; }
    public int Batch { get; }
    public int SeqLen { get; }
    public float[] Input { get; }
    public Dictionary<string, double> RelativeError { get; } = [];
    public Dictionary<string, double[]> Reference { get; } = [];

    /// <summary>No chunk size for a file with a spec (it is the file's); the case's for any other.</summary>
    public int? ChunkSizeToPass(string variant) => variant is "model.nx" or "model_c6.nx" ? null : ChunkSize;

    public void AssertMatches(float[] actual, string mode, string what)
    {
        var reference = Reference[mode];
        Assert.That(actual, Has.Length.EqualTo(reference.Length), $"{what}: length");
        double maxRef = reference.Max(Math.Abs), bound = Math.Max(1e-6, 5 * RelativeError[mode]) * maxRef;
        Assert.That(maxRef, Is.GreaterThan(0.1), "the reference is not trivial");
        double worst = 0;
        for (int i = 0; i < reference.Length; i++)
        {
            double err = Math.Abs(actual[i] - reference[i]);
            if (!(err <= bound))
                Assert.Fail($"{what}: element {i} is {actual[i]:R}, Edifice f64 {reference[i]:R}: |error| {err:E2} > bound {bound:E2}");
            worst = Math.Max(worst, err);
        }
        TestContext.Out.WriteLine($"{what}: max|ours-f64|/max|f64| = {worst / maxRef:E2} (bound {bound / maxRef:E2})");
    }
}
