namespace DualChunk.Core;

/// <summary>Edifice's parameter keys for <c>DualChunk.build</c> (docs/model.md "Checkpoint names"). Layers count from 1.</summary>
public static class CheckpointNames
{
#pragma warning disable CS1591 // the names are their own documentation
    public const string InputKernel = "input_projection.kernel";
    public const string InputBias = "input_projection.bias";
    public const string FinalGamma = "final_norm.gamma";
    public const string FinalBeta = "final_norm.beta";
    public static string AttnNormGamma(int l) => $"dual_chunk_block_{l}_attn_norm.gamma";
    public static string AttnNormBeta(int l) => $"dual_chunk_block_{l}_attn_norm.beta";
    public static string QkvKernel(int l) => $"dual_chunk_block_{l}_attn_qkv.kernel";
    public static string QkvBias(int l) => $"dual_chunk_block_{l}_attn_qkv.bias";
    public static string Gate(int l) => $"dual_chunk_block_{l}_attn_compute.dual_chunk_block_{l}_attn_gate";
    public static string OutKernel(int l) => $"dual_chunk_block_{l}_attn_out.kernel";
    public static string OutBias(int l) => $"dual_chunk_block_{l}_attn_out.bias";
    public static string FfnNormGamma(int l) => $"dual_chunk_block_{l}_ffn_norm.gamma";
    public static string FfnNormBeta(int l) => $"dual_chunk_block_{l}_ffn_norm.beta";
    public static string UpKernel(int l) => $"dual_chunk_block_{l}_ffn_up.kernel";
    public static string UpBias(int l) => $"dual_chunk_block_{l}_ffn_up.bias";
    public static string DownKernel(int l) => $"dual_chunk_block_{l}_ffn_down.kernel";
    public static string DownBias(int l) => $"dual_chunk_block_{l}_ffn_down.bias";
#pragma warning restore CS1591

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
            yield return (AttnNormGamma(l), [h]);
            yield return (AttnNormBeta(l), [h]);
            yield return (QkvKernel(l), [h, 3 * h]);
            yield return (QkvBias(l), [3 * h]);
            yield return (Gate(l), [config.NumHeads, config.HeadDim]);
            yield return (OutKernel(l), [h, h]);
            yield return (OutBias(l), [h]);
            yield return (FfnNormGamma(l), [h]);
            yield return (FfnNormBeta(l), [h]);
            yield return (UpKernel(l), [h, f]);
            yield return (UpBias(l), [f]);
            yield return (DownKernel(l), [f, h]);
            yield return (DownBias(l), [h]);
        }
        yield return (FinalGamma, [h]);
        yield return (FinalBeta, [h]);
    }
}
