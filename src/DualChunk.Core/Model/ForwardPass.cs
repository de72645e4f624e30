using DualChunk.Kernels;

namespace DualChunk.Core;

/// <summary>
/// The network's weights, immutable and shared by every call, and the forward pass over them (docs/model.md).
/// </summary>
/// <remarks>
/// Dimensions: B batch, N positions (seq_len), E embed, H hidden, NH heads, D = H / NH head width, L layers,
/// C chunk size, NC = N / C chunks per sequence, F FFN width, G rows of a row group (whole chunks).
/// Every buffer is row-major; its shape is in the comment where it is taken from the workspace.
/// </remarks>
internal sealed class ForwardPass
{
    private readonly ModelConfig _config;
    private readonly DenseLayer? _inputProjection;  // input_projection [E, H], only when E != H
    private readonly DualChunkBlock[] _blocks;      // dual_chunk_block_1 .. _L
    private readonly LayerNormLayer _finalNorm;     // final_norm

    public ForwardPass(ModelConfig config, IReadOnlyDictionary<string, CheckpointTensor> tensors, bool copy)
    {
        _config = config;
        if (config.HasInputProjection)
            _inputProjection = new DenseLayer(tensors[CheckpointNames.InputKernel], tensors[CheckpointNames.InputBias], GemmEpilogue.Bias, copy);
        _blocks = new DualChunkBlock[config.NumLayers];
        for (int l = 0; l < _blocks.Length; l++)
            _blocks[l] = new DualChunkBlock(config, tensors, l + 1, copy);
        _finalNorm = new LayerNormLayer(tensors[CheckpointNames.FinalGamma], tensors[CheckpointNames.FinalBeta], copy);
    }

    /// <summary>The block of layer <paramref name="l"/> (0-based), for the breakdown benchmark.</summary>
    internal ref readonly DualChunkBlock Block(int l) => ref _blocks[l];

    /// <summary>input_projection, or null when E == H (the breakdown benchmark).</summary>
    internal DenseLayer? InputProjection => _inputProjection;

    /// <summary>final_norm (the breakdown benchmark).</summary>
    internal LayerNormLayer FinalNorm => _finalNorm;

    /// <summary>
    /// input [B, N, E] → output ([B, H], or [B, N, H] for <see cref="OutputMode.All"/>) on the workspace's scheduler.
    /// The token is checked between layers. With <paramref name="locate"/> the residual stream is checked after each
    /// stage, and the first stage whose output is not finite is returned (0 the input projection, l the block
    /// dual_chunk_block_l, L + 1 the final norm); otherwise nothing is checked and the result is −1.
    /// </summary>
    public int Run(ReadOnlySpan<float> input, int batch, int seqLen, Span<float> output, OutputMode mode, Workspace ws, bool locate, CancellationToken ct)
    {
        var ex = new Split(ws.Scheduler);
        int e = _config.EmbedDim, h = _config.HiddenSize, c = _config.ChunkSize, rows = batch * seqLen, chunkRows = rows / c;
        Span<float> x = ws.X[..(rows * h)];                                  // [B·N, H]   residual stream
        Span<float> normed = ws.Normed[..(rows * h)];                        // [B·N, H]   layer-norm output
        Span<float> chunkMeans = ws.ChunkMeans[..(chunkRows * h)];           // [B·NC, H]  chunk means of normed
        Span<float> summaries = ws.Summaries[..(chunkRows * 3 * h)];         // [B·NC, 3H] q̄ | k̄ | v̄
        Span<float> inter = ws.Inter[..(chunkRows * h)];                     // [B·NC, H]  inter-chunk attention

        // input_projection: x = input · W_in + b_in, or the input itself when E == H.
        if (_inputProjection is { } projection)
            ex.Dense(projection, input, rows, e, x, h, 0, h);
        else
            input.CopyTo(x);
        if (locate && !AllFinite(x)) return 0;

        // For last_timestep only position N-1 of the last block's output is read: that block needs every chunk's
        // summary, but the queries, keys and values of the last chunk only, and the rest for one row per sequence.
        int fullBlocks = mode == OutputMode.LastTimestep ? _blocks.Length - 1 : _blocks.Length;
        for (int l = 0; l < fullBlocks; l++)
        {
            ct.ThrowIfCancellationRequested();
            ref readonly var block = ref _blocks[l];
            ws.Scheduler.Summaries(block, x, normed, chunkMeans, summaries, inter, batch, seqLen, lastChunkOnly: false);
            ws.Scheduler.RowGroups(block, x, normed, inter, rows);         // attention, out-proj, FFN per row group
            if (locate && !AllFinite(x)) return l + 1;
        }
        ct.ThrowIfCancellationRequested();

        switch (mode)
        {
            case OutputMode.All:                                             // output [B, N, H]
                ex.LayerNorm(_finalNorm, x, rows, output);
                break;
            case OutputMode.MeanPool:                                        // output [B, H]
                ex.LayerNorm(_finalNorm, x, rows, normed);
                RowMean.Run(normed, rows, h, h, seqLen, output, h);
                break;
            default:                                                         // output [B, H]: position N-1
            {
                ref readonly var block = ref _blocks[^1];
                ws.Scheduler.Summaries(block, x, normed, chunkMeans, summaries, inter, batch, seqLen, lastChunkOnly: true);
                Span<float> last = ws.Last[..(batch * h)];                   // [B, H]  residual at position N-1
                ws.Scheduler.LastTimestep(this, block, x, normed, inter, ws.LastAttn[..(batch * h)], last, ws.LastNormed[..(batch * h)], output, batch, seqLen);
                if (locate && !AllFinite(last)) return _blocks.Length;
                break;
            }
        }
        return locate && !AllFinite(output) ? _blocks.Length + 1 : -1;
    }

    /// <summary>
    /// last_timestep after the last block's summaries, for batch elements [<paramref name="first"/>, <paramref name="first"/>
    /// + <paramref name="count"/>): the attention of each element's last chunk (keys and values, and the query of its
    /// last row only) into <paramref name="lastAttn"/>, then the output projection, FFN and final norm of those rows.
    /// Each element needs only its own rows, so any range can be computed alone.
    /// </summary>
    public void LastTimestepRows<TExec>(TExec ex, in DualChunkBlock block, ReadOnlySpan<float> x, ReadOnlySpan<float> normed, ReadOnlySpan<float> inter,
        Span<float> qkv, Span<float> attn, Span<float> lastAttn, Span<float> last, Span<float> lastNormed, Span<float> output,
        int first, int count, int seqLen) where TExec : struct, IExecutor
    {
        int h = _config.HiddenSize, c = _config.ChunkSize, nc = seqLen / c;
        qkv = qkv[..(c * 3 * h)];                                            // [C, 3H] the last chunk of one sequence
        attn = attn[..(c * h)];                                              // [C, H]  its attention (row C-1 written)
        for (int b = first; b < first + count; b++)
        {
            int chunkRow = b * seqLen + seqLen - c;                          // first row of b's last chunk
            block.Attention(ex, normed.Slice(chunkRow * h, c * h), c, qkv, inter.Slice((b * nc + nc - 1) * h, h), attn, lastRowOnly: true);
            attn.Slice((c - 1) * h, h).CopyTo(lastAttn.Slice(b * h, h));
            x.Slice((chunkRow + c - 1) * h, h).CopyTo(last.Slice(b * h, h));
        }
        var rows = last.Slice(first * h, count * h);                         // [count, H]
        block.OutputProjection(ex, lastAttn.Slice(first * h, count * h), count, rows);
        ex.FeedForward(block, rows, lastNormed.Slice(first * h, count * h), count);
        ex.LayerNorm(_finalNorm, rows, count, output.Slice(first * h, count * h));
    }

    private static bool AllFinite(ReadOnlySpan<float> values) => NonFinite.IndexOf(values) < 0;
}
