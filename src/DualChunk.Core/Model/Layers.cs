using System.IO.Hashing;
using System.Runtime.InteropServices;
using DualChunk.Kernels;

namespace DualChunk.Core;

// The model's layers, one struct each (docs/model.md). They hold immutable weights and know which kernel computes
// them; DualChunkBlock<TNorm, TFeedForward> composes them into the boxes of a block and ForwardPass wires the boxes together.
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
    public DenseLayer(CheckpointTensor kernel, CheckpointTensor bias, GemmEpilogue epilogue, bool copy)
    {
        Weight = PackedMatrix.Pack(kernel.Data.Span, kernel.Shape[0], kernel.Shape[1]);
        Bias = copy ? bias.Data.ToArray() : bias.Data;
        Epilogue = epilogue;
    }

    public int In => Weight.K;
    public int Out => Weight.N;

    /// <summary>
    /// output[r, start:start+count] (op)= input[r, 0:In] · W + b for r in [0, rows); <paramref name="start"/> must be a
    /// column the kernel can start a range at (<see cref="PackedMatrix.CanStartColumnRange"/>), 0 always is.
    /// </summary>
    public void Apply(ReadOnlySpan<float> input, int rows, int inputStride, Span<float> output, int outputStride, int start, int count)
    {
        long t0 = BoxTrace.Start();
        Gemm.Run(input, rows, inputStride, Weight, Bias.Span, output, outputStride, Epilogue, start, count);
        if (BoxTrace.On) BoxTrace.End(t0, TraceName(Epilogue), rows, In, count, 2L * rows * In * count);
    }

    private static string TraceName(GemmEpilogue epilogue) => epilogue switch
    {
        GemmEpilogue.BiasGelu => "dense + GELU",
        GemmEpilogue.BiasAccumulate => "dense + residual",
        GemmEpilogue.BiasSiluGate => "dense + SiLU gate",
        _ => "dense",
    };
}

/// <summary>
/// The norm before a block's attention and FFN: <see cref="LayerNormLayer"/> (DualChunk.build) or
/// <see cref="RmsNormLayer"/> (DecoderOnly). The block is generic over it, so each model's pass is compiled for its norm.
/// </summary>
internal interface INormLayer
{
    /// <summary>H, the row width.</summary>
    int Width { get; }

    /// <summary>y = norm(x) over <paramref name="rows"/> rows; <paramref name="y"/> may alias <paramref name="x"/>.</summary>
    void Apply(ReadOnlySpan<float> x, int rows, Span<float> y);

    /// <summary>Appends the parameters to a model fingerprint (stream snapshots).</summary>
    void AppendTo(XxHash64 hash);
}

/// <summary>Axon layer norm with its variance clip (LayerNorm kernel). γ and β are used in place unless copied.</summary>
internal readonly struct LayerNormLayer(CheckpointTensor gamma, CheckpointTensor beta, bool copy) : INormLayer
{
    public readonly ReadOnlyMemory<float> Gamma = copy ? gamma.Data.ToArray() : gamma.Data; // [H]
    public readonly ReadOnlyMemory<float> Beta = copy ? beta.Data.ToArray() : beta.Data;    // [H]

    public int Width => Gamma.Length;

    public void Apply(ReadOnlySpan<float> x, int rows, Span<float> y)
    {
        long t0 = BoxTrace.Start();
        LayerNorm.Run(x, rows, Gamma.Length, Gamma.Span, Beta.Span, y);
        if (BoxTrace.On) BoxTrace.End(t0, "layer norm", rows, Gamma.Length, Gamma.Length, 0);
    }

    public void AppendTo(XxHash64 hash)
    {
        hash.Append(MemoryMarshal.AsBytes(Gamma.Span));
        hash.Append(MemoryMarshal.AsBytes(Beta.Span));
    }
}

/// <summary>Edifice's RMSNorm, ε = 1e-6, scale γ and no β (RmsNorm kernel). γ is used in place unless copied.</summary>
internal readonly struct RmsNormLayer(CheckpointTensor gamma, bool copy) : INormLayer
{
    public readonly ReadOnlyMemory<float> Gamma = copy ? gamma.Data.ToArray() : gamma.Data; // [H]

    public int Width => Gamma.Length;

    public void Apply(ReadOnlySpan<float> x, int rows, Span<float> y)
    {
        long t0 = BoxTrace.Start();
        RmsNorm.Run(x, rows, Gamma.Length, Gamma.Span, y);
        if (BoxTrace.On) BoxTrace.End(t0, "RMS norm", rows, Gamma.Length, Gamma.Length, 0);
    }

    public void AppendTo(XxHash64 hash) => hash.Append(MemoryMarshal.AsBytes(Gamma.Span));
}

/// <summary>
/// A block's feed-forward network after its norm: <see cref="GeluFeedForward"/> (DualChunk.build) or
/// <see cref="SwiGluFeedForward"/> (DecoderOnly). Both add their output to the residual stream in the last GEMM's epilogue.
/// </summary>
internal interface IFeedForward
{
    /// <summary>F, the inner width.</summary>
    int Inner { get; }

    /// <summary>
    /// x += FFN(normed) on <paramref name="rows"/> rows (at most <see cref="WorkspacePlan.FfnRowBlock"/>), with
    /// <paramref name="hidden"/> [rows, F] for the inner activations.
    /// </summary>
    void Apply<TExec>(TExec ex, ReadOnlySpan<float> normed, int rows, Span<float> hidden, Span<float> x) where TExec : struct, IExecutor;

    /// <summary>Appends the biases to a model fingerprint (stream snapshots).</summary>
    void AppendTo(XxHash64 hash);
}

/// <summary>DualChunk.build's FFN: GELU(h · W_up + b_up) · W_down + b_down, GELU and the residual add fused.</summary>
internal readonly struct GeluFeedForward(DenseLayer up, DenseLayer down) : IFeedForward
{
    public readonly DenseLayer Up = up;          // *_ffn_up     [H, F], GELU fused
    public readonly DenseLayer Down = down;      // *_ffn_down   [F, H], residual add fused

    public int Inner => Up.Out;

    public void Apply<TExec>(TExec ex, ReadOnlySpan<float> normed, int rows, Span<float> hidden, Span<float> x) where TExec : struct, IExecutor
    {
        int h = Up.In, f = Up.Out;
        ex.Dense(Up, normed, rows, h, hidden, f, 0, f);                           // GELU(h · W_up + b_up)
        ex.Dense(Down, hidden, rows, f, x, h, 0, h);                              // x += · W_down + b_down
    }

    public void AppendTo(XxHash64 hash)
    {
        hash.Append(MemoryMarshal.AsBytes(Up.Bias.Span));
        hash.Append(MemoryMarshal.AsBytes(Down.Bias.Span));
    }
}

/// <summary>
/// The decoder's SwiGLU FFN: (SiLU(h · W_gate + b_gate) ⊙ (h · W_up + b_up)) · W_down + b_down. The gate GEMM writes
/// its pre-activation into the hidden rows; the up GEMM's two-operand epilogue turns them into SiLU(gate) ⊙ up in
/// place; the down GEMM adds to the residual stream.
/// </summary>
internal readonly struct SwiGluFeedForward(DenseLayer gate, DenseLayer up, DenseLayer down) : IFeedForward
{
    public readonly DenseLayer Gate = gate;      // *_ffn_gate   [H, F]
    public readonly DenseLayer Up = up;          // *_ffn_up     [H, F], SiLU(gate) ⊙ up fused
    public readonly DenseLayer Down = down;      // *_ffn_down   [F, H], residual add fused

    public int Inner => Up.Out;

    public void Apply<TExec>(TExec ex, ReadOnlySpan<float> normed, int rows, Span<float> hidden, Span<float> x) where TExec : struct, IExecutor
    {
        int h = Up.In, f = Up.Out;
        ex.Dense(Gate, normed, rows, h, hidden, f, 0, f);                         // g = h · W_gate + b_gate
        ex.Dense(Up, normed, rows, h, hidden, f, 0, f);                           // SiLU(g) ⊙ (h · W_up + b_up)
        ex.Dense(Down, hidden, rows, f, x, h, 0, h);                              // x += · W_down + b_down
    }

    public void AppendTo(XxHash64 hash)
    {
        hash.Append(MemoryMarshal.AsBytes(Gate.Bias.Span));
        hash.Append(MemoryMarshal.AsBytes(Up.Bias.Span));
        hash.Append(MemoryMarshal.AsBytes(Down.Bias.Span));
    }
}

/// <summary>
/// g = sigmoid(gate) per (head, lane), computed once at load. The blend
/// o = g ⊙ o_inter + (1 − g) ⊙ o_intra itself is fused into IntraChunkAttention's store.
/// </summary>
internal readonly struct GateBlend
{
    public readonly float[] Sigmoid; // [NH, D]

    public GateBlend(CheckpointTensor gate)
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

    public int Hidden => _h;

    public int ChunkSize => _c;

    /// <summary>chunkMeans rows [first, first + count) (of B·NC) = means of the C rows of each chunk of h [B·N, H].</summary>
    public void ChunkMeans(ReadOnlySpan<float> h, int first, int count, Span<float> chunkMeans)
    {
        long t0 = BoxTrace.Start();
        RowMean.Run(h[(first * _c * _h)..], count * _c, _h, _h, _c, chunkMeans[(first * _h)..], _h);
        if (BoxTrace.On) BoxTrace.End(t0, "chunk means", count * _c, _h, count, 0);
    }

    /// <summary>
    /// One (batch element, head) item: causal attention over that element's chunk summaries [NC, 3H]. A sequence of
    /// one chunk attends to one key: its softmax weight is exp(0) / (1 + 1e-8) = 1 exactly in float32 and 1·v̄ = v̄, so
    /// the output is v̄ bit for bit (for finite scores) and is copied; q̄ and k̄ are not read (nor computed:
    /// the block's ChunkSummaries with valuesOnly).
    /// </summary>
    public void ApplyHead(ReadOnlySpan<float> summaries, int seqLen, Span<float> inter, Span<float> scratch, bool lastChunkOnly, int b, int head)
    {
        int h3 = 3 * _h, chunks = seqLen / _c, col = head * _d;
        var s = summaries.Slice(b * chunks * h3, chunks * h3);       // [NC, 3H]
        var o = inter.Slice(b * chunks * _h, chunks * _h);           // [NC, H]
        if (chunks == 1)
        {
            s.Slice(2 * _h + col, _d).CopyTo(o[col..]);
            return;
        }
        long t0 = BoxTrace.Start();
        CausalAttention.Run(s[col..], h3, s[(_h + col)..], h3, s[(2 * _h + col)..], h3,
            chunks, _d, _scale, o[col..], _h, scratch, default, default, lastChunkOnly ? chunks - 1 : 0);
        if (BoxTrace.On)
            BoxTrace.End(t0, lastChunkOnly ? "inter attention, last row (head)" : "inter attention (head)", chunks, _d, chunks,
                lastChunkOnly ? 4L * chunks * _d : 2L * chunks * chunks * _d);
    }

    /// <summary>Floats of scratch <see cref="ApplyLastChunk"/> needs over up to <paramref name="chunks"/> chunks.</summary>
    public static int LastChunkScratchFloats(int chunks, int headDim) => checked(CausalAttention.ScratchFloats(chunks, headDim) + 2 * chunks * headDim);

    /// <summary>
    /// One (batch element, head) item of a stream: the last row of <see cref="ApplyHead"/> with lastChunkOnly, i.e. the
    /// attention of chunk <c>chunks − 1</c>'s query summary <paramref name="q"/> [H] over the key and value summaries
    /// <paramref name="kv"/> of chunks 0..chunks−1 (row i at i·<paramref name="kvStride"/>: k̄ [H] | v̄ [H]), into
    /// <paramref name="inter"/> [H] (this head's D columns). The kernel's row does not depend on later chunks, so this
    /// is bitwise the row a whole-sequence pass computes.
    /// </summary>
    public void ApplyLastChunk(ReadOnlySpan<float> q, ReadOnlySpan<float> kv, int kvStride, int chunks, Span<float> inter, Span<float> scratch, int head)
    {
        int col = head * _d, last = chunks - 1, attention = CausalAttention.ScratchFloats(chunks, _d);
        var qRows = scratch.Slice(attention, chunks * _d);                    // [chunks, D]: only row chunks−1 is read
        var outRows = scratch.Slice(attention + chunks * _d, chunks * _d);    // [chunks, D]: only row chunks−1 is written
        q.Slice(col, _d).CopyTo(qRows[(last * _d)..]);
        long t0 = BoxTrace.Start();
        CausalAttention.Run(qRows, _d, kv[col..], kvStride, kv[(_h + col)..], kvStride,
            chunks, _d, _scale, outRows, _d, scratch[..attention], default, default, last);
        if (BoxTrace.On) BoxTrace.End(t0, "inter attention, last row (head)", chunks, _d, chunks, 4L * chunks * _d);
        outRows.Slice(last * _d, _d).CopyTo(inter.Slice(col, _d));
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

    /// <summary>
    /// One (chunk, head) item over consecutive chunks: <paramref name="qkv"/> [chunks·C, 3H], <paramref name="inter"/>
    /// their [chunks, H] inter-chunk rows, <paramref name="output"/> [chunks·C, H] (only each chunk's row C−1 when
    /// <paramref name="lastRowOnly"/>).
    /// </summary>
    public void ApplyChunkHead(ReadOnlySpan<float> qkv, ReadOnlySpan<float> inter, in GateBlend gate, Span<float> output, Span<float> scratch, bool lastRowOnly, int chunk, int head)
    {
        int h3 = 3 * _h, col = head * _d;
        var rows = qkv.Slice(chunk * _c * h3, _c * h3);             // [C, 3H]
        var o = output.Slice(chunk * _c * _h, _c * _h);             // [C, H]
        var interRow = inter.Slice(chunk * _h, _h);                 // [H]
        long t0 = BoxTrace.Start();
        CausalAttention.Run(rows[col..], h3, rows[(_h + col)..], h3, rows[(2 * _h + col)..], h3,
            _c, _d, _scale, o[col..], _h, scratch, interRow.Slice(col, _d), gate.ForHead(head, _d), lastRowOnly ? _c - 1 : 0);
        if (BoxTrace.On)
            BoxTrace.End(t0, lastRowOnly ? "intra attention, last row (head)" : "intra attention (chunk, head)", _c, _d, _c,
                lastRowOnly ? 4L * _c * _d : 2L * _c * _c * _d);
    }
}
