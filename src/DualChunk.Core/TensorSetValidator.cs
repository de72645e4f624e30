using System.Globalization;
using System.Text.RegularExpressions;

namespace DualChunk.Core;

/// <summary>
/// Infers a <see cref="ModelConfig"/> from an Edifice tensor set and checks the set against it:
/// every missing, unexpected, mis-shaped or non-finite tensor is an error that names it.
/// </summary>
public static partial class TensorSetValidator
{
    [GeneratedRegex(@"^dual_chunk_block_(\d+)_")]
    private static partial Regex BlockNumber();

    /// <summary>
    /// Reads E, H, NH, D, L and F off the tensors (SPEC: "Everything but the chunk size can be inferred")
    /// and validates the whole set. <paramref name="chunkSize"/> is the caller's.
    /// </summary>
    public static ModelConfig Infer(IReadOnlyDictionary<string, Tensor> tensors, int chunkSize)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        if (chunkSize <= 0)
            throw new ArgumentOutOfRangeException(nameof(chunkSize), chunkSize,
                "Chunk size must be positive; pass the chunk size the model was built with (Edifice's default is 64).");

        int h, e;
        if (tensors.TryGetValue(CheckpointNames.InputKernel, out var proj))
        {
            RequireRank(proj, 2);
            e = proj.Shape[0];
            h = proj.Shape[1];
            if (e == h)
                throw new ModelFormatException(Invariant($"Tensor '{CheckpointNames.InputKernel}' has shape {proj.ShapeText}: Edifice adds an input projection only when embed_dim != hidden_size, so this file is not an Edifice DualChunk checkpoint."));
        }
        else
        {
            var gamma = Get(tensors, CheckpointNames.FinalGamma, "(needed to infer hidden_size when there is no input_projection.kernel)");
            RequireRank(gamma, 1);
            h = gamma.Shape[0];
            e = h;
        }

        int layers = 0;
        string? deepest = null;
        foreach (var name in tensors.Keys)
        {
            var m = BlockNumber().Match(name);
            if (m.Success && int.TryParse(m.Groups[1].ValueSpan, NumberStyles.None, CultureInfo.InvariantCulture, out int l) && l > layers && l < 100_000)
            {
                layers = l;
                deepest = name;
            }
        }
        if (layers == 0)
            throw new ModelFormatException("No 'dual_chunk_block_<l>_*' tensors found: the file holds no DualChunk blocks. Is it an Edifice DualChunk checkpoint?");
        // Bound the layer count by the tensors at hand before building the expected-name list (13 per layer).
        if (13L * layers > tensors.Count)
            throw new ModelFormatException(Invariant($"Tensor '{deepest}' names block {layers}, but a {layers}-layer model has at least {13L * layers + 2} tensors and there are {tensors.Count}: blocks are missing or a tensor name is corrupted."));

        var gate = Get(tensors, CheckpointNames.Gate(1), "(the gate's shape [num_heads, head_dim] gives the head count)");
        RequireRank(gate, 2);
        int nh = gate.Shape[0];
        if (nh <= 0 || gate.Shape[1] <= 0 || nh * gate.Shape[1] != h)
            throw new ModelFormatException(Invariant($"Tensor '{gate.Name}' has shape {gate.ShapeText}, expected [num_heads, head_dim] with num_heads * head_dim = hidden_size = {h}."));

        var up = Get(tensors, CheckpointNames.UpKernel(1), "(its shape [hidden_size, ffn_size] gives the FFN width)");
        RequireRank(up, 2);
        int f = up.Shape[1];

        var config = new ModelConfig(e, h, nh, layers, chunkSize, f);
        Validate(tensors, config);
        return config;
    }

    /// <summary>Checks that <paramref name="tensors"/> is exactly the set <paramref name="config"/> needs, all finite.</summary>
    public static void Validate(IReadOnlyDictionary<string, Tensor> tensors, ModelConfig config)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentNullException.ThrowIfNull(config);
        var expected = CheckpointNames.Expected(config);
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, shape) in expected)
        {
            names.Add(name);
            var t = Get(tensors, name, Invariant($"(expected shape [{string.Join(", ", shape)}] for {config})"));
            if (!t.Shape.SequenceEqual(shape))
                throw new ModelFormatException(Invariant($"Tensor '{name}' has shape {t.ShapeText}, expected [{string.Join(", ", shape)}] for {config}."));
            var span = t.Data.Span;
            for (int i = 0; i < span.Length; i++)
            {
                if (!float.IsFinite(span[i]))
                    throw new ModelFormatException(Invariant($"Tensor '{name}' holds a non-finite value ({span[i]}) at flat index {i}; the weights are corrupt or the training diverged."));
            }
        }
        foreach (var name in tensors.Keys)
        {
            if (!names.Contains(name))
                throw new ModelFormatException(Invariant($"Unexpected tensor '{name}': a DualChunk model with {config} has no such parameter. Remove it, or check that the file is an Edifice DualChunk checkpoint."));
        }
    }

    private static Tensor Get(IReadOnlyDictionary<string, Tensor> tensors, string name, string why)
        => tensors.TryGetValue(name, out var t) ? t
            : throw new ModelFormatException($"Missing tensor '{name}' {why}.");

    private static void RequireRank(Tensor t, int rank)
    {
        if (t.Shape.Count != rank)
            throw new ModelFormatException(Invariant($"Tensor '{t.Name}' has shape {t.ShapeText}, expected a rank-{rank} tensor."));
    }

    private static string Invariant(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
