using DualChunk.Kernels;

namespace DualChunk.Core;

/// <summary>
/// The forward pass of one appended chunk (docs/model.md "Streaming"), from the boxes of <see cref="DualChunkBlock{TNorm, TFeedForward}"/>
/// and the readout of <see cref="ForwardPass"/>: per layer LN → chunk mean → q̄ k̄ v̄ of the new chunk (k̄ v̄ kept in the
/// state) → inter-chunk attention of its q̄ over k̄ v̄ of chunks 0..k → intra-chunk attention and blend → out-proj →
/// FFN, on the B·C rows of the new chunk only.
/// </summary>
internal static class StreamPass
{
    /// <summary>
    /// Runs chunk <c>k = stream.Chunks</c> of every sequence from <paramref name="input"/> [B, C, E] into
    /// <paramref name="output"/>. Writes the state's row k of every layer (past the stream's length: uncommitted) and,
    /// for MeanPool, the stream's work sums. Returns −1, or with <paramref name="locate"/> the first stage whose output
    /// is not finite, numbered as by <see cref="ForwardPass.Run"/>.
    /// </summary>
    public static int Run<TNorm, TFeedForward>(ForwardPass<TNorm, TFeedForward> forward, DualChunkStream stream, ReadOnlySpan<float> input, Span<float> output, OutputMode mode, bool locate, CancellationToken ct)
        where TNorm : struct, INormLayer
        where TFeedForward : struct, IFeedForward
    {
        var ws = stream.Workspace;
        var state = stream.State;
        var ex = new Split(ws.Scheduler);
        var config = ws.Config;
        int batch = stream.Batch, e = config.EmbedDim, h = config.HiddenSize, c = config.ChunkSize, layers = config.NumLayers;
        int rows = batch * c, k = stream.Chunks;
        Span<float> x = ws.X[..(rows * h)];                                  // [B·C, H]  residual stream of the new chunk
        Span<float> normed = ws.Normed[..(rows * h)];                        // [B·C, H]  layer-norm output
        Span<float> chunkMeans = ws.ChunkMeans[..(batch * h)];               // [B, H]    its chunk means
        Span<float> summaries = ws.Summaries[..(batch * 3 * h)];             // [B, 3H]   its q̄ | k̄ | v̄
        Span<float> inter = ws.Inter[..(batch * h)];                         // [B, H]    its inter-chunk attention

        if (forward.InputProjection is { } projection)
            ex.Dense(projection, input, rows, e, x, h, 0, h);
        else
            input.CopyTo(x);
        if (locate && NonFinite.IndexOf(x) >= 0) return 0;

        for (int l = 0; l < layers; l++)
        {
            ct.ThrowIfCancellationRequested();
            ref readonly var block = ref forward.Block(l);
            block.ChunkSummaries(ex, x, normed, chunkMeans, summaries, 0, batch);  // one chunk per sequence
            for (int b = 0; b < batch; b++)                                  // k̄ | v̄ of chunk k into the state
                summaries.Slice(b * 3 * h + h, 2 * h).CopyTo(state.Rows(l, b)[(k * state.RowFloats)..]);
            stream.InterItems.Set(block.Inter, l, k + 1);
            ws.Scheduler.Run(stream.InterItems, batch * block.Inter.Heads);
            if (l == layers - 1 && mode == OutputMode.LastTimestep)
            {
                Span<float> last = ws.Last[..(batch * h)];                   // [B, H]  residual at the chunk's last position
                ws.Scheduler.LastTimestep(block, forward.FinalNorm, x, normed, inter, ws.LastAttn[..(batch * h)], last, ws.LastNormed[..(batch * h)], output, batch, c, deferred: default);
                return locate && NonFinite.IndexOf(last) >= 0 ? layers : Finite(output, locate, layers);
            }
            ws.Scheduler.RowGroups(block, x, normed, inter, rows, deferred: default); // attention, out-proj, FFN
            if (locate && NonFinite.IndexOf(x) >= 0) return l + 1;
        }
        ct.ThrowIfCancellationRequested();

        if (mode == OutputMode.All)
        {
            ex.Norm(forward.FinalNorm, x, rows, output);               // [B, C, H]
            Accumulate(state, stream.SumsWork, output, batch, c, h, k, default); // the mean pool stays readable
            return Finite(output, locate, layers);
        }
        ex.Norm(forward.FinalNorm, x, rows, normed);
        Accumulate(state, stream.SumsWork, normed, batch, c, h, k, output); // [B, H]
        return Finite(output, locate, layers);
    }

    private static int Finite(ReadOnlySpan<float> output, bool locate, int layers) => locate && NonFinite.IndexOf(output) >= 0 ? layers + 1 : -1;

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
