using System.Globalization;
using System.Text.RegularExpressions;

namespace DualChunk.Core;

/// <summary>
/// Infers a <see cref="ModelConfig"/> from an Edifice tensor set and checks the set against it:
/// every missing, unexpected, mis-shaped or non-finite tensor is an error that names it.
/// </summary>
public static partial class TensorSetValidator
{
    [GeneratedRegex(@"^(dual_chunk_block|decoder_block)_(\d+)_")]
    private static partial Regex BlockNumber();

    /// <summary>
    /// Reads the architecture (DualChunk.build's "dual_chunk_block_&lt;l&gt;_*" or DecoderOnly's "decoder_block_&lt;l&gt;_*"
    /// tensors) and E, H, NH, D, L and F off the tensors (docs/model.md "Checkpoint names") and validates the whole
    /// set. <paramref name="chunkSize"/> is the caller's.
    /// </summary>
    public static ModelConfig Infer(IReadOnlyDictionary<string, CheckpointTensor> tensors, int chunkSize)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        var config = InferFromShapes(ShapesOf(tensors), chunkSize);
        CheckFinite(tensors);
        return config;
    }

    /// <summary>
    /// As <see cref="Infer"/>, from names and shapes only (e.g. a safetensors header), so that a file that is not this
    /// model is rejected before any of its data is read.
    /// </summary>
    internal static ModelConfig InferFromShapes(IReadOnlyDictionary<string, int[]> shapes, int chunkSize)
    {
        if (chunkSize <= 0)
            throw new ArgumentOutOfRangeException(nameof(chunkSize), chunkSize,
                "Chunk size must be positive; pass the chunk size the model was built with (Edifice's default is 64).");

        int h, e;
        if (shapes.TryGetValue(CheckpointNames.InputKernel, out var proj))
        {
            RequireRank(CheckpointNames.InputKernel, proj, 2);
            e = proj[0];
            h = proj[1];
            if (e == h)
                throw new ModelFormatException(Invariant($"CheckpointTensor '{CheckpointNames.InputKernel}' has shape {Text(proj)}: Edifice adds an input projection only when embed_dim != hidden_size, so this file is not an Edifice DualChunk checkpoint."));
        }
        else
        {
            var gamma = Get(shapes, CheckpointNames.FinalGamma, "(needed to infer hidden_size when there is no input_projection.kernel)");
            RequireRank(CheckpointNames.FinalGamma, gamma, 1);
            h = gamma[0];
            e = h;
        }

        // Bounded by the tensor count: a model with L layers has 13·L tensors, so a larger block number is an error below.
        int layers = 0;
        string? dualChunkTensor = null, decoderTensor = null;
        foreach (var name in shapes.Keys)
        {
            var m = BlockNumber().Match(name);
            if (!m.Success) continue;
            bool decoder = m.Groups[1].ValueSpan.SequenceEqual("decoder_block");
            if (decoder) decoderTensor ??= name;
            else dualChunkTensor ??= name;
            if (int.TryParse(m.Groups[2].ValueSpan, NumberStyles.None, CultureInfo.InvariantCulture, out int l) && l > layers)
                layers = l;
        }
        if (dualChunkTensor is not null && decoderTensor is not null)
            throw new ModelFormatException($"The file mixes two models: '{dualChunkTensor}' is a DualChunk.build block tensor and '{decoderTensor}' a DecoderOnly block tensor. One checkpoint holds one model: export the two models to separate files.");
        if (layers == 0)
            throw new ModelFormatException("No 'dual_chunk_block_<l>_*' or 'decoder_block_<l>_*' tensors found: the file holds no dual chunk attention blocks. Is it an Edifice DualChunk (or DecoderOnly with attention_type: :dual_chunk) checkpoint?");
        var architecture = decoderTensor is not null ? ModelArchitecture.DecoderOnly : ModelArchitecture.DualChunk;
        if (13L * layers > shapes.Count)
            throw new ModelFormatException(Invariant($"A tensor of block {layers} is present, but a model with {layers} blocks has {13L * layers + 2} or more tensors and the file holds {shapes.Count}: blocks are missing, or a block number is corrupt. Is it a complete Edifice DualChunk checkpoint?"));

        string gateName = architecture == ModelArchitecture.DecoderOnly
            ? CheckpointNames.DecoderBlock(1, DecoderBlockTensor.Gate) : CheckpointNames.Block(1, BlockTensor.Gate);
        var gate = Get(shapes, gateName, "(the gate's shape [num_heads, head_dim] gives the head count)");
        RequireRank(gateName, gate, 2);
        int nh = gate[0];
        if (nh <= 0 || gate[1] <= 0 || (long)nh * gate[1] != h)
            throw new ModelFormatException(Invariant($"CheckpointTensor '{gateName}' has shape {Text(gate)}, expected [num_heads, head_dim] with num_heads * head_dim = hidden_size = {h}."));

        string upName = architecture == ModelArchitecture.DecoderOnly
            ? CheckpointNames.DecoderBlock(1, DecoderBlockTensor.UpKernel) : CheckpointNames.Block(1, BlockTensor.UpKernel);
        var up = Get(shapes, upName, "(its shape [hidden_size, ffn_size] gives the FFN width)");
        RequireRank(upName, up, 2);
        int f = up[1];

        var config = ModelConfig.FromFile("The tensors' shapes give an invalid model configuration", e, h, nh, layers, chunkSize, f) with { Architecture = architecture };
        ValidateShapes(shapes, config);
        return config;
    }

    /// <summary>Checks that <paramref name="tensors"/> is exactly the set <paramref name="config"/> needs, all finite.</summary>
    public static void Validate(IReadOnlyDictionary<string, CheckpointTensor> tensors, ModelConfig config)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentNullException.ThrowIfNull(config);
        ValidateShapes(ShapesOf(tensors), config);
        CheckFinite(tensors);
    }

    /// <summary>Checks names and shapes only: exactly the set <paramref name="config"/> needs.</summary>
    internal static void ValidateShapes(IReadOnlyDictionary<string, int[]> shapes, ModelConfig config)
    {
        // One expected name at a time and stopping at the first missing one: the work is bounded by what the file
        // holds, however many layers its configuration claims.
        foreach (var (name, shape) in CheckpointNames.Enumerate(config))
        {
            var s = Get(shapes, name, Invariant($"(expected shape {Text(shape)} for {config})"));
            if (!s.AsSpan().SequenceEqual(shape))
                throw new ModelFormatException(Invariant($"CheckpointTensor '{name}' has shape {Text(s)}, expected {Text(shape)} for {config}."));
        }
        if (shapes.Count != config.TensorCount)
        {
            // Every expected tensor is present, so there are more than expected: this set is bounded by the file.
            var expected = CheckpointNames.Enumerate(config).Select(x => x.Name).ToHashSet(StringComparer.Ordinal);
            foreach (var name in shapes.Keys)
            {
                if (!expected.Contains(name))
                    throw new ModelFormatException(Invariant($"Unexpected tensor '{name}': a {(config.Architecture == ModelArchitecture.DecoderOnly ? "DecoderOnly" : "DualChunk")} model with {config} has no such parameter. Remove it, or check that the file is an Edifice DualChunk or DecoderOnly checkpoint."));
            }
        }
    }

    private static void CheckFinite(IReadOnlyDictionary<string, CheckpointTensor> tensors)
    {
        foreach (var (name, t) in tensors)
        {
            var span = t.Data.Span;
            for (int i = 0; i < span.Length; i++)
            {
                if (!float.IsFinite(span[i]))
                    throw new ModelFormatException(Invariant($"CheckpointTensor '{name}' holds a non-finite value ({span[i]}) at flat index {i}; the weights are corrupt or the training diverged."));
            }
        }
    }

    private static Dictionary<string, int[]> ShapesOf(IReadOnlyDictionary<string, CheckpointTensor> tensors)
    {
        var shapes = new Dictionary<string, int[]>(tensors.Count, StringComparer.Ordinal);
        foreach (var (name, t) in tensors) shapes[name] = [.. t.Shape];
        return shapes;
    }

    private static int[] Get(IReadOnlyDictionary<string, int[]> shapes, string name, string why)
        => shapes.TryGetValue(name, out var s) ? s
            : throw new ModelFormatException($"Missing tensor '{name}' {why}.");

    private static void RequireRank(string name, int[] shape, int rank)
    {
        if (shape.Length != rank)
            throw new ModelFormatException(Invariant($"CheckpointTensor '{name}' has shape {Text(shape)}, expected a rank-{rank} tensor."));
    }

    private static string Text(int[] shape) => "[" + string.Join(", ", shape) + "]";

    private static string Invariant(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
