using DualChunk.Kernels;

namespace DualChunk.Core;

// The boxes of SPEC.md's diagram, one struct each. They hold immutable weights and know which
// kernel computes them; the forward pass in DualChunkModel.Forward wires them together.
// Letters: B batch, N positions, E embed, H hidden, NH heads, D head width, C chunk, NC = N / C, F FFN width.

/// <summary>x · W + b with W packed for the GEMM micro-kernel, and a fused epilogue.</summary>
internal readonly struct DenseLayer
{
    public readonly PackedMatrix Weight;        // [in, out], packed (a copy: the kernel's panel layout)
    public readonly ReadOnlyMemory<float> Bias; // [out], in place (e.g. in a mapped .dcw) unless copied
    public readonly GemmEpilogue Epilogue;

    /// <param name="kernel">W [in, out].</param>
    /// <param name="bias">b [out].</param>
    /// <param name="epilogue">What the GEMM does before the store.</param>
    /// <param name="copy">Copy the bias (the caller may still mutate the tensor) instead of using it in place.</param>
    public DenseLayer(Tensor kernel, Tensor bias, GemmEpilogue epilogue, bool copy)
    {
        Weight = PackedMatrix.Pack(kernel.Data.Span, kernel.Shape[0], kernel.Shape[1]);
        Bias = copy ? bias.Data.ToArray() : bias.Data;
        Epilogue = epilogue;
    }

    public int In => Weight.K;
    public int Out => Weight.N;

    /// <summary>output[r, 0:Out] (op)= input[r, 0:In] · W + b for r in [0, rows).</summary>
    public void Apply(ReadOnlySpan<float> input, int rows, int inputStride, Span<float> output, int outputStride)
        => Gemm.Run(input, rows, inputStride, Weight, Bias.Span, output, outputStride, Epilogue);

    /// <summary>Only output columns [start, start + count); start is a multiple of PackedMatrix.PanelWidth.</summary>
    public void ApplyColumns(ReadOnlySpan<float> input, int rows, int inputStride, Span<float> output, int outputStride, int start, int count)
        => Gemm.Run(input, rows, inputStride, Weight, Bias.Span, output, outputStride, Epilogue, start, count);
}

/// <summary>Axon layer norm with its variance clip (LayerNorm kernel). γ and β are used in place unless copied.</summary>
internal readonly struct LayerNormLayer(Tensor gamma, Tensor beta, bool copy)
{
    public readonly ReadOnlyMemory<float> Gamma = copy ? gamma.Data.ToArray() : gamma.Data; // [H]
    public readonly ReadOnlyMemory<float> Beta = copy ? beta.Data.ToArray() : beta.Data;    // [H]

    public int Width => Gamma.Length;

    public void Apply(ReadOnlySpan<float> x, int rows, Span<float> y)
        => LayerNorm.Run(x, rows, Gamma.Length, Gamma.Span, Beta.Span, y);
}

/// <summary>
/// g = sigmoid(gate) per (head, lane), computed once at load. The blend
/// o = g ⊙ o_inter + (1 − g) ⊙ o_intra itself is fused into IntraChunkAttention's store.
/// </summary>
internal readonly struct GateBlend
{
    public readonly float[] Sigmoid; // [NH, D]

    public GateBlend(Tensor gate)
    {
        var raw = gate.Data.Span;
        Sigmoid = new float[raw.Length];
        for (int i = 0; i < raw.Length; i++)
            Sigmoid[i] = (float)(1.0 / (1.0 + Math.Exp(-raw[i])));
    }

    public ReadOnlySpan<float> ForHead(int head, int d) => Sigmoid.AsSpan(head * d, d);
}

/// <summary>
/// Causal attention over mean-pooled chunk summaries q̄, k̄, v̄. The summary of chunk i averages all C positions of
/// chunk i (Edifice's quirk: early positions see their own chunk's later positions through this branch).
/// </summary>
/// <remarks>
/// Edifice takes the means of the projected rows, mean(h·W + b). The mean commutes with the affine map, so the
/// forward pass projects the chunk means of h instead: h̄·W + b costs a [B·NC, H]·[H, 3H] GEMM in place of
/// reading [B·N, 3H], and it lets every group of chunks be computed on its own. The two differ only in rounding
/// (the means are summed in double); the golden and float64 reference tests hold the result to the same bounds.
/// </remarks>
internal readonly struct InterChunkAttention(ModelConfig config)
{
    private readonly int _h = config.HiddenSize, _d = config.HeadDim, _heads = config.NumHeads, _c = config.ChunkSize;
    private readonly float _scale = 1f / MathF.Sqrt(config.HeadDim);

    public int Heads => _heads;

    /// <summary>chunkMeans rows [first, first + count) (of B·NC) = means of the C rows of each chunk of h [B·N, H].</summary>
    public void ChunkMeans(ReadOnlySpan<float> h, int first, int count, Span<float> chunkMeans)
        => RowMean.Run(h[(first * _c * _h)..], count * _c, _h, _h, _c, chunkMeans[(first * _h)..], _h);

    /// <summary>One (batch element, head) item: causal attention over that element's chunk summaries [NC, 3H].</summary>
    public void ApplyHead(ReadOnlySpan<float> summaries, int seqLen, Span<float> inter, Span<float> scratch, bool lastChunkOnly, int b, int head)
    {
        int h3 = 3 * _h, chunks = seqLen / _c, col = head * _d;
        var s = summaries.Slice(b * chunks * h3, chunks * h3);       // [NC, 3H]
        var o = inter.Slice(b * chunks * _h, chunks * _h);           // [NC, H]
        CausalAttention.Run(s[col..], h3, s[(_h + col)..], h3, s[(2 * _h + col)..], h3,
            chunks, _d, _scale, o[col..], _h, scratch, default, default, lastChunkOnly ? chunks - 1 : 0);
    }
}

/// <summary>
/// Causal softmax attention inside each chunk of C positions, per (chunk, head), with the
/// gate blend against the chunk's inter-chunk row fused into the store.
/// </summary>
internal readonly struct IntraChunkAttention(ModelConfig config)
{
    private readonly int _h = config.HiddenSize, _d = config.HeadDim, _heads = config.NumHeads, _c = config.ChunkSize;
    private readonly float _scale = 1f / MathF.Sqrt(config.HeadDim);

    public int Heads => _heads;

    public int ChunkSize => _c;

    /// <summary>
    /// One (chunk, head) item: <paramref name="qkv"/> is the chunk's [C, 3H] rows, <paramref name="interRow"/> its
    /// [H] inter-chunk row, <paramref name="output"/> its [C, H] rows (only row C−1 when <paramref name="lastRowOnly"/>).
    /// </summary>
    public void ApplyHead(ReadOnlySpan<float> qkv, ReadOnlySpan<float> interRow, in GateBlend gate, Span<float> output, Span<float> scratch, bool lastRowOnly, int head)
    {
        int h3 = 3 * _h, col = head * _d;
        var rows = qkv[..(_c * h3)];                                // [C, 3H]
        var o = output[..(_c * _h)];                                // [C, H]
        CausalAttention.Run(rows[col..], h3, rows[(_h + col)..], h3, rows[(2 * _h + col)..], h3,
            _c, _d, _scale, o[col..], _h, scratch, interRow.Slice(col, _d), gate.ForHead(head, _d), lastRowOnly ? _c - 1 : 0);
    }
}

/// <summary>One pre-norm block "dual_chunk_block_&lt;l&gt;".</summary>
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

    public DualChunkBlock(ModelConfig config, IReadOnlyDictionary<string, Tensor> t, int l, bool copy)
    {
        AttnNorm = new LayerNormLayer(t[CheckpointNames.AttnNormGamma(l)], t[CheckpointNames.AttnNormBeta(l)], copy);
        Qkv = new DenseLayer(t[CheckpointNames.QkvKernel(l)], t[CheckpointNames.QkvBias(l)], GemmEpilogue.Bias, copy);
        Inter = new InterChunkAttention(config);
        Intra = new IntraChunkAttention(config);
        Gate = new GateBlend(t[CheckpointNames.Gate(l)]);
        AttnOut = new DenseLayer(t[CheckpointNames.OutKernel(l)], t[CheckpointNames.OutBias(l)], GemmEpilogue.BiasAccumulate, copy);
        FfnNorm = new LayerNormLayer(t[CheckpointNames.FfnNormGamma(l)], t[CheckpointNames.FfnNormBeta(l)], copy);
        FfnUp = new DenseLayer(t[CheckpointNames.UpKernel(l)], t[CheckpointNames.UpBias(l)], GemmEpilogue.BiasGelu, copy);
        FfnDown = new DenseLayer(t[CheckpointNames.DownKernel(l)], t[CheckpointNames.DownBias(l)], GemmEpilogue.BiasAccumulate, copy);
    }
}
