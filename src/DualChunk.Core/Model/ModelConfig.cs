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
        // Every parameter tensor must fit one array, and 3·H (the QKV width) an int: checked here, so that no size
        // derived from a configuration can overflow later.
        RequireFits("attention QKV kernel [H, 3H]", (long)hiddenSize * 3 * hiddenSize,
            Inv($"hidden_size (at most {(int)Math.Sqrt(MaxTensorElements / 3.0)})"));
        RequireFits("FFN kernels [H, F]", (long)hiddenSize * ffnSize, "hidden_size or ffn size");
        if (embedDim != hiddenSize)
            RequireFits("input projection kernel [E, H]", (long)embedDim * hiddenSize, "embed_dim or hidden_size");
        EmbedDim = embedDim;
        HiddenSize = hiddenSize;
        NumHeads = numHeads;
        NumLayers = numLayers;
        ChunkSize = chunkSize;
        FfnSize = ffnSize;
    }

    /// <summary>Which model the dimensions describe (the block around the attention); <see cref="ModelArchitecture.DualChunk"/> unless set.</summary>
    public ModelArchitecture Architecture { get; init; } = ModelArchitecture.DualChunk;

    /// <summary>The most elements one parameter tensor may hold (the largest .NET array).</summary>
    public static long MaxTensorElements => Array.MaxLength;

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

    /// <summary>The number of parameter tensors: 13 per layer, 2 for the final norm, 2 for the input projection if any.</summary>
    public long TensorCount => 13L * NumLayers + 2 + (HasInputProjection ? 2 : 0);

    /// <summary>The number of float parameters over all tensors (its weights take 4 bytes each as float32).</summary>
    public long ParameterCount
    {
        get
        {
            long h = HiddenSize, f = FfnSize;
            long attention = 2 * h + (3 * h * h + 3 * h) + h + (h * h + h); // norm, QKV, gate, out
            long ffn = 2 * h + (h * f + f) + (f * h + h);                       // norm, up, down
            long perLayer = attention + ffn;
            return NumLayers * perLayer + 2 * h + (HasInputProjection ? (long)EmbedDim * h + h : 0);
        }
    }

    /// <summary>Throws unless a sequence of <paramref name="seqLen"/> positions can be chunked.</summary>
    public void ValidateSequenceLength(int seqLen)
    {
        if (seqLen <= 0)
            throw new ArgumentOutOfRangeException(nameof(seqLen), seqLen, "Sequence length must be positive.");
        if (seqLen % ChunkSize != 0)
        {
            long below = (long)seqLen / ChunkSize * ChunkSize, above = below + ChunkSize;
            string fix = below == 0 ? Inv($"Pad the input to {ChunkSize} positions (or a multiple of {ChunkSize})")
                : above > int.MaxValue ? Inv($"Trim the input to {below} positions (a multiple of {ChunkSize})")
                : Inv($"Pad or trim the input to a multiple of {ChunkSize} (e.g. {below} or {above} positions)");
            throw new ArgumentException(Inv($"Sequence length {seqLen} is not a multiple of the chunk size {ChunkSize}. {fix}, or load the model with the chunk size it was trained with."),
                nameof(seqLen));
        }
    }

    /// <inheritdoc />
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"E={EmbedDim} H={HiddenSize} NH={NumHeads} D={HeadDim} L={NumLayers} C={ChunkSize} F={FfnSize}{(HasInputProjection ? "" : " (no input projection)")}");

    private static void Require(bool ok, string message)
    {
        if (!ok) throw new ModelFormatException(message);
    }

    private static void RequireFits(string tensor, long elements, string fix)
    {
        if (elements > MaxTensorElements)
            throw new ModelFormatException(Inv($"the {tensor} would hold {elements} floats, more than one array can hold ({MaxTensorElements}); use a smaller {fix}."));
    }

    private static string Inv(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
