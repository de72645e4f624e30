using System.Collections.Concurrent;
using System.Globalization;
using DualChunk.Kernels;

namespace DualChunk.Core;

/// <summary>
/// An Edifice DualChunk model ready to run: immutable after load and safe to call from any
/// number of threads at once. Per-call state lives in <see cref="Workspace"/>s, pooled here.
/// </summary>
/// <remarks>
/// Dimension letters: B batch, N positions (seq_len), E embed, H hidden, NH heads, D = H / NH,
/// L layers, C chunk size, NC = N / C, F FFN width. Buffers are row-major; a shape comment
/// names each one.
/// </remarks>
public sealed class DualChunkModel
{
    private readonly bool _hasInputProjection;
    private readonly DenseLayer _inputProjection;   // input_projection [E, H], only when E != H
    private readonly DualChunkBlock[] _blocks;      // dual_chunk_block_1 .. _L
    private readonly LayerNormLayer _finalNorm;     // final_norm
    private readonly ConcurrentBag<Workspace> _pool = new();

    private DualChunkModel(ModelConfig config, IReadOnlyDictionary<string, Tensor> tensors)
    {
        Config = config;
        _hasInputProjection = config.HasInputProjection;
        if (_hasInputProjection)
            _inputProjection = new DenseLayer(tensors[CheckpointNames.InputKernel], tensors[CheckpointNames.InputBias], GemmEpilogue.Bias);
        _blocks = new DualChunkBlock[config.NumLayers];
        for (int l = 0; l < _blocks.Length; l++)
            _blocks[l] = new DualChunkBlock(config, tensors, l + 1);
        _finalNorm = new LayerNormLayer(tensors[CheckpointNames.FinalGamma], tensors[CheckpointNames.FinalBeta]);
    }

    /// <summary>The model's dimensions, chunk size included.</summary>
    public ModelConfig Config { get; }

    /// <summary>
    /// Loads an Edifice safetensors checkpoint or a .dcw file (detected by content).
    /// For safetensors <paramref name="chunkSize"/> defaults to Edifice's 64; a .dcw file carries its own,
    /// and a different <paramref name="chunkSize"/> is an error.
    /// </summary>
    /// <exception cref="ModelFormatException">The file is malformed or is not a DualChunk model.</exception>
    public static DualChunkModel Load(string path, int? chunkSize = null)
    {
        var (config, tensors, _) = WeightsLoader.Load(path, chunkSize);
        return new DualChunkModel(config, tensors);
    }

    /// <summary>Builds a model from named tensors, validating them against <paramref name="config"/>.</summary>
    /// <exception cref="ModelFormatException">A tensor is missing, unexpected, mis-shaped or not finite.</exception>
    public static DualChunkModel FromTensors(IReadOnlyDictionary<string, Tensor> tensors, ModelConfig config)
    {
        TensorSetValidator.Validate(tensors, config);
        return new DualChunkModel(config, tensors);
    }

    /// <summary>Floats the output of one call holds: B·H, or B·N·H for <see cref="OutputMode.All"/>.</summary>
    public int OutputLength(int batch, int seqLen, OutputMode mode)
        => checked(mode == OutputMode.All ? batch * seqLen * Config.HiddenSize : batch * Config.HiddenSize);

    /// <summary>A workspace for calls of up to <paramref name="maxBatch"/> × <paramref name="maxSeqLen"/>.</summary>
    public Workspace CreateWorkspace(int maxBatch, int maxSeqLen) => new(Config, maxBatch, maxSeqLen);

    /// <summary>Runs the model on <paramref name="input"/> [B, N, E] and returns a new output array.</summary>
    public float[] Run(float[] input, int batch, int seqLen, OutputMode mode = OutputMode.LastTimestep)
    {
        ArgumentNullException.ThrowIfNull(input);
        ValidateShape(input, batch, seqLen);
        var output = new float[OutputLength(batch, seqLen, mode)];
        Run(input, batch, seqLen, output, mode);
        return output;
    }

    /// <summary>
    /// Runs the model on <paramref name="input"/> [B, N, E] into <paramref name="output"/>
    /// ([B, H], or [B, N, H] for <see cref="OutputMode.All"/>), with a pooled workspace.
    /// </summary>
    /// <exception cref="ArgumentException">A shape does not match, N is not a multiple of C, or the input holds NaN/∞.</exception>
    public void Run(ReadOnlySpan<float> input, int batch, int seqLen, Span<float> output, OutputMode mode = OutputMode.LastTimestep)
    {
        ValidateShape(input, batch, seqLen);
        if (!_pool.TryTake(out var workspace) || !workspace.Fits(batch, seqLen))
            workspace = CreateWorkspace(Math.Max(batch, workspace?.MaxBatch ?? 0), Math.Max(seqLen, workspace?.MaxSeqLen ?? 0));
        try
        {
            Run(input, batch, seqLen, output, mode, workspace);
        }
        finally
        {
            _pool.Add(workspace);
        }
    }

    /// <summary>Runs the model with a caller-owned workspace (one call at a time per workspace).</summary>
    public void Run(ReadOnlySpan<float> input, int batch, int seqLen, Span<float> output, OutputMode mode, Workspace workspace)
    {
        ArgumentNullException.ThrowIfNull(workspace);
        ValidateShape(input, batch, seqLen);
        if (workspace.Config != Config)
            throw new ArgumentException($"The workspace was planned for a model with {workspace.Config}, not {Config}.", nameof(workspace));
        if (!workspace.Fits(batch, seqLen))
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture,
                $"The workspace is planned for batch ≤ {workspace.MaxBatch} and seq_len ≤ {workspace.MaxSeqLen}; this call has batch {batch}, seq_len {seqLen}. Create a larger workspace."), nameof(workspace));
        int expectedOut = OutputLength(batch, seqLen, mode);
        if (output.Length != expectedOut)
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture,
                $"Output has {output.Length} floats; mode {mode} with batch {batch}, seq_len {seqLen}, hidden {Config.HiddenSize} needs {expectedOut}."), nameof(output));
        int bad = NonFinite.IndexOf(input);
        if (bad >= 0)
        {
            int e = Config.EmbedDim;
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture,
                $"Input holds {input[bad]} at [batch {bad / e / seqLen}, position {bad / e % seqLen}, feature {bad % e}]; the model needs finite values (replace NaN/∞ before calling)."), nameof(input));
        }
        Forward(input, batch, seqLen, output, mode, workspace);
    }

    private void ValidateShape(ReadOnlySpan<float> input, int batch, int seqLen)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batch);
        Config.ValidateSequenceLength(seqLen);
        long expected = (long)batch * seqLen * Config.EmbedDim;
        if (input.Length != expected)
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture,
                $"Input has {input.Length} floats; [batch {batch}, seq_len {seqLen}, embed {Config.EmbedDim}] needs {expected}."), nameof(input));
    }

    /// <summary>The forward pass, top to bottom (SPEC.md "Forward pass").</summary>
    private void Forward(ReadOnlySpan<float> input, int batch, int seqLen, Span<float> output, OutputMode mode, Workspace ws)
    {
        int h = Config.HiddenSize, c = Config.ChunkSize, rows = batch * seqLen;
        Span<float> x = ws.X[..(rows * h)];                  // [B·N, H]   residual stream
        Span<float> normed = ws.Normed[..(rows * h)];        // [B·N, H]
        Span<float> qkv = ws.Qkv[..(rows * 3 * h)];          // [B·N, 3H]
        Span<float> attn = ws.Attn[..(rows * h)];            // [B·N, H]

        // input_projection: x = input · W_in + b_in, or the input itself when E == H.
        if (_hasInputProjection)
            _inputProjection.Apply(input, rows, Config.EmbedDim, x, h);
        else
            input.CopyTo(x);

        // For last_timestep only position N-1 of the last block's output is read. That block still
        // needs keys and values at every position (and queries of the last chunk, for its mean),
        // but its attention, output projection and FFN run for one row per batch element.
        int fullBlocks = mode == OutputMode.LastTimestep ? _blocks.Length - 1 : _blocks.Length;
        for (int l = 0; l < fullBlocks; l++)
        {
            ref readonly var block = ref _blocks[l];
            // h = LN(x); qkv = h · W_qkv + b_qkv
            block.AttnNorm.Apply(x, rows, normed);
            block.Qkv.Apply(normed, rows, h, qkv, 3 * h);

            // Inter-chunk first: the intra-chunk store blends with it.
            block.Inter.Apply(qkv, batch, seqLen, ws.Summaries, ws.Inter, ws.Scratch, lastChunkOnly: false);
            block.Intra.Apply(qkv, batch, seqLen, ws.Inter, block.Gate, attn, ws.Scratch, lastRowOnly: false);

            // x += attn · W_out + b_out
            block.AttnOut.Apply(attn, rows, h, x, h);

            // x += GELU(LN(x) · W_up + b_up) · W_down + b_down, a block of rows at a time.
            Ffn(block, x, normed, rows, ws.Ffn);
        }

        switch (mode)
        {
            case OutputMode.All:                                 // [B, N, H]
                _finalNorm.Apply(x, rows, output);
                break;
            case OutputMode.MeanPool:                            // [B, H]
                _finalNorm.Apply(x, rows, normed);
                RowMean.Run(normed, rows, h, h, seqLen, output, h);
                break;
            default:                                             // [B, H]: position N-1 of each batch element
            {
                ref readonly var block = ref _blocks[^1];
                int lastRow = seqLen - 1, stride = seqLen * h;   // row N-1 of batch b is at b·stride + lastRow·h
                block.AttnNorm.Apply(x, rows, normed);
                if (seqLen > c && h % PackedMatrix.PanelWidth == 0)
                {
                    // Keys and values everywhere; queries only in each batch element's last chunk.
                    block.Qkv.ApplyColumns(normed, rows, h, qkv, 3 * h, h, 2 * h);
                    for (int b = 0; b < batch; b++)
                    {
                        int chunkRow = b * seqLen + seqLen - c;
                        block.Qkv.ApplyColumns(normed[(chunkRow * h)..], c, h, qkv[(chunkRow * 3 * h)..], 3 * h, 0, h);
                    }
                }
                else
                {
                    block.Qkv.Apply(normed, rows, h, qkv, 3 * h);
                }
                // The summaries of earlier chunks see stale queries here; only their keys and values are used.
                block.Inter.Apply(qkv, batch, seqLen, ws.Summaries, ws.Inter, ws.Scratch, lastChunkOnly: true);
                block.Intra.Apply(qkv, batch, seqLen, ws.Inter, block.Gate, attn, ws.Scratch, lastRowOnly: true);

                Span<float> last = ws.Last[..(batch * h)];       // [B, H] residual at position N-1
                for (int b = 0; b < batch; b++)
                    x.Slice(b * stride + lastRow * h, h).CopyTo(last.Slice(b * h, h));
                block.AttnOut.Apply(attn[(lastRow * h)..], batch, stride, last, h);
                Ffn(block, last, ws.LastNormed, batch, ws.Ffn);
                _finalNorm.Apply(last, batch, output);
                break;
            }
        }
    }

    /// <summary>x += GELU(LN(x) · W_up + b_up) · W_down + b_down over <paramref name="rows"/> rows of x [rows, H].</summary>
    private void Ffn(in DualChunkBlock block, Span<float> x, Span<float> normed, int rows, Span<float> ffn)
    {
        int h = Config.HiddenSize, f = Config.FfnSize;
        for (int r0 = 0; r0 < rows; r0 += Workspace.FfnRowBlock)
        {
            int n = Math.Min(Workspace.FfnRowBlock, rows - r0);
            var xBlock = x.Slice(r0 * h, n * h);             // [n, H]
            var hBlock = normed.Slice(r0 * h, n * h);        // [n, H]
            block.FfnNorm.Apply(xBlock, n, hBlock);
            block.FfnUp.Apply(hBlock, n, h, ffn, f);         // [n, F], GELU fused
            block.FfnDown.Apply(ffn, n, f, xBlock, h);       // x += ...
        }
    }
}
