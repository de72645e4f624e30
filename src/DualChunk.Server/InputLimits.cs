using DualChunk.Server.Pipeline;
using System.Buffers;
using CommunityToolkit.HighPerformance.Buffers;
using System.Globalization;

namespace DualChunk.Server;

/// <summary>What a request's input must fit: the model's E and C and the configured batch and length limits.</summary>
internal readonly record struct InputLimits(int EmbedDim, int ChunkSize, int MaxBatch, int MaxSeqLen)
{
    /// <summary>Most floats an input may hold; bounds every buffer sized from a request.</summary>
    public long MaxFloats => (long)MaxBatch * MaxSeqLen * EmbedDim;

    public void CheckBatch(long batch)
    {
        if (batch > MaxBatch)
            throw new InferenceException(Inv($"The batch has more than {MaxBatch} sequences (the configured MaxBatch); send at most {MaxBatch} per request."));
    }

    public void CheckSeqLen(long seqLen)
    {
        if (seqLen > MaxSeqLen)
            throw new InferenceException(Inv($"A sequence has more than {MaxSeqLen} positions (the configured MaxSeqLen); send at most {MaxSeqLen}."));
    }

    /// <summary>Checks a complete shape: non-empty, within the limits, N a multiple of C.</summary>
    public void CheckShape(long batch, long seqLen)
    {
        if (batch < 1 || seqLen < 1)
            throw new InferenceException(Inv($"The input is empty (batch {batch}, {seqLen} positions); it needs at least one sequence of {ChunkSize} positions of {EmbedDim} floats."));
        CheckBatch(batch);
        CheckSeqLen(seqLen);
        if (seqLen % ChunkSize != 0)
            throw new InferenceException(Inv($"The sequence length N = {seqLen} is not a multiple of the model's chunk size C = {ChunkSize}; pad or cut the sequences to a multiple of {ChunkSize}."));
    }

    public static string Inv(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}

/// <summary>A request's input, [Batch, SeqLen, E] floats in a pooled buffer: dispose to return it.</summary>
internal sealed class ParsedInput(IMemoryOwner<float> buffer, int batch, int seqLen, int embedDim, bool batched) : IDisposable
{
    private IMemoryOwner<float>? _buffer = buffer;

    public int Batch { get; } = batch;

    public int SeqLen { get; } = seqLen;

    public int EmbedDim { get; } = embedDim;

    /// <summary>False for a 2-D input ([N, E]: B = 1).</summary>
    public bool Batched { get; } = batched;

    public ReadOnlySpan<float> Data => (_buffer ?? throw new ObjectDisposedException(nameof(ParsedInput))).Memory.Span[..(Batch * SeqLen * EmbedDim)];

    /// <summary>An input of exactly <paramref name="batch"/> × <paramref name="seqLen"/> × <paramref name="embedDim"/> pooled floats, to fill.</summary>
    public static ParsedInput Allocate(int batch, int seqLen, int embedDim, bool batched)
        => new(MemoryOwner<float>.Allocate(batch * seqLen * embedDim), batch, seqLen, embedDim, batched);

    /// <summary>The buffer to fill (from <see cref="Allocate"/>).</summary>
    public Span<float> Writable => (_buffer ?? throw new ObjectDisposedException(nameof(ParsedInput))).Memory.Span[..(Batch * SeqLen * EmbedDim)];

    public void Dispose() => Interlocked.Exchange(ref _buffer, null)?.Dispose();
}
