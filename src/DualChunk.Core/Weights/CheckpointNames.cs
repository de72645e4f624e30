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
        int e = config.EmbedDim, h = config.HiddenSize, f = config.FfnSize;
        var list = new List<(string, int[])>();
        if (config.HasInputProjection)
        {
            list.Add((InputKernel, [e, h]));
            list.Add((InputBias, [h]));
        }
        for (int l = 1; l <= config.NumLayers; l++)
        {
            list.Add((AttnNormGamma(l), [h]));
            list.Add((AttnNormBeta(l), [h]));
            list.Add((QkvKernel(l), [h, 3 * h]));
            list.Add((QkvBias(l), [3 * h]));
            list.Add((Gate(l), [config.NumHeads, config.HeadDim]));
            list.Add((OutKernel(l), [h, h]));
            list.Add((OutBias(l), [h]));
            list.Add((FfnNormGamma(l), [h]));
            list.Add((FfnNormBeta(l), [h]));
            list.Add((UpKernel(l), [h, f]));
            list.Add((UpBias(l), [f]));
            list.Add((DownKernel(l), [f, h]));
            list.Add((DownBias(l), [h]));
        }
        list.Add((FinalGamma, [h]));
        list.Add((FinalBeta, [h]));
        return list;
    }
}
