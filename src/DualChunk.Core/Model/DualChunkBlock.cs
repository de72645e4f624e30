using DualChunk.Kernels;

namespace DualChunk.Core;

/// <summary>
/// One pre-norm block "dual_chunk_block_&lt;l&gt;" and its boxes, each written once and used by every path (the full
/// blocks, the last-timestep block, every thread count, the breakdown benchmark): <see cref="Summaries"/>,
/// <see cref="Attention"/>, <see cref="OutputProjection"/>, <see cref="FeedForward"/>, and
/// <see cref="RowGroup"/>, the three after the summaries on one group of rows.
/// </summary>
/// <remarks>
/// The boxes say what is computed; the executor (TExec) of each call says on which threads
/// (<see cref="OnThisThread"/> inside a work item, <see cref="Split"/> across the workers). Letters as in
/// <see cref="ForwardPass"/>.
/// </remarks>
internal readonly struct DualChunkBlock
{
    public readonly LayerNormLayer AttnNorm;         // *_attn_norm
    public readonly DenseLayer Qkv;                  // *_attn_qkv   [H, 3H]
    public readonly InterChunkAttention Inter;       // summaries -> causal attention over chunks
    public readonly IntraChunkAttention Intra;       // causal attention inside chunks, blend fused
    public readonly GateBlend Gate;                  // *_attn_gate  [NH, D]
    public readonly DenseLayer AttnOut;              // *_attn_out   [H, H], residual add fused
    public readonly LayerNormLayer FfnNorm;          // *_ffn_norm
    public readonly DenseLayer FfnUp;                // *_ffn_up     [H, F], GELU fused
    public readonly DenseLayer FfnDown;              // *_ffn_down   [F, H], residual add fused

    public DualChunkBlock(ModelConfig config, IReadOnlyDictionary<string, CheckpointTensor> t, int l, bool copy)
    {
        AttnNorm = new LayerNormLayer(t[CheckpointNames.Block(l, BlockTensor.AttnNormGamma)], t[CheckpointNames.Block(l, BlockTensor.AttnNormBeta)], copy);
        Qkv = new DenseLayer(t[CheckpointNames.Block(l, BlockTensor.QkvKernel)], t[CheckpointNames.Block(l, BlockTensor.QkvBias)], GemmEpilogue.Bias, copy);
        Inter = new InterChunkAttention(config);
        Intra = new IntraChunkAttention(config);
        Gate = new GateBlend(t[CheckpointNames.Block(l, BlockTensor.Gate)]);
        AttnOut = new DenseLayer(t[CheckpointNames.Block(l, BlockTensor.OutKernel)], t[CheckpointNames.Block(l, BlockTensor.OutBias)], GemmEpilogue.BiasAccumulate, copy);
        FfnNorm = new LayerNormLayer(t[CheckpointNames.Block(l, BlockTensor.FfnNormGamma)], t[CheckpointNames.Block(l, BlockTensor.FfnNormBeta)], copy);
        FfnUp = new DenseLayer(t[CheckpointNames.Block(l, BlockTensor.UpKernel)], t[CheckpointNames.Block(l, BlockTensor.UpBias)], GemmEpilogue.BiasGelu, copy);
        FfnDown = new DenseLayer(t[CheckpointNames.Block(l, BlockTensor.DownKernel)], t[CheckpointNames.Block(l, BlockTensor.DownBias)], GemmEpilogue.BiasAccumulate, copy);
    }

    private int H => Qkv.In;

    /// <summary>
    /// Attention summaries: normed = LN(x); the chunk summaries q̄|k̄|v̄ = h̄ · W_qkv + b (the projection of the
    /// chunk means, equal to the means of the projected rows: docs/model.md "Summaries"); causal attention over
    /// them into <paramref name="inter"/> (only each element's last chunk when <paramref name="lastChunkOnly"/>).
    /// </summary>
    public void Summaries<TExec>(TExec ex, ReadOnlySpan<float> x, Span<float> normed, Span<float> chunkMeans, Span<float> summaries,
        Span<float> inter, int batch, int seqLen, bool lastChunkOnly) where TExec : struct, IExecutor
    {
        ChunkSummaries(ex, x, normed, chunkMeans, summaries, 0, batch * seqLen / Inter.ChunkSize);
        ex.InterAttention(Inter, summaries, batch, seqLen, inter, lastChunkOnly);       // inter     [B·NC, H]
    }

    /// <summary>
    /// The summaries of chunks [<paramref name="first"/>, <paramref name="first"/> + <paramref name="count"/>) of the
    /// B·NC chunks: the layer norm of their rows, their means, and the projection of the means. Each chunk needs only
    /// its own rows, so any chunk range can be computed alone.
    /// </summary>
    public void ChunkSummaries<TExec>(TExec ex, ReadOnlySpan<float> x, Span<float> normed, Span<float> chunkMeans, Span<float> summaries,
        int first, int count) where TExec : struct, IExecutor
    {
        int h = H, c = Inter.ChunkSize;
        var n = normed.Slice(first * c * h, count * c * h);
        var means = chunkMeans.Slice(first * h, count * h);
        ex.LayerNorm(AttnNorm, x.Slice(first * c * h, count * c * h), count * c, n);    // normed    [rows, H]
        ex.ChunkMeans(Inter, n, count, means);                                          // h̄         [count, H]
        ex.Dense(Qkv, means, count, h, summaries.Slice(first * 3 * h, count * 3 * h), 3 * h, 0, 3 * h); // q̄|k̄|v̄ [count, 3H]
    }

    /// <summary>
    /// Intra-chunk attention and blend on <paramref name="rows"/> rows of whole chunks: qkv = normed · W_qkv + b, causal
    /// attention inside each chunk, blended with the chunk's inter row by the gate. With <paramref name="lastRowOnly"/>
    /// (one chunk) only the last row's query is projected, when the kernel can compute the key/value columns alone.
    /// </summary>
    public void Attention<TExec>(TExec ex, ReadOnlySpan<float> normed, int rows, Span<float> qkv, ReadOnlySpan<float> inter,
        Span<float> attn, bool lastRowOnly) where TExec : struct, IExecutor
    {
        int h = H;
        if (lastRowOnly && PackedMatrix.CanStartColumnRange(h))
        {
            ex.Dense(Qkv, normed, rows, h, qkv, 3 * h, h, 2 * h);                       // k|v       [C, 2H] of [C, 3H]
            ex.Dense(Qkv, normed[((rows - 1) * h)..], 1, h, qkv[((rows - 1) * 3 * h)..], 3 * h, 0, h); // q of row C−1
        }
        else
        {
            ex.Dense(Qkv, normed, rows, h, qkv, 3 * h, 0, 3 * h);                       // q|k|v     [rows, 3H]
        }
        ex.IntraAttention(Intra, Gate, qkv, rows / Inter.ChunkSize, inter, attn, lastRowOnly); // attn [rows, H]
    }

    /// <summary>Output projection and residual: x += attn · W_out + b_out.</summary>
    public void OutputProjection<TExec>(TExec ex, ReadOnlySpan<float> attn, int rows, Span<float> x) where TExec : struct, IExecutor
        => ex.Dense(AttnOut, attn, rows, H, x, H, 0, H);

    /// <summary>
    /// FFN and residual: x += GELU(LN(x) · W_up + b_up) · W_down + b_down, in blocks of
    /// <see cref="WorkspacePlan.FfnRowBlock"/> rows, using <paramref name="normed"/> for LN(x).
    /// </summary>
    public void FeedForward<TExec>(TExec ex, Span<float> x, Span<float> normed, int rows) where TExec : struct, IExecutor
    {
        int h = H, f = FfnUp.Out;
        var hidden = ex.FfnHidden;                                                      // [rowBlock, F]
        for (int r0 = 0; r0 < rows; r0 += WorkspacePlan.FfnRowBlock)
        {
            int n = Math.Min(WorkspacePlan.FfnRowBlock, rows - r0);
            var xBlock = x.Slice(r0 * h, n * h);                                        // [n, H]
            var hBlock = normed.Slice(r0 * h, n * h);                                   // [n, H]
            ex.LayerNorm(FfnNorm, xBlock, n, hBlock);
            ex.Dense(FfnUp, hBlock, n, h, hidden, f, 0, f);                             // GELU fused
            ex.Dense(FfnDown, hidden, n, f, xBlock, h, 0, h);                           // x += ...
        }
    }

    /// <summary>
    /// The block after its summaries on one group of <paramref name="rows"/> rows of whole chunks, with the group's
    /// own qkv [G, 3H] and attn [G, H] buffers: attention, output projection, FFN.
    /// </summary>
    public void RowGroup<TExec>(TExec ex, Span<float> x, Span<float> normed, ReadOnlySpan<float> inter, int rows,
        Span<float> qkv, Span<float> attn) where TExec : struct, IExecutor
    {
        Attention(ex, normed, rows, qkv, inter, attn, lastRowOnly: false);
        OutputProjection(ex, attn, rows, x);
        ex.FeedForward(this, x, normed, rows);
    }
}
