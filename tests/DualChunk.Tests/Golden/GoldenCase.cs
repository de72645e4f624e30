using System.Text.Json;
using DualChunk.Core;

namespace DualChunk.Tests.Golden;

/// <summary>One directory of tests/golden: what Edifice v0.2.0 itself computed.</summary>
internal sealed class GoldenCase
{
    /// <summary>The golden directory copied next to the test assembly (tests/golden).</summary>
    public static string Root { get; } = Path.Combine(AppContext.BaseDirectory, "golden");

    /// <summary>
    /// Every case in tests/golden (a directory with a config.json), discovered so a new case is tested without being
    /// listed anywhere; sorted for stable test names. Empty if the directory is missing (a test checks it is not).
    /// </summary>
    public static string[] Names { get; } = System.IO.Directory.Exists(Root)
        ? [.. System.IO.Directory.GetDirectories(Root)
            .Where(d => File.Exists(Path.Combine(d, "config.json")))
            .Select(Path.GetFileName).OfType<string>().Order(StringComparer.Ordinal)]
        : [];

    private GoldenCase(string name)
    {
        Name = name;
        Directory = Path.Combine(Root, name);
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(Directory, "config.json")));
        var root = json.RootElement;
        ChunkSize = root.GetProperty("chunk_size").GetInt32();
        EmbedDim = root.GetProperty("embed_dim").GetInt32();
        HiddenSize = root.GetProperty("hidden_size").GetInt32();
        NumHeads = root.GetProperty("num_heads").GetInt32();
        NumLayers = root.GetProperty("num_layers").GetInt32();
        SeqLen = root.GetProperty("seq_len").GetInt32();
        Batch = root.GetProperty("batch").GetInt32();
        Io = SafetensorsReader.Read(Path.Combine(Directory, "io.safetensors"));
        EdificeF32VsF64 = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var mode in new[] { "last", "all", "mean" })
            EdificeF32VsF64[mode] = root.GetProperty("f32_vs_f64").GetProperty(mode).GetProperty("max_abs_diff_over_max_ref").GetDouble();
    }

    public string Name { get; }
    public string Directory { get; }
    public int ChunkSize { get; }
    public int EmbedDim { get; }
    public int HiddenSize { get; }
    public int NumHeads { get; }
    public int NumLayers { get; }
    public int SeqLen { get; }
    public int Batch { get; }
    public Dictionary<string, CheckpointTensor> Io { get; }
    public Dictionary<string, double> EdificeF32VsF64 { get; }

    public string ModelPath => Path.Combine(Directory, "model.safetensors");
    public float[] Input => Io["input"].Data.ToArray();

    /// <summary>Edifice's float64 output: the reference (stored as F64 and kept as doubles, see <see cref="ReadF64"/>).</summary>
    public double[] ReferenceF64(string mode) => ReadF64(Path.Combine(Directory, "io.safetensors"), $"output_{mode}_f64");

    public static GoldenCase Load(string name) => new(name);

    /// <summary>
    /// The bound on max|ours − Edifice f64| / max|Edifice f64| for one output mode: 5 × Edifice's own float32 error for
    /// this case and mode (config.json's f32_vs_f64 max_abs_diff_over_max_ref, 0.6–1.9e-7), but at least 1e-6. The
    /// engine measures 0.8–4.3e-7 on every path, so a 3× accuracy regression fails.
    /// </summary>
    public double RelativeBound(string mode) => Math.Max(1e-6, 5 * EdificeF32VsF64[mode]);

    /// <summary>Asserts <paramref name="actual"/> has <paramref name="shape"/> and every element is within <see cref="RelativeBound"/>.</summary>
    public void AssertMatches(float[] actual, int[] actualShape, string mode, string what)
    {
        int[] shape = mode == "all" ? [Batch, SeqLen, HiddenSize] : [Batch, HiddenSize];
        Assert.That(actualShape, Is.EqualTo(shape), $"{what}: shape");
        var reference = ReferenceF64(mode);
        Assert.That(actual, Has.Length.EqualTo(reference.Length), $"{what}: length");
        double maxRef = reference.Max(Math.Abs), bound = RelativeBound(mode) * maxRef;
        Assert.That(maxRef, Is.GreaterThan(0.1), "the reference is not trivial");
        for (int i = 0; i < reference.Length; i++)
        {
            if (!(Math.Abs(actual[i] - reference[i]) <= bound))
                Assert.Fail($"{what}: element {i} is {actual[i]:R}, Edifice f64 {reference[i]:R}: |error| > {RelativeBound(mode):E1} × max|ref| = {bound:E2}");
        }
    }

    public static OutputMode ModeFromKey(string key) => key switch
    {
        "all" => OutputMode.All,
        "mean" => OutputMode.MeanPool,
        _ => OutputMode.LastTimestep,
    };

    public static string ModeKey(OutputMode mode) => mode switch
    {
        OutputMode.All => "all",
        OutputMode.MeanPool => "mean",
        _ => "last",
    };

    /// <summary>
    /// Reads an F64 tensor at full precision. The engine's reader converts to float32 at load,
    /// which would round the reference; this small reader keeps the doubles.
    /// </summary>
    internal static double[] ReadF64(string path, string key)
    {
        var bytes = File.ReadAllBytes(path);
        long headerLength = BitConverter.ToInt64(bytes, 0);
        using var header = JsonDocument.Parse(bytes.AsMemory(8, (int)headerLength));
        var entry = header.RootElement.GetProperty(key);
        Assert.That(entry.GetProperty("dtype").GetString(), Is.EqualTo("F64"), $"{key} dtype");
        var offsets = entry.GetProperty("data_offsets");
        int begin = (int)(8 + headerLength + offsets[0].GetInt64());
        int end = (int)(8 + headerLength + offsets[1].GetInt64());
        var result = new double[(end - begin) / 8];
        Buffer.BlockCopy(bytes, begin, result, 0, end - begin);
        return result;
    }
}
