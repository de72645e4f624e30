using System.Numerics.Tensors;

namespace DualChunk.Core;

// The Tensor<float> / TensorSpan<float> overloads of Run: shape adapters over the span overload.
public sealed partial class DualChunkModel
{
    /// <summary>
    /// Runs the model on a dense tensor: <paramref name="input"/> [B, N, E] (or [N, E] for one sequence) into
    /// <paramref name="output"/>, dense, shaped [B, H] / [B, N, H] (or [H] / [N, H] for an input without a batch
    /// dimension). Same pooling, cancellation and errors as the span overload; allocation-free.
    /// </summary>
    /// <exception cref="ArgumentException">A tensor is not dense, has the wrong rank or lengths, or the input holds NaN/∞.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    /// <exception cref="ObjectDisposedException">The model was disposed.</exception>
    public void Run(ReadOnlyTensorSpan<float> input, TensorSpan<float> output, OutputMode mode = OutputMode.LastTimestep, CancellationToken cancellationToken = default)
    {
        var (batch, seqLen, batched) = InputShape(input.Lengths);
        Span<nint> expected = stackalloc nint[3];
        int rank = OutputShape(batch, seqLen, batched, mode, expected);
        if (!output.Lengths.SequenceEqual(expected[..rank]))
            throw new ArgumentException($"Output has shape [{string.Join(", ", output.Lengths.ToArray())}]; mode {mode} needs [{string.Join(", ", expected[..rank].ToArray())}].", nameof(output));
        Span<nint> zeros = stackalloc nint[3];
        zeros.Clear();
        if (!input.IsDense || !input.TryGetSpan(zeros[..input.Rank], checked((int)input.FlattenedLength), out ReadOnlySpan<float> inputSpan))
            throw new ArgumentException("The input tensor must be dense (contiguous, row-major); copy it with ToDenseTensor() first.", nameof(input));
        if (!output.IsDense || !output.TryGetSpan(zeros[..output.Rank], checked((int)output.FlattenedLength), out Span<float> outputSpan))
            throw new ArgumentException("The output tensor must be dense (contiguous, row-major).", nameof(output));
        Run(inputSpan, batch, seqLen, outputSpan, mode, cancellationToken);
    }

    /// <summary>
    /// Runs the model on a dense tensor [B, N, E] (or [N, E]) and returns a new tensor [B, H] / [B, N, H]
    /// (or [H] / [N, H]); allocates the result.
    /// </summary>
    /// <exception cref="ArgumentException">The tensor is not dense, has the wrong rank or lengths, or holds NaN/∞.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    /// <exception cref="ObjectDisposedException">The model was disposed.</exception>
    public Tensor<float> Run(Tensor<float> input, OutputMode mode = OutputMode.LastTimestep, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(input);
        var (batch, seqLen, batched) = InputShape(input.Lengths);
        Span<nint> lengths = stackalloc nint[3];
        int rank = OutputShape(batch, seqLen, batched, mode, lengths);
        var output = System.Numerics.Tensors.Tensor.Create(new float[OutputLength(batch, seqLen, mode)], lengths[..rank]);
        Run(input.AsReadOnlyTensorSpan(), output.AsTensorSpan(), mode, cancellationToken);
        return output;
    }

    private (int Batch, int SeqLen, bool Batched) InputShape(ReadOnlySpan<nint> lengths)
    {
        if (lengths.Length is 2 or 3 && lengths[^1] != Config.EmbedDim)
            throw new ArgumentException($"The input tensor's last dimension is {lengths[^1]}; the model's embed size E is {Config.EmbedDim}.", nameof(lengths));
        if (lengths.Length == 3)
            return (checked((int)lengths[0]), checked((int)lengths[1]), true);
        if (lengths.Length == 2)
            return (1, checked((int)lengths[0]), false);
        throw new ArgumentException($"The input tensor has rank {lengths.Length}; it must be [B, N, E] or [N, E].", nameof(lengths));
    }

    private int OutputShape(int batch, int seqLen, bool batched, OutputMode mode, Span<nint> lengths)
    {
        int rank = 0;
        if (batched) lengths[rank++] = batch;
        if (mode == OutputMode.All) lengths[rank++] = seqLen;
        lengths[rank++] = Config.HiddenSize;
        return rank;
    }
}
