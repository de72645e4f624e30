using System.Globalization;

namespace DualChunk.Core;

/// <summary>
/// The architecture and dimensions of an Edifice dual chunk attention model. Letters as in docs/model.md: E embed, H hidden, NH heads,
/// D = H / NH head width, L layers, C chunk size, F = FFN inner width.
/// </summary>
public sealed record ModelConfig
{
    /// <summary>Creates and validates a configuration.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A dimension is zero or negative.</exception>
    /// <exception cref="ArgumentException"><paramref name="numHeads"/> does not divide <paramref name="hiddenSize"/>, or a
    /// parameter tensor of these dimensions would not fit in one array.</exception>
    public ModelConfig(int embedDim, int hiddenSize, int numHeads, int numLayers, int chunkSize, int ffnSize)
    {
        if (Problem(embedDim, hiddenSize, numHeads, numLayers, chunkSize, ffnSize) is { } p)
            throw p.OutOfRange ? new ArgumentOutOfRangeException(p.Parameter, p.Message) : new ArgumentException(p.Message, p.Parameter);
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

    /// <summary>F: inner width of the FFN (4·H in DualChunk.build; round(2.667·H) up to a multiple of 8 in DecoderOnly's SwiGLU).</summary>
    public int FfnSize { get; }

    /// <summary>
    /// The SwiGLU inner width Edifice's DecoderOnly gives hidden size <paramref name="hiddenSize"/>: round(2.667·H),
    /// rounded up to a multiple of 8 (e.g. 688 for H = 256).
    /// </summary>
    public static int SwiGluInnerSize(int hiddenSize) => ((int)Math.Round(hiddenSize * 2.667, MidpointRounding.AwayFromZero) + 7) / 8 * 8; // Elixir rounds half away from zero

    /// <summary>D = H / NH.</summary>
    public int HeadDim => HiddenSize / NumHeads;

    /// <summary>Edifice adds the input projection only when E != H.</summary>
    public bool HasInputProjection => EmbedDim != HiddenSize;

    /// <summary>
    /// The number of parameter tensors: 13 per layer in both architectures (DualChunk.build: two LayerNorms of γ, β,
    /// QKV, gate, out, up, down; DecoderOnly: two RMSNorm scales, QKV, gate, out, and the SwiGLU gate, up and down),
    /// 2 for the final norm, 2 for the input projection if any.
    /// </summary>
    public long TensorCount => 13L * NumLayers + 2 + (HasInputProjection ? 2 : 0);

    /// <summary>The number of float parameters over all tensors (its weights take 4 bytes each as float32).</summary>
    public long ParameterCount
    {
        get
        {
            long h = HiddenSize, f = FfnSize;
            long attention = 3 * h * h + 3 * h + h + (h * h + h);              // QKV, gate, out
            long block = Architecture == ModelArchitecture.DecoderOnly
                ? attention + 2 * h + 2 * (h * f + f) + (f * h + h)             // + 2 RMSNorm γ, SwiGLU gate and up, down
                : attention + 4 * h + (h * f + f) + (f * h + h);                // + 2 LayerNorm γ|β, up, down
            return NumLayers * block + 2 * h + (HasInputProjection ? (long)EmbedDim * h + h : 0);
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
        $"{(Architecture == ModelArchitecture.DecoderOnly ? "DecoderOnly " : "")}E={EmbedDim} H={HiddenSize} NH={NumHeads} D={HeadDim} L={NumLayers} C={ChunkSize} F={FfnSize}{(HasInputProjection ? "" : " (no input projection)")}");

    /// <summary>
    /// A configuration read from a file: a value the constructor would reject is the file's fault, so it is reported
    /// as <see cref="ModelFormatException"/>, its message prefixed by <paramref name="context"/> (e.g. the file's name
    /// and where the values came from). Every reader that builds a configuration from stored values uses this.
    /// </summary>
    internal static ModelConfig FromFile(string context, int embedDim, int hiddenSize, int numHeads, int numLayers, int chunkSize, int ffnSize)
    {
        if (Problem(embedDim, hiddenSize, numHeads, numLayers, chunkSize, ffnSize) is { } p)
            throw new ModelFormatException($"{context}: {p.Message}");
        return new ModelConfig(embedDim, hiddenSize, numHeads, numLayers, chunkSize, ffnSize);
    }

    /// <summary>What is wrong with these dimensions (the message and the constructor parameter), or null.</summary>
    private static (string Message, string Parameter, bool OutOfRange)? Problem(int embedDim, int hiddenSize, int numHeads, int numLayers, int chunkSize, int ffnSize)
    {
        if (embedDim <= 0) return (Inv($"embed_dim must be positive, got {embedDim}."), nameof(embedDim), true);
        if (hiddenSize <= 0) return (Inv($"hidden_size must be positive, got {hiddenSize}."), nameof(hiddenSize), true);
        if (numHeads <= 0) return (Inv($"num_heads must be positive, got {numHeads}."), nameof(numHeads), true);
        if (numLayers <= 0) return (Inv($"num_layers must be positive, got {numLayers}."), nameof(numLayers), true);
        if (chunkSize <= 0)
            return (Inv($"chunk size must be positive, got {chunkSize}. Pass the chunk size the model was built with (Edifice's default is 64)."), nameof(chunkSize), true);
        if (ffnSize <= 0) return (Inv($"ffn size must be positive, got {ffnSize}."), nameof(ffnSize), true);
        if (hiddenSize % numHeads != 0)
            return (Inv($"num_heads must divide hidden_size {hiddenSize}, got {numHeads}."), nameof(numHeads), false);
        // Every parameter tensor must fit one array, and 3·H (the QKV width) an int: checked here, so that no size
        // derived from a configuration can overflow later.
        return TooLarge("attention QKV kernel [H, 3H]", (long)hiddenSize * 3 * hiddenSize,
                   Inv($"hidden_size (at most {(int)Math.Sqrt(MaxTensorElements / 3.0)})"), nameof(hiddenSize))
            ?? TooLarge("FFN kernels [H, F]", (long)hiddenSize * ffnSize, "hidden_size or ffn size", nameof(ffnSize))
            ?? (embedDim != hiddenSize ? TooLarge("input projection kernel [E, H]", (long)embedDim * hiddenSize, "embed_dim or hidden_size", nameof(embedDim)) : null);
    }

    private static (string, string, bool)? TooLarge(string tensor, long elements, string fix, string parameter)
        => elements > MaxTensorElements
            ? (Inv($"the {tensor} would hold {elements} floats, more than one array can hold ({MaxTensorElements}); use a smaller {fix}."), parameter, false)
            : null;

    private static string Inv(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
