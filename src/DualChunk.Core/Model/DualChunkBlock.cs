using System.IO.Hashing;
using System.Runtime.InteropServices;
using DualChunk.Kernels;

namespace DualChunk.Core;

/// <summary>
/// One pre-norm block around the dual chunk attention, generic over its norm and feed-forward network: DualChunk.build's
/// "dual_chunk_block_&lt;l&gt;" is <c>DualChunkBlock&lt;LayerNormLayer, GeluFeedForward&gt;</c>, DecoderOnly's
/// "decoder_block_&lt;l&gt;" is <c>DualChunkBlock&lt;RmsNormLayer, SwiGluFeedForward&gt;</c> (<see cref="Blocks"/>).
/// Its boxes, each written once and used by every path (the full blocks, the last-timestep block, the stream, every
/// thread count, the breakdown benchmark): <see cref="Summaries"/>, <see cref="Attention"/>,
/// <see cref="OutputProjection"/>, <see cref="FeedForward"/>, <see cref="RowGroup"/> (the three after the summaries
/// on one group of rows) and <see cref="LastTimestepRows"/>.
/// </summary>
/// <remarks>
/// The boxes say what is computed; the executor (TExec) of each call says on which threads
/// (<see cref="OnThisThread"/> inside a work item, <see cref="Split"/> across the workers). The JIT compiles each
/// instantiation for its norm and FFN structs, so the generic costs nothing. Letters as in <see cref="ForwardPass"/>.
/// </remarks>
internal readonly struct DualChunkBlock<TNorm, TFeedForward>
    where TNorm : struct, INormLayer
    where TFeedForward : struct, IFeedForward
{
    public readonly TNorm AttnNorm;                  // *_attn_norm
    public readonly DenseLayer Qkv;                  // *_attn_qkv   [H, 3H]
    public readonly InterChunkAttention Inter;       // summaries -> causal attention over chunks
    public readonly IntraChunkAttention Intra;       // causal attention inside chunks, blend fused
    public readonly GateBlend Gate;                  // *_attn_gate  [NH, D]
    public readonly DenseLayer AttnOut;              // *_attn_out   [H, H], residual add fused
    public readonly TNorm FfnNorm;                   // *_ffn_norm
    public readonly TFeedForward Ffn;                // *_ffn_*

    public DualChunkBlock(ModelConfig config, TNorm attnNorm, DenseLayer qkv, GateBlend gate, DenseLayer attnOut, TNorm ffnNorm, TFeedForward ffn)
    {
        AttnNorm = attnNorm;
        Qkv = qkv;
        Inter = new InterChunkAttention(config);
        Intra = new IntraChunkAttention(config);
        Gate = gate;
        AttnOut = attnOut;
        FfnNorm = ffnNorm;
        Ffn = ffn;
    }

    private int H => Qkv.In;

    /// <summary>
    /// Attention summaries: normed = norm(x); the chunk summaries q̄|k̄|v̄ = h̄ · W_qkv + b (the projection of the
    /// chunk means, equal to the means of the projected rows: docs/model.md "Summaries"); causal attention over
    /// them into <paramref name="inter"/> (only each element's last chunk when <paramref name="lastChunkOnly"/>).
    /// </summary>
    public void Summaries<TExec>(TExec ex, ReadOnlySpan<float> x, Span<float> normed, Span<float> chunkMeans, Span<float> summaries,
        Span<float> inter, int batch, int seqLen, bool lastChunkOnly) where TExec : struct, IExecutor
    {
        ChunkSummaries(ex, x, normed, chunkMeans, summaries, 0, batch * seqLen / Inter.ChunkSize, valuesOnly: seqLen == Inter.ChunkSize);
        ex.InterAttention(Inter, summaries, batch, seqLen, inter, lastChunkOnly);       // inter     [B·NC, H]
    }

    /// <summary>
    /// The summaries of chunks [<paramref name="first"/>, <paramref name="first"/> + <paramref name="count"/>) of the
    /// B·NC chunks: the norm of their rows, their means, and the projection of the means. Each chunk needs only
    /// its own rows, so any chunk range can be computed alone. With <paramref name="valuesOnly"/> (each sequence one
    /// chunk, whose inter-chunk attention is v̄: <see cref="InterChunkAttention.ApplyHead"/>) only the v̄ columns are
    /// projected, when the kernel can compute them alone; q̄ and k̄ are then left unwritten.
    /// </summary>
    public void ChunkSummaries<TExec>(TExec ex, ReadOnlySpan<float> x, Span<float> normed, Span<float> chunkMeans, Span<float> summaries,
        int first, int count, bool valuesOnly = false) where TExec : struct, IExecutor
    {
        int h = H, c = Inter.ChunkSize;
        var n = normed.Slice(first * c * h, count * c * h);
        var means = chunkMeans.Slice(first * h, count * h);
        ex.Norm(AttnNorm, x.Slice(first * c * h, count * c * h), count * c, n);         // normed    [rows, H]
        ex.ChunkMeans(Inter, n, count, means);                                          // h̄         [count, H]
        var projected = summaries.Slice(first * 3 * h, count * 3 * h);                  // q̄|k̄|v̄    [count, 3H]
        if (valuesOnly && PackedMatrix.CanStartColumnRange(2 * h))
            ex.Dense(Qkv, means, count, h, projected, 3 * h, 2 * h, h);                 // v̄ only
        else
            ex.Dense(Qkv, means, count, h, projected, 3 * h, 0, 3 * h);
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
    /// FFN and residual: x += FFN(norm(x)), in blocks of <see cref="WorkspacePlan.FfnRowBlock"/> rows, using
    /// <paramref name="normed"/> for norm(x).
    /// </summary>
    public void FeedForward<TExec>(TExec ex, Span<float> x, Span<float> normed, int rows) where TExec : struct, IExecutor
    {
        int h = H;
        var hidden = ex.FfnHidden;                                                      // [rowBlock, F]
        for (int r0 = 0; r0 < rows; r0 += WorkspacePlan.FfnRowBlock)
        {
            int n = Math.Min(WorkspacePlan.FfnRowBlock, rows - r0);
            var xBlock = x.Slice(r0 * h, n * h);                                        // [n, H]
            var hBlock = normed.Slice(r0 * h, n * h);                                   // [n, H]
            ex.Norm(FfnNorm, xBlock, n, hBlock);
            Ffn.Apply(ex, hBlock, n, hidden, xBlock);                                   // x += FFN(hBlock)
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

    /// <summary>
    /// last_timestep after this (the last) block's summaries, for batch elements [<paramref name="first"/>,
    /// <paramref name="first"/> + <paramref name="count"/>): the attention of each element's last chunk (keys and
    /// values, and the query of its last row only) into <paramref name="lastAttn"/>, then the output projection, FFN
    /// and <paramref name="finalNorm"/> of those rows. Each element needs only its own rows, so any range can be
    /// computed alone.
    /// </summary>
    public void LastTimestepRows<TExec>(TExec ex, in LayerNormLayer finalNorm, ReadOnlySpan<float> x, ReadOnlySpan<float> normed, ReadOnlySpan<float> inter,
        Span<float> qkv, Span<float> attn, Span<float> lastAttn, Span<float> last, Span<float> lastNormed, Span<float> output,
        int first, int count, int seqLen) where TExec : struct, IExecutor
    {
        int h = H, c = Inter.ChunkSize, nc = seqLen / c;
        qkv = qkv[..(c * 3 * h)];                                            // [C, 3H] the last chunk of one sequence
        attn = attn[..(c * h)];                                              // [C, H]  its attention (row C-1 written)
        for (int b = first; b < first + count; b++)
        {
            int chunkRow = b * seqLen + seqLen - c;                          // first row of b's last chunk
            Attention(ex, normed.Slice(chunkRow * h, c * h), c, qkv, inter.Slice((b * nc + nc - 1) * h, h), attn, lastRowOnly: true);
            attn.Slice((c - 1) * h, h).CopyTo(lastAttn.Slice(b * h, h));
            x.Slice((chunkRow + c - 1) * h, h).CopyTo(last.Slice(b * h, h));
        }
        var rows = last.Slice(first * h, count * h);                         // [count, H]
        OutputProjection(ex, lastAttn.Slice(first * h, count * h), count, rows);
        ex.FeedForward(this, rows, lastNormed.Slice(first * h, count * h), count);
        ex.Norm(finalNorm, rows, count, output.Slice(first * h, count * h));
    }

    /// <summary>Appends the norms, biases and gate to a model fingerprint, in the checkpoint's order.</summary>
    public void AppendTo(XxHash64 hash)
    {
        AttnNorm.AppendTo(hash);
        hash.Append(MemoryMarshal.AsBytes(Qkv.Bias.Span));
        hash.Append(MemoryMarshal.AsBytes(Gate.Sigmoid.AsSpan()));
        hash.Append(MemoryMarshal.AsBytes(AttnOut.Bias.Span));
        FfnNorm.AppendTo(hash);
        Ffn.AppendTo(hash);
    }
}

/// <summary>Builds each architecture's blocks from its checkpoint tensors (docs/model.md "Checkpoint names").</summary>
internal static class Blocks
{
    /// <summary>DualChunk.build's block "dual_chunk_block_<paramref name="l"/>" (1-based).</summary>
    public static DualChunkBlock<LayerNormLayer, GeluFeedForward> DualChunk(ModelConfig config, IReadOnlyDictionary<string, CheckpointTensor> t, int l, bool copy)
    {
        CheckpointTensor T(BlockTensor name) => t[CheckpointNames.Block(l, name)];
        return new DualChunkBlock<LayerNormLayer, GeluFeedForward>(config,
            new LayerNormLayer(T(BlockTensor.AttnNormGamma), T(BlockTensor.AttnNormBeta), copy),
            new DenseLayer(T(BlockTensor.QkvKernel), T(BlockTensor.QkvBias), GemmEpilogue.Bias, copy),
            new GateBlend(T(BlockTensor.Gate)),
            new DenseLayer(T(BlockTensor.OutKernel), T(BlockTensor.OutBias), GemmEpilogue.BiasAccumulate, copy),
            new LayerNormLayer(T(BlockTensor.FfnNormGamma), T(BlockTensor.FfnNormBeta), copy),
            new GeluFeedForward(
                new DenseLayer(T(BlockTensor.UpKernel), T(BlockTensor.UpBias), GemmEpilogue.BiasGelu, copy),
                new DenseLayer(T(BlockTensor.DownKernel), T(BlockTensor.DownBias), GemmEpilogue.BiasAccumulate, copy)));
    }

    /// <summary>DecoderOnly's block "decoder_block_<paramref name="l"/>" (1-based).</summary>
    public static DualChunkBlock<RmsNormLayer, SwiGluFeedForward> Decoder(ModelConfig config, IReadOnlyDictionary<string, CheckpointTensor> t, int l, bool copy)
    {
        CheckpointTensor T(DecoderBlockTensor name) => t[CheckpointNames.DecoderBlock(l, name)];
        return new DualChunkBlock<RmsNormLayer, SwiGluFeedForward>(config,
            new RmsNormLayer(T(DecoderBlockTensor.AttnNormGamma), copy),
            new DenseLayer(T(DecoderBlockTensor.QkvKernel), T(DecoderBlockTensor.QkvBias), GemmEpilogue.Bias, copy),
            new GateBlend(T(DecoderBlockTensor.Gate)),
            new DenseLayer(T(DecoderBlockTensor.OutKernel), T(DecoderBlockTensor.OutBias), GemmEpilogue.BiasAccumulate, copy),
            new RmsNormLayer(T(DecoderBlockTensor.FfnNormGamma), copy),
            new SwiGluFeedForward(
                new DenseLayer(T(DecoderBlockTensor.GateKernel), T(DecoderBlockTensor.GateBias), GemmEpilogue.Bias, copy),
                new DenseLayer(T(DecoderBlockTensor.UpKernel), T(DecoderBlockTensor.UpBias), GemmEpilogue.BiasSiluGate, copy),
                new DenseLayer(T(DecoderBlockTensor.DownKernel), T(DecoderBlockTensor.DownBias), GemmEpilogue.BiasAccumulate, copy)));
    }
}
