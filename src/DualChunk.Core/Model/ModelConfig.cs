using System.Globalization;

namespace DualChunk.Core;

/// <summary>
/// The dimensions of an Edifice DualChunk model. Letters as in docs/model.md: E embed, H hidden, NH heads,
/// D = H / NH head width, L layers, C chunk size, F = FFN inner width.
/// </summary>
public sealed record ModelConfig
{
    /// <summary>Creates and validates a configuration.</summary>
    public ModelConfig(int embedDim, int hiddenSize, int numHeads, int numLayers, int chunkSize, int ffnSize)
    {
        Require(embedDim > 0, $"embed_dim must be positive, got {embedDim}.");
        Require(hiddenSize > 0, $"hidden_size must be positive, got {hiddenSize}.");
        Require(numHeads > 0 && hiddenSize % numHeads == 0,
            $"num_heads must be positive and divide hidden_size {hiddenSize}, got {numHeads}.");
        Require(numLayers > 0, $"num_layers must be positive, got {numLayers}.");
        Require(chunkSize > 0, $"chunk size must be positive, got {chunkSize}. Pass the chunk size the model was built with (Edifice's default is 64).");
        Require(ffnSize > 0, $"ffn size must be positive, got {ffnSize}.");
        EmbedDim = embedDim;
        HiddenSize = hiddenSize;
        NumHeads = numHeads;
        NumLayers = numLayers;
        ChunkSize = chunkSize;
        FfnSize = ffnSize;
    }

    /// <summary>E: width of each input frame.</summary>
    public int EmbedDim { get; }

    /// <summary>H: width of the residual stream and the output.</summary>
    public int HiddenSize { get; }

    /// <summary>NH: attention heads.</summary>
    public int NumHeads { get; }

    /// <summary>L: transformer blocks.</summary>
    public int NumLayers { get; }

    /// <summary>C: positions per chunk. Not stored in Edifice checkpoints; given by the caller.</summary>
    public int ChunkSize { get; }

    /// <summary>F: inner width of the FFN (4·H in Edifice).</summary>
    public int FfnSize { get; }

    /// <summary>D = H / NH.</summary>
    public int HeadDim => HiddenSize / NumHeads;

    /// <summary>Edifice adds the input projection only when E != H.</summary>
    public bool HasInputProjection => EmbedDim != HiddenSize;

    /// <summary>Throws unless a sequence of <paramref name="seqLen"/> positions can be chunked.</summary>
    public void ValidateSequenceLength(int seqLen)
    {
        if (seqLen <= 0)
            throw new ArgumentOutOfRangeException(nameof(seqLen), seqLen, "Sequence length must be positive.");
        if (seqLen % ChunkSize != 0)
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture,
                $"Sequence length {seqLen} is not a multiple of the chunk size {ChunkSize}. Pad or trim the input to a multiple of {ChunkSize} (e.g. {Math.Max(ChunkSize, seqLen / ChunkSize * ChunkSize)} or {(seqLen / ChunkSize + 1) * ChunkSize} positions), or load the model with the chunk size it was trained with."),
                nameof(seqLen));
    }

    /// <inheritdoc />
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"E={EmbedDim} H={HiddenSize} NH={NumHeads} D={HeadDim} L={NumLayers} C={ChunkSize} F={FfnSize}{(HasInputProjection ? "" : " (no input projection)")}");

    private static void Require(bool ok, string message)
    {
        if (!ok) throw new ModelFormatException(message);
    }
}
