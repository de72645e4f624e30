namespace DualChunk.Core;

/// <summary>
/// The forward pass of one appended chunk (docs/model.md "Streaming"): the pass of
/// <see cref="ForwardPass{TNorm, TFeedForward}"/> on the B·C rows of chunk <c>k = stream.Chunks</c> of every
/// sequence, where a block's summaries are those of the new chunk only, its k̄ v̄ are written into the state, and
/// the inter-chunk attention of its q̄ runs over the k̄ v̄ of chunks 0..k; the mean pool runs over every position so far.
/// </summary>
/// <remarks>
/// Writes the state's row k of every layer (past the stream's length: uncommitted until the append succeeds) and,
/// for All and MeanPool, the stream's work sums.
/// </remarks>
internal readonly struct StreamChunk<TNorm, TFeedForward>(DualChunkStream stream, Scheduler scheduler) : IPassPositions<TNorm, TFeedForward>
    where TNorm : struct, INormLayer
    where TFeedForward : struct, IFeedForward
{
    public DeferredInter Summaries(in DualChunkBlock<TNorm, TFeedForward> block, int layer, Span<float> x, Span<float> normed, Span<float> chunkMeans,
        Span<float> summaries, Span<float> inter, bool lastChunkOnly)
    {
        var state = stream.State;
        int batch = stream.Batch, h = block.Inter.Hidden, k = stream.Chunks;
        block.ChunkSummaries(new Split(scheduler), x, normed, chunkMeans, summaries, 0, batch); // one chunk per sequence
        for (int b = 0; b < batch; b++)                                      // k̄ | v̄ of chunk k into the state
            summaries.Slice(b * 3 * h + h, 2 * h).CopyTo(state.Rows(layer, b)[(k * state.RowFloats)..]);
        scheduler.StreamInter(block.Inter, state, layer, k + 1, summaries, inter, batch); // q̄ of chunk k over chunks 0..k
        return default;
    }

    public void MeanPool(ReadOnlySpan<float> finalRows, Span<float> mean)
        => Accumulate(stream.State, stream.SumsWork, finalRows, stream.Batch, stream.ChunkSize, stream.Model.Config.HiddenSize, stream.Chunks, mean);

    /// <summary>
    /// work = state sums + the new chunk's final-norm rows, in RowMean's order (even and odd positions apart, each in
    /// position order, float64; or one chain on its scalar path), and, unless <paramref name="mean"/> is empty,
    /// mean = (float)((even + odd) · (1 / N)) as RowMean computes a group's mean (its scalar path: sum / N).
    /// </summary>
    private static void Accumulate(StreamState state, double[] work, ReadOnlySpan<float> normed, int batch, int c, int h, int k, Span<float> mean)
    {
        state.Sums.CopyTo(work, 0);
        long n = (long)(k + 1) * c;
        double inv = 1.0 / n;
        for (int b = 0; b < batch; b++)
        {
            var even = work.AsSpan(b * 2 * h, h);
            var odd = work.AsSpan(b * 2 * h + h, h);
            for (int r = 0; r < c; r++)
            {
                var row = normed.Slice((b * c + r) * h, h);
                var sums = !state.Pairwise || (((long)k * c + r) & 1) == 0 ? even : odd;
                for (int j = 0; j < h; j++) sums[j] += row[j];
            }
            if (mean.IsEmpty) continue;
            var o = mean.Slice(b * h, h);
            for (int j = 0; j < h; j++)
                o[j] = state.Pairwise ? (float)((even[j] + odd[j]) * inv) : (float)(even[j] / n);
        }
    }
}
