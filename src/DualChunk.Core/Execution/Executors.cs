namespace DualChunk.Core;

/// <summary>
/// How the boxes of a block run their operations: on one thread (<see cref="OnThisThread"/>, inside a work item) or
/// each split over the call's workers (<see cref="Split"/>). The boxes are written once, generic over this; the
/// JIT specializes them per executor, so the indirection costs nothing.
/// </summary>
internal interface IExecutor
{
    /// <summary>C[r, start:start+count] (op)= A[r, :] · W + b for r in [0, m).</summary>
    void Dense(in DenseLayer layer, ReadOnlySpan<float> a, int m, int lda, Span<float> c, int ldc, int start, int count);

    /// <summary>y = norm(x) over <paramref name="rows"/> rows.</summary>
    void Norm<TNorm>(in TNorm norm, ReadOnlySpan<float> x, int rows, Span<float> y) where TNorm : struct, INormLayer;

    /// <summary>The chunk means of <paramref name="h"/> [chunkRows·C, H] into <paramref name="means"/> [chunkRows, H].</summary>
    void ChunkMeans(in InterChunkAttention attention, ReadOnlySpan<float> h, int chunkRows, Span<float> means);

    /// <summary>Causal attention over each batch element's chunk summaries [B·NC, 3H] into [B·NC, H], per (batch, head).</summary>
    void InterAttention(in InterChunkAttention attention, ReadOnlySpan<float> summaries, int batch, int seqLen, Span<float> inter, bool lastChunkOnly);

    /// <summary>Intra-chunk attention blended with the inter rows, per (chunk, head), over <paramref name="chunks"/> chunks.</summary>
    void IntraAttention(in IntraChunkAttention attention, in GateBlend gate, ReadOnlySpan<float> qkv, int chunks, ReadOnlySpan<float> inter, Span<float> output, bool lastRowOnly);

    /// <summary>The block's FFN on <paramref name="rows"/> rows (the executor decides how to cut it).</summary>
    void FeedForward<TNorm, TFeedForward>(in DualChunkBlock<TNorm, TFeedForward> block, Span<float> x, Span<float> normed, int rows)
        where TNorm : struct, INormLayer where TFeedForward : struct, IFeedForward;

    /// <summary>[FfnRowBlock, F] FFN hidden rows this executor's FFN writes.</summary>
    Span<float> FfnHidden { get; }
}

/// <summary>Every operation on the current thread, with worker slot <c>worker</c>'s private buffers.</summary>
internal readonly struct OnThisThread(WorkerBuffers buffers, int worker) : IExecutor
{
    public Span<float> FfnHidden => buffers.FfnHidden(worker);

    public void Dense(in DenseLayer layer, ReadOnlySpan<float> a, int m, int lda, Span<float> c, int ldc, int start, int count)
        => layer.Apply(a, m, lda, c, ldc, start, count);

    public void Norm<TNorm>(in TNorm norm, ReadOnlySpan<float> x, int rows, Span<float> y) where TNorm : struct, INormLayer => norm.Apply(x, rows, y);

    public void ChunkMeans(in InterChunkAttention attention, ReadOnlySpan<float> h, int chunkRows, Span<float> means)
        => attention.ChunkMeans(h, 0, chunkRows, means);

    public void InterAttention(in InterChunkAttention attention, ReadOnlySpan<float> summaries, int batch, int seqLen, Span<float> inter, bool lastChunkOnly)
    {
        var scratch = buffers.Scratch(worker);
        for (int b = 0; b < batch; b++)
            for (int head = 0; head < attention.Heads; head++)
                attention.ApplyHead(summaries, seqLen, inter, scratch, lastChunkOnly, b, head);
    }

    public void IntraAttention(in IntraChunkAttention attention, in GateBlend gate, ReadOnlySpan<float> qkv, int chunks, ReadOnlySpan<float> inter, Span<float> output, bool lastRowOnly)
    {
        var scratch = buffers.Scratch(worker);
        for (int chunk = 0; chunk < chunks; chunk++)
            for (int head = 0; head < attention.Heads; head++)
                attention.ApplyChunkHead(qkv, inter, gate, output, scratch, lastRowOnly, chunk, head);
    }

    public void FeedForward<TNorm, TFeedForward>(in DualChunkBlock<TNorm, TFeedForward> block, Span<float> x, Span<float> normed, int rows)
        where TNorm : struct, INormLayer where TFeedForward : struct, IFeedForward => block.FeedForward(this, x, normed, rows);
}

/// <summary>
/// Every operation split over the call's workers by <see cref="Scheduler"/> (or run inline when too small). With
/// <paramref name="deferred"/> inter-chunk attention, its intra-chunk phase does that first, by head: the scheduler
/// gives one to an executor that runs exactly one intra-chunk phase.
/// </summary>
internal readonly struct Split(Scheduler scheduler, DeferredInter deferred = default) : IExecutor
{
    public Span<float> FfnHidden => scheduler.Buffers.FfnHidden(0);

    public void Dense(in DenseLayer layer, ReadOnlySpan<float> a, int m, int lda, Span<float> c, int ldc, int start, int count)
        => scheduler.Dense(layer, a, m, lda, c, ldc, start, count);

    public void Norm<TNorm>(in TNorm norm, ReadOnlySpan<float> x, int rows, Span<float> y) where TNorm : struct, INormLayer => scheduler.Norm(norm, x, rows, y);

    public void ChunkMeans(in InterChunkAttention attention, ReadOnlySpan<float> h, int chunkRows, Span<float> means)
        => scheduler.ChunkMeans(attention, h, chunkRows, means);

    public void InterAttention(in InterChunkAttention attention, ReadOnlySpan<float> summaries, int batch, int seqLen, Span<float> inter, bool lastChunkOnly)
        => scheduler.InterAttention(attention, summaries, batch, seqLen, inter, lastChunkOnly);

    public void IntraAttention(in IntraChunkAttention attention, in GateBlend gate, ReadOnlySpan<float> qkv, int chunks, ReadOnlySpan<float> inter, Span<float> output, bool lastRowOnly)
        => scheduler.IntraAttention(attention, gate, qkv, chunks, inter, output, lastRowOnly, deferred);

    public void FeedForward<TNorm, TFeedForward>(in DualChunkBlock<TNorm, TFeedForward> block, Span<float> x, Span<float> normed, int rows)
        where TNorm : struct, INormLayer where TFeedForward : struct, IFeedForward => scheduler.FeedForward(block, x, normed, rows);
}
