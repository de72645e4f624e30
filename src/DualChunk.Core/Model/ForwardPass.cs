using System.IO.Hashing;
using DualChunk.Kernels;

namespace DualChunk.Core;

/// <summary>
/// The network's weights, immutable and shared by every call, and the forward pass over them (docs/model.md), for
/// one architecture: <see cref="Create"/> picks the block type from <see cref="ModelConfig.Architecture"/>.
/// </summary>
internal abstract class ForwardPass
{
    /// <summary>The pass of <paramref name="config"/>'s architecture over <paramref name="tensors"/> (validated by the caller).</summary>
    public static ForwardPass Create(ModelConfig config, IReadOnlyDictionary<string, CheckpointTensor> tensors, bool copy) => config.Architecture switch
    {
        ModelArchitecture.DecoderOnly => ForwardPass<RmsNormLayer, SwiGluFeedForward>.Build(config, tensors, copy, Blocks.Decoder),
        ModelArchitecture.DualChunk => ForwardPass<LayerNormLayer, GeluFeedForward>.Build(config, tensors, copy, Blocks.DualChunk),
        _ => throw new ArgumentOutOfRangeException(nameof(config), config.Architecture, "Unknown architecture."),
    };

    /// <summary>
    /// input [B, N, E] → output ([B, H], or [B, N, H] for <see cref="OutputMode.All"/>) on the workspace's scheduler.
    /// The token is checked between layers. With <paramref name="locate"/> the residual stream is checked after each
    /// stage, and the first stage whose output is not finite is returned; otherwise nothing is checked and the result
    /// is <see cref="PassStage.None"/>.
    /// </summary>
    public abstract PassStage Run(ReadOnlySpan<float> input, int batch, int seqLen, Span<float> output, OutputMode mode, Workspace ws, bool locate, CancellationToken ct);

    /// <summary>One appended chunk of <paramref name="stream"/> (<see cref="StreamChunk{TNorm, TFeedForward}"/>) on a rented workspace; the result as for <see cref="Run"/>.</summary>
    public abstract PassStage RunStream(DualChunkStream stream, ReadOnlySpan<float> input, Span<float> output, OutputMode mode, Workspace ws, bool locate, CancellationToken ct);

    /// <summary>Appends every bias, norm parameter and gate to <paramref name="hash"/> (the model's fingerprint).</summary>
    public abstract void AppendFingerprint(XxHash64 hash);
}

/// <summary>The forward pass of a model whose blocks are <c>DualChunkBlock&lt;TNorm, TFeedForward&gt;</c>.</summary>
/// <remarks>
/// Dimensions: B batch, N positions (seq_len), E embed, H hidden, NH heads, D = H / NH head width, L layers,
/// C chunk size, NC = N / C chunks per sequence, F FFN width, G rows of a row group (whole chunks).
/// Every buffer is row-major; its shape is in the comment where it is taken from the workspace.
/// </remarks>
internal sealed class ForwardPass<TNorm, TFeedForward> : ForwardPass
    where TNorm : struct, INormLayer
    where TFeedForward : struct, IFeedForward
{
    private readonly ModelConfig _config;
    private readonly DenseLayer? _inputProjection;                 // input_projection [E, H], only when E != H
    private readonly DualChunkBlock<TNorm, TFeedForward>[] _blocks; // blocks 1 .. L
    private readonly LayerNormLayer _finalNorm;                    // final_norm (LayerNorm in both architectures)

    private ForwardPass(ModelConfig config, DenseLayer? inputProjection, DualChunkBlock<TNorm, TFeedForward>[] blocks, LayerNormLayer finalNorm)
    {
        _config = config;
        _inputProjection = inputProjection;
        _blocks = blocks;
        _finalNorm = finalNorm;
    }

    public static ForwardPass<TNorm, TFeedForward> Build(ModelConfig config, IReadOnlyDictionary<string, CheckpointTensor> tensors, bool copy,
        Func<ModelConfig, IReadOnlyDictionary<string, CheckpointTensor>, int, bool, DualChunkBlock<TNorm, TFeedForward>> block)
    {
        DenseLayer? inputProjection = config.HasInputProjection
            ? new DenseLayer(tensors[CheckpointNames.InputKernel], tensors[CheckpointNames.InputBias], GemmEpilogue.Bias, copy)
            : null;
        var blocks = new DualChunkBlock<TNorm, TFeedForward>[config.NumLayers];
        for (int l = 0; l < blocks.Length; l++)
            blocks[l] = block(config, tensors, l + 1, copy);
        return new ForwardPass<TNorm, TFeedForward>(config, inputProjection, blocks,
            new LayerNormLayer(tensors[CheckpointNames.FinalGamma], tensors[CheckpointNames.FinalBeta], copy));
    }

    /// <summary>The block of layer <paramref name="l"/> (0-based), for the stream pass and the breakdown benchmark.</summary>
    internal ref readonly DualChunkBlock<TNorm, TFeedForward> Block(int l) => ref _blocks[l];

    /// <summary>input_projection, or null when E == H.</summary>
    internal DenseLayer? InputProjection => _inputProjection;

    /// <summary>final_norm.</summary>
    internal LayerNormLayer FinalNorm => _finalNorm;

    public override PassStage Run(ReadOnlySpan<float> input, int batch, int seqLen, Span<float> output, OutputMode mode, Workspace ws, bool locate, CancellationToken ct)
        => Pass(new WholeSequences<TNorm, TFeedForward>(ws.Scheduler, batch, seqLen, _config.HiddenSize), input, batch, seqLen, output, mode, ws, locate, ct);

    public override PassStage RunStream(DualChunkStream stream, ReadOnlySpan<float> input, Span<float> output, OutputMode mode, Workspace ws, bool locate, CancellationToken ct)
        => Pass(new StreamChunk<TNorm, TFeedForward>(stream, ws.Scheduler), input, stream.Batch, _config.ChunkSize, output, mode, ws, locate, ct);

    /// <summary>
    /// The forward pass over <paramref name="seqLen"/> new positions of each of the B sequences: the whole sequences
    /// (<see cref="WholeSequences{TNorm, TFeedForward}"/>, N positions) or a stream's next chunk
    /// (<see cref="StreamChunk{TNorm, TFeedForward}"/>, N = C). <typeparamref name="TPositions"/> says how a block's
    /// summaries and inter-chunk attention see the earlier chunks, and how the mean pool is taken; all else is this.
    /// </summary>
    private PassStage Pass<TPositions>(TPositions positions, ReadOnlySpan<float> input, int batch, int seqLen, Span<float> output, OutputMode mode,
        Workspace ws, bool locate, CancellationToken ct) where TPositions : struct, IPassPositions<TNorm, TFeedForward>
    {
        var ex = new Split(ws.Scheduler);
        int e = _config.EmbedDim, h = _config.HiddenSize, c = _config.ChunkSize, rows = batch * seqLen, chunkRows = rows / c;
        Span<float> x = ws.X[..(rows * h)];                                  // [B·N, H]   residual stream
        Span<float> normed = ws.Normed[..(rows * h)];                        // [B·N, H]   norm output
        Span<float> chunkMeans = ws.ChunkMeans[..(chunkRows * h)];           // [B·NC, H]  chunk means of normed
        Span<float> summaries = ws.Summaries[..(chunkRows * 3 * h)];         // [B·NC, 3H] q̄ | k̄ | v̄
        Span<float> inter = ws.Inter[..(chunkRows * h)];                     // [B·NC, H]  inter-chunk attention

        // input_projection: x = input · W_in + b_in, or the input itself when E == H.
        if (_inputProjection is { } projection)
            ex.Dense(projection, input, rows, e, x, h, 0, h);
        else
            input.CopyTo(x);
        if (locate && !AllFinite(x)) return Stage(PassStageKind.InputProjection);

        // For last_timestep only position N-1 of the last block's output is read: that block needs every chunk's
        // summary, but the queries, keys and values of the last chunk only, and the rest for one row per sequence.
        int fullBlocks = mode == OutputMode.LastTimestep ? _blocks.Length - 1 : _blocks.Length;
        for (int l = 0; l < fullBlocks; l++)
        {
            ct.ThrowIfCancellationRequested();
            ref readonly var block = ref _blocks[l];
            var deferred = positions.Summaries(block, l, x, normed, chunkMeans, summaries, inter, lastChunkOnly: false);
            ws.Scheduler.RowGroups(block, x, normed, inter, rows, deferred); // attention, out-proj, FFN per row group
            if (locate && !AllFinite(x)) return Stage(PassStageKind.Block, l + 1);
        }
        ct.ThrowIfCancellationRequested();

        switch (mode)
        {
            case OutputMode.All:                                             // output [B, N, H]
                ex.Norm(_finalNorm, x, rows, output);
                positions.MeanPool(output, default);                         // (a stream keeps its mean pool readable)
                break;
            case OutputMode.MeanPool:                                        // output [B, H]
                ex.Norm(_finalNorm, x, rows, normed);
                positions.MeanPool(normed, output);
                break;
            default:                                                         // output [B, H]: position N-1
            {
                ref readonly var block = ref _blocks[^1];
                var deferred = positions.Summaries(block, _blocks.Length - 1, x, normed, chunkMeans, summaries, inter, lastChunkOnly: true);
                Span<float> last = ws.Last[..(batch * h)];                   // [B, H]  residual at position N-1
                ws.Scheduler.LastTimestep(block, _finalNorm, x, normed, inter, ws.LastAttn[..(batch * h)], last, ws.LastNormed[..(batch * h)], output, batch, seqLen, deferred);
                if (locate && !AllFinite(last)) return Stage(PassStageKind.Block, _blocks.Length);
                break;
            }
        }
        return locate && !AllFinite(output) ? Stage(PassStageKind.FinalNorm) : PassStage.None;
    }

    private PassStage Stage(PassStageKind kind, int layer = 0) => new(kind, layer, _config.Architecture);

    public override void AppendFingerprint(XxHash64 hash)
    {
        if (_inputProjection is { } input) hash.Append(System.Runtime.InteropServices.MemoryMarshal.AsBytes(input.Bias.Span));
        foreach (var block in _blocks) block.AppendTo(hash);
        _finalNorm.AppendTo(hash);
    }

    private static bool AllFinite(ReadOnlySpan<float> values) => NonFinite.IndexOf(values) < 0;
}

/// <summary>
/// What differs between the passes of <see cref="ForwardPass{TNorm, TFeedForward}"/>: which chunks a block's summaries
/// and inter-chunk attention see, and over which positions the mean pool runs. Implemented by structs, so the JIT
/// compiles the pass once per kind with the calls inlined.
/// </summary>
internal interface IPassPositions<TNorm, TFeedForward>
    where TNorm : struct, INormLayer
    where TFeedForward : struct, IFeedForward
{
    /// <summary>
    /// Layer <paramref name="layer"/>'s (0-based) normed rows, chunk means, summaries and inter-chunk attention of the
    /// pass's chunks; what the scheduler left undone is returned for the next phase (<see cref="Scheduler.Summaries"/>).
    /// </summary>
    DeferredInter Summaries(in DualChunkBlock<TNorm, TFeedForward> block, int layer, Span<float> x, Span<float> normed, Span<float> chunkMeans,
        Span<float> summaries, Span<float> inter, bool lastChunkOnly);

    /// <summary>
    /// Takes the final-norm rows <paramref name="finalRows"/> [B·N, H] into the mean pool and, unless
    /// <paramref name="mean"/> is empty, writes it there [B, H].
    /// </summary>
    void MeanPool(ReadOnlySpan<float> finalRows, Span<float> mean);
}

/// <summary>Whole sequences of N positions: every chunk is in the call.</summary>
internal readonly struct WholeSequences<TNorm, TFeedForward>(Scheduler scheduler, int batch, int seqLen, int hidden) : IPassPositions<TNorm, TFeedForward>
    where TNorm : struct, INormLayer
    where TFeedForward : struct, IFeedForward
{
    public DeferredInter Summaries(in DualChunkBlock<TNorm, TFeedForward> block, int layer, Span<float> x, Span<float> normed, Span<float> chunkMeans,
        Span<float> summaries, Span<float> inter, bool lastChunkOnly)
        => scheduler.Summaries(block, x, normed, chunkMeans, summaries, inter, batch, seqLen, lastChunkOnly);

    public void MeanPool(ReadOnlySpan<float> finalRows, Span<float> mean)
    {
        if (!mean.IsEmpty) RowMean.Run(finalRows, batch * seqLen, hidden, hidden, seqLen, mean, hidden);
    }
}
