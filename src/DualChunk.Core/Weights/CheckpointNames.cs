namespace DualChunk.Core;

/// <summary>Edifice's parameter keys for <c>DualChunk.build</c> (docs/model.md "Checkpoint names"). Layers count from 1.</summary>
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
