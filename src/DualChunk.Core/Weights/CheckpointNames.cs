namespace DualChunk.Core;

/// <summary>
/// Edifice's parameter keys for <c>DualChunk.build</c> (<see cref="Block"/>) and for <c>DecoderOnly</c> with
/// <c>attention_type: :dual_chunk</c> (<see cref="DecoderBlock"/>) (docs/model.md "Checkpoint names"). Layers count from 1.
/// </summary>
public static class CheckpointNames
{
#pragma warning disable CS1591 // the names are their own documentation
    public const string InputKernel = "input_projection.kernel";
    public const string InputBias = "input_projection.bias";
    public const string FinalGamma = "final_norm.gamma";
    public const string FinalBeta = "final_norm.beta";
#pragma warning restore CS1591

    // Key of each BlockTensor after "dual_chunk_block_{l}_", in the enum's order (the gate's is built apart: it names l twice).
    private static readonly string[] BlockSuffixes =
    [
        "attn_norm.gamma", "attn_norm.beta", "attn_qkv.kernel", "attn_qkv.bias", "attn_compute",
        "attn_out.kernel", "attn_out.bias", "ffn_norm.gamma", "ffn_norm.beta", "ffn_up.kernel", "ffn_up.bias", "ffn_down.kernel", "ffn_down.bias",
    ];

    /// <summary>The key of tensor <paramref name="tensor"/> of block <paramref name="l"/> (1-based), e.g. <c>dual_chunk_block_1_attn_qkv.kernel</c>.</summary>
    public static string Block(int l, BlockTensor tensor)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(l, 1);
        if ((uint)tensor >= (uint)BlockSuffixes.Length) throw new ArgumentOutOfRangeException(nameof(tensor), tensor, "Not a block tensor.");
        return tensor == BlockTensor.Gate
            ? $"dual_chunk_block_{l}_attn_compute.dual_chunk_block_{l}_attn_gate"
            : $"dual_chunk_block_{l}_{BlockSuffixes[(int)tensor]}";
    }

    /// <summary>The prefix of every block tensor of DualChunk.build, followed by the block number.</summary>
    public const string DualChunkBlockPrefix = "dual_chunk_block_";

    /// <summary>The prefix of every block tensor of DecoderOnly, followed by the block number.</summary>
    public const string DecoderBlockPrefix = "decoder_block_";

    /// <summary>
    /// The key of tensor <paramref name="tensor"/> of DecoderOnly's block <paramref name="l"/> (1-based), e.g.
    /// <c>decoder_block_1_attn_qkv.kernel</c>; the RMSNorm scales and the gate repeat the layer name in their key
    /// (<c>decoder_block_1_attn_norm.decoder_block_1_attn_norm_gamma</c>).
    /// </summary>
    public static string DecoderBlock(int l, DecoderBlockTensor tensor)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(l, 1);
        string p = $"{DecoderBlockPrefix}{l}_";
        return tensor switch
        {
            DecoderBlockTensor.AttnNormGamma => $"{p}attn_norm.{p}attn_norm_gamma",
            DecoderBlockTensor.QkvKernel => $"{p}attn_qkv.kernel",
            DecoderBlockTensor.QkvBias => $"{p}attn_qkv.bias",
            DecoderBlockTensor.Gate => $"{p}attn_compute.{p}attn_gate",
            DecoderBlockTensor.OutKernel => $"{p}attn_out.kernel",
            DecoderBlockTensor.OutBias => $"{p}attn_out.bias",
            DecoderBlockTensor.FfnNormGamma => $"{p}ffn_norm.{p}ffn_norm_gamma",
            DecoderBlockTensor.GateKernel => $"{p}ffn_gate.kernel",
            DecoderBlockTensor.GateBias => $"{p}ffn_gate.bias",
            DecoderBlockTensor.UpKernel => $"{p}ffn_up.kernel",
            DecoderBlockTensor.UpBias => $"{p}ffn_up.bias",
            DecoderBlockTensor.DownKernel => $"{p}ffn_down.kernel",
            DecoderBlockTensor.DownBias => $"{p}ffn_down.bias",
            _ => throw new ArgumentOutOfRangeException(nameof(tensor), tensor, "Not a decoder block tensor."),
        };
    }

    /// <summary>Every key a model of <paramref name="config"/> has, with its shape, in canonical order.</summary>
    public static IReadOnlyList<(string Name, int[] Shape)> Expected(ModelConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        return [.. Enumerate(config)];
    }

    /// <summary>
    /// <see cref="Expected"/> one key at a time: a validator that stops at the first missing tensor then costs what the
    /// file holds, not what a (possibly corrupt) layer count claims.
    /// </summary>
    internal static IEnumerable<(string Name, int[] Shape)> Enumerate(ModelConfig config)
    {
        int e = config.EmbedDim, h = config.HiddenSize, f = config.FfnSize;
        if (config.HasInputProjection)
        {
            yield return (InputKernel, [e, h]);
            yield return (InputBias, [h]);
        }
        for (int l = 1; l <= config.NumLayers; l++)
        {
            if (config.Architecture == ModelArchitecture.DecoderOnly)
            {
                yield return (DecoderBlock(l, DecoderBlockTensor.AttnNormGamma), [h]);
                yield return (DecoderBlock(l, DecoderBlockTensor.QkvKernel), [h, 3 * h]);
                yield return (DecoderBlock(l, DecoderBlockTensor.QkvBias), [3 * h]);
                yield return (DecoderBlock(l, DecoderBlockTensor.Gate), [config.NumHeads, config.HeadDim]);
                yield return (DecoderBlock(l, DecoderBlockTensor.OutKernel), [h, h]);
                yield return (DecoderBlock(l, DecoderBlockTensor.OutBias), [h]);
                yield return (DecoderBlock(l, DecoderBlockTensor.FfnNormGamma), [h]);
                yield return (DecoderBlock(l, DecoderBlockTensor.GateKernel), [h, f]);
                yield return (DecoderBlock(l, DecoderBlockTensor.GateBias), [f]);
                yield return (DecoderBlock(l, DecoderBlockTensor.UpKernel), [h, f]);
                yield return (DecoderBlock(l, DecoderBlockTensor.UpBias), [f]);
                yield return (DecoderBlock(l, DecoderBlockTensor.DownKernel), [f, h]);
                yield return (DecoderBlock(l, DecoderBlockTensor.DownBias), [h]);
                continue;
            }
            yield return (Block(l, BlockTensor.AttnNormGamma), [h]);
            yield return (Block(l, BlockTensor.AttnNormBeta), [h]);
            yield return (Block(l, BlockTensor.QkvKernel), [h, 3 * h]);
            yield return (Block(l, BlockTensor.QkvBias), [3 * h]);
            yield return (Block(l, BlockTensor.Gate), [config.NumHeads, config.HeadDim]);
            yield return (Block(l, BlockTensor.OutKernel), [h, h]);
            yield return (Block(l, BlockTensor.OutBias), [h]);
            yield return (Block(l, BlockTensor.FfnNormGamma), [h]);
            yield return (Block(l, BlockTensor.FfnNormBeta), [h]);
            yield return (Block(l, BlockTensor.UpKernel), [h, f]);
            yield return (Block(l, BlockTensor.UpBias), [f]);
            yield return (Block(l, BlockTensor.DownKernel), [f, h]);
            yield return (Block(l, BlockTensor.DownBias), [h]);
        }
        yield return (FinalGamma, [h]);
        yield return (FinalBeta, [h]);
    }
}

/// <summary>The thirteen tensors of one dual chunk block, in the checkpoint's canonical order (<see cref="CheckpointNames.Block"/>).</summary>
public enum BlockTensor
{
#pragma warning disable CS1591 // the names are their own documentation
    AttnNormGamma, AttnNormBeta, QkvKernel, QkvBias, Gate, OutKernel, OutBias, FfnNormGamma, FfnNormBeta, UpKernel, UpBias, DownKernel, DownBias,
#pragma warning restore CS1591
}

/// <summary>The thirteen tensors of one DecoderOnly block, in the checkpoint's canonical order (<see cref="CheckpointNames.DecoderBlock"/>).</summary>
public enum DecoderBlockTensor
{
#pragma warning disable CS1591 // the names are their own documentation
    AttnNormGamma, QkvKernel, QkvBias, Gate, OutKernel, OutBias, FfnNormGamma, GateKernel, GateBias, UpKernel, UpBias, DownKernel, DownBias,
#pragma warning restore CS1591
}
