using DualChunk.Core;

namespace DualChunk.Bench.Peers;

/// <summary>
/// One speed-comparison config: batch, positions, chunk size, and the architecture (model dims are Edifice's defaults;
/// DecoderOnly's FFN is SwiGLU with F = round(2.667·H) up to a multiple of 8).
/// </summary>
public sealed record PeerConfig(string Name, int Batch, int SeqLen, int ChunkSize, ModelArchitecture Architecture = ModelArchitecture.DualChunk)
{
    public const int EmbedDim = 287, Hidden = 256, Heads = 8, Layers = 4, Ffn = 1024;

    public ModelConfig Model => new(EmbedDim, Hidden, Heads, Layers, ChunkSize, IsDecoder ? ModelConfig.SwiGluInnerSize(Hidden) : Ffn) { Architecture = Architecture };

    public bool IsDecoder => Architecture == ModelArchitecture.DecoderOnly;

    /// <summary>The name of a child run's <c>--config</c>: the config's letter, with "-decoder" for DecoderOnly.</summary>
    public string Key => IsDecoder ? Name + "-decoder" : Name;

    public override string ToString() => $"{Name}: B{Batch} N{SeqLen} C{ChunkSize}{(IsDecoder ? " DecoderOnly" : "")}";

    /// <summary>Configs a–d of the speed issue, plus e (DualChunk.build).</summary>
    public static IReadOnlyList<PeerConfig> All { get; } =
    [
        new("a", 1, 64, 64),
        new("b", 1, 128, 64),
        new("c", 16, 64, 64),
        new("d", 1, 4096, 64),
        new("e", 1, 16384, 128),
    ];

    /// <summary>The config of <see cref="Key"/> <paramref name="key"/> ("a", "a-decoder", ...).</summary>
    public static PeerConfig Find(string key)
    {
        string name = key.EndsWith("-decoder", StringComparison.Ordinal) ? key[..^"-decoder".Length] : key;
        var config = All.FirstOrDefault(c => c.Name == name)
            ?? throw new ArgumentException($"Unknown --config '{key}': one of {string.Join(", ", All.Select(c => c.Name))}, optionally with -decoder.");
        return name == key ? config : config with { Architecture = ModelArchitecture.DecoderOnly };
    }
}

/// <summary>
/// One engine running the model on one config: built from the shared weights, with its input bound
/// and its output buffer allocated up front, so <see cref="Run"/> is the steady-state call.
/// </summary>
public interface IPeerRunner : IDisposable
{
    /// <summary>One forward pass: input → <see cref="Output"/>.</summary>
    void Run();

    /// <summary>The last-timestep output [B, H] of the last <see cref="Run"/>.</summary>
    ReadOnlySpan<float> Output { get; }
}

/// <summary>A peer engine: a name, whether it can run here (and why not), and a factory.</summary>
public interface IPeer
{
    string Name { get; }

    /// <summary>The name on the command line of a child run (<c>--engine KEY</c>).</summary>
    string Key { get; }

    int Threads { get; }

    /// <summary>Null when the peer can run; otherwise the reason it cannot (shown in the table).</summary>
    string? Unavailable { get; }

    IPeerRunner Create(PeerConfig config, IReadOnlyDictionary<string, CheckpointTensor> weights, float[] input);
}
