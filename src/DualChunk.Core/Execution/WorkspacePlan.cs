using DualChunk.Kernels;

namespace DualChunk.Core;

/// <summary>
/// Where every buffer of a <see cref="Workspace"/> goes, computed from the capacities alone, before anything is
/// allocated, so a plan's size can be checked against the host's limits first.
/// </summary>
/// <remarks>
/// A workspace is planned by what a call needs: its rows B·N (the residual stream and everything per row), its
/// sequence length N (the inter-chunk attention scratch; for a stream's append, the stream's room) and its batch B (the readout rows). A pooled workspace
/// takes B ≤ B·N / C, since N ≥ C, so any batch whose rows fit.
/// </remarks>
internal readonly struct WorkspacePlan
{
    /// <summary>Rows of the FFN processed together: [FfnRowBlock, F] stays in L2.</summary>
    public const int FfnRowBlock = 128;

    /// <summary>Target rows of a row group: a group's [G, 3H] and [G, H] buffers stay in L2.</summary>
    public const int TargetGroupRows = 256;

    private const int AlignFloats = 16; // 64 bytes

    public WorkspacePlan(ModelConfig config, long rows, int seqLen, long batch, int workers)
    {
        Rows = rows;
        SeqLen = seqLen;
        Batch = batch;
        Workers = workers;
        int h = config.HiddenSize, c = config.ChunkSize, d = config.HeadDim;
        long chunkRows = rows / c, offset = 0;
        GroupRows = (int)Math.Min(rows, Math.Max(1, TargetGroupRows / c) * (long)c);
        X = Next(ref offset, rows * h);                        // [B·N, H]   residual stream
        Normed = Next(ref offset, rows * h);                   // [B·N, H]   layer-norm output
        ChunkMeans = Next(ref offset, chunkRows * h);          // [B·NC, H]  chunk means of the layer-norm output
        Summaries = Next(ref offset, chunkRows * 3 * h);       // [B·NC, 3H] q̄ | k̄ | v̄
        Inter = Next(ref offset, chunkRows * h);               // [B·NC, H]  inter-chunk attention
        Last = Next(ref offset, batch * h);                    // [B, H]     residual at position N-1 (readout)
        LastNormed = Next(ref offset, batch * h);              // [B, H]
        LastAttn = Next(ref offset, batch * h);                // [B, H]     blended attention at position N-1
        WorkerStart = offset;
        GroupQkv = Next(ref offset, (long)GroupRows * 3 * h);  // [G, 3H] per worker: queries | keys | values of a row group
        GroupAttn = Next(ref offset, (long)GroupRows * h);     // [G, H]  per worker: its blended attention
        FfnHidden = Next(ref offset, Math.Min(rows, FfnRowBlock) * config.FfnSize); // [rowBlock, F] per worker
        Scratch = Next(ref offset, Math.Max(CausalAttention.ScratchFloats(c, d),  // intra-chunk; inter-chunk over NC chunks, or a
            InterChunkAttention.LastChunkScratchFloats(seqLen / c, d)));       // stream's last chunk over NC (the larger of the two)
        WorkerFloats = offset - WorkerStart;
        Floats = WorkerStart + workers * WorkerFloats + AlignFloats; // + the alignment shift
    }

    public long Rows { get; }
    public int SeqLen { get; }
    public long Batch { get; }
    public int Workers { get; }
    public int GroupRows { get; }

    // Each buffer's (offset, length) in floats; shapes where they are planned, in the constructor.
    public readonly (long Offset, long Length) X, Normed, ChunkMeans, Summaries, Inter, Last, LastNormed, LastAttn;

    /// <summary>Worker w's buffers are these, shifted by <see cref="WorkerStart"/> + w · <see cref="WorkerFloats"/>.</summary>
    public readonly (long Offset, long Length) GroupQkv, GroupAttn, FfnHidden, Scratch;

    public long WorkerStart { get; }
    public long WorkerFloats { get; }

    /// <summary>Floats of the one array holding everything.</summary>
    public long Floats { get; }

    public long Bytes => Floats * sizeof(float);

    /// <summary>True when one .NET array can hold the plan.</summary>
    public bool FitsOneArray => Floats <= Array.MaxLength;

    /// <summary>Whether a call of <paramref name="batch"/> × <paramref name="seqLen"/> fits.</summary>
    public bool Fits(int batch, int seqLen) => Fits(batch, (long)batch * seqLen, seqLen);

    /// <summary>
    /// Whether a call of <paramref name="batch"/> sequences, <paramref name="rows"/> rows in all, whose inter-chunk
    /// attention spans <paramref name="seqLen"/> positions fits (a stream's append: B·C rows over the stream's length).
    /// </summary>
    public bool Fits(long batch, long rows, int seqLen) => batch <= Batch && seqLen <= SeqLen && rows <= Rows;

    private static (long, long) Next(ref long offset, long floats)
    {
        long start = offset;
        offset = (offset + floats + AlignFloats - 1) / AlignFloats * AlignFloats;
        return (start, floats);
    }
}
