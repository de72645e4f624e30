using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using DualChunk.Kernels;

namespace DualChunk.Core;

/// <summary>
/// Cuts each operation of a call into independent work items by data partition and dispatches them, on the calling
/// thread alone or, when the call holds its model's <see cref="WorkerGroup"/>, on the group's threads too. It
/// holds no model math: the items call the boxes (<see cref="DenseLayer"/>, <see cref="DualChunkBlock{TNorm, TFeedForward}"/>, …).
/// </summary>
/// <remarks>
/// Every output element gets the same kernel arithmetic whatever the partition (the GEMM guarantees it for any row
/// range and for column ranges the kernel accepts; the other kernels work row by row or item by item), so results
/// are bitwise identical for every thread count. One scheduler per workspace, with one instance of each work-item
/// type, allocated with it: dispatching allocates nothing. Buffers travel to the items as pointers: the workspace
/// array is pinned, and the model pins the caller's input and output for the call.
/// </remarks>
internal sealed unsafe class Scheduler
{
    /// <summary>
    /// Multiply-adds below which a GEMM runs on the calling thread alone: a spinning hand-off costs about a microsecond,
    /// so only GEMMs shorter than a few microseconds stay whole (a one-row GEMV above it is memory-bound and halves well).
    /// </summary>
    /// <remarks>Mutable only so tests can force every split on tiny models; results never depend on it.</remarks>
    internal static long MinParallelMacs = 1 << 17;

    /// <summary>Floats below which a row-wise op (layer norm, chunk means) runs on the calling thread alone.</summary>
    internal static long MinParallelFloats = 1 << 17;

    /// <summary>A GEMM row item spans this many of the kernel's M blocks, so A rows stay blocked as in one call.</summary>
    private const int GemmRowBlocksPerItem = 2;

    private readonly DenseItems _dense;
    private readonly NormItems<LayerNormLayer> _layerNorm;
    private readonly NormItems<RmsNormLayer> _rmsNorm;
    private readonly ChunkMeanItems _chunkMeans;
    private readonly InterHeadItems _inter;
    private readonly IntraHeadItems _intra;
    private readonly StreamInterItems _streamInter;
    private readonly HeadItems _heads;
    private readonly BlockItems _block;  // the items that hold a block, for the model's architecture (BlockItems<TNorm, TFeedForward>)
    private readonly int _hidden, _chunkSize;
    private WorkerGroup? _group;

    public Scheduler(WorkerBuffers buffers, ModelConfig config)
    {
        Buffers = buffers;
        _hidden = config.HiddenSize;
        _chunkSize = config.ChunkSize;
        _dense = new DenseItems();
        _layerNorm = new NormItems<LayerNormLayer>();
        _rmsNorm = new NormItems<RmsNormLayer>();
        _chunkMeans = new ChunkMeanItems(config);
        _inter = new InterHeadItems(buffers);
        _intra = new IntraHeadItems(buffers, config);
        _streamInter = new StreamInterItems(buffers);
        _heads = new HeadItems(buffers, config);
        _block = config.Architecture switch
        {
            ModelArchitecture.DecoderOnly => new BlockItems<RmsNormLayer, SwiGluFeedForward>(buffers, config),
            _ => new BlockItems<LayerNormLayer, GeluFeedForward>(buffers, config),
        };
    }

    /// <summary>The per-worker buffers the items write.</summary>
    public WorkerBuffers Buffers { get; }

    /// <summary>Threads this call may use (1 when it does not hold a worker group).</summary>
    public int Workers { get; private set; } = 1;

    /// <summary>Starts a call: <paramref name="group"/> is the acquired group, or null to run on the caller only.</summary>
    public void Begin(WorkerGroup? group, int maxWorkers)
    {
        _group = group;
        Workers = group is null ? 1 : Math.Min(group.Workers, maxWorkers);
    }

    /// <summary>Ends a call; the items forget every pointer of it.</summary>
    public void End()
    {
        _group = null;
        Workers = 1;
        _dense.Clear();
        _layerNorm.Clear();
        _rmsNorm.Clear();
        _chunkMeans.Clear();
        _inter.Clear();
        _intra.Clear();
        _streamInter.Clear();
        _heads.Clear();
        _block.Clear();
    }

    /// <summary>
    /// A block's summaries and inter-chunk attention (<see cref="DualChunkBlock{TNorm, TFeedForward}.Summaries"/>) in as few phases as the
    /// shape allows: one item per batch element (its summaries, then its inter-chunk attention) when there are enough
    /// elements; else chunk ranges, with the inter-chunk attention returned undone when the next phase can do it by
    /// head (<see cref="DeferredInter"/>). The caller hands the result to <see cref="RowGroups"/> or
    /// <see cref="LastTimestep"/>; an empty result means <paramref name="inter"/> is complete.
    /// </summary>
    public DeferredInter Summaries<TNorm, TFeedForward>(in DualChunkBlock<TNorm, TFeedForward> block, ReadOnlySpan<float> x, Span<float> normed, Span<float> chunkMeans, Span<float> summaries,
        Span<float> inter, int batch, int seqLen, bool lastChunkOnly)
        where TNorm : struct, INormLayer where TFeedForward : struct, IFeedForward
    {
        var summaryItems = Items<TNorm, TFeedForward>().Summaries;
        int h = _hidden, w = Workers, rows = batch * seqLen, chunkRows = rows / _chunkSize;
        if (x.Length < (long)rows * h || normed.Length < (long)rows * h || chunkMeans.Length < (long)chunkRows * h
            || summaries.Length < (long)chunkRows * 3 * h || inter.Length < (long)chunkRows * h)
            throw new ArgumentException("Summary operand shorter than its shape.");
        bool large = (long)rows * h >= MinParallelFloats;
        if (w > 1 && large && batch >= w)
        {
            summaryItems.Set(block, P(x), P(normed), P(chunkMeans), P(summaries), P(inter), chunkRows, seqLen / _chunkSize, seqLen, true, lastChunkOnly);
            Dispatch(summaryItems, batch);
            return default;
        }
        if (w > 1 && large && chunkRows >= w)
        {
            int perItem = (chunkRows + w - 1) / w;
            summaryItems.Set(block, P(x), P(normed), P(chunkMeans), P(summaries), P(inter), chunkRows, perItem, seqLen, false, lastChunkOnly);
            Dispatch(summaryItems, (chunkRows + perItem - 1) / perItem);
        }
        else
        {
            block.ChunkSummaries(new Split(this), x, normed, chunkMeans, summaries, 0, chunkRows, valuesOnly: seqLen == _chunkSize);
        }
        if (w > 1 && block.Inter.Heads >= w)
            return new DeferredInter(block.Inter, P(summaries), P(inter), batch, seqLen, lastChunkOnly);
        InterAttention(block.Inter, summaries, batch, seqLen, inter, lastChunkOnly);
        return default;
    }

    /// <summary>Runs <paramref name="deferred"/> as a phase of its own, for a consumer that needs all of it first.</summary>
    private void RunDeferred(in DeferredInter deferred)
    {
        if (deferred.IsEmpty) return;
        long chunkRows = (long)deferred.Batch * (deferred.SeqLen / _chunkSize);
        InterAttention(deferred.Attention, new ReadOnlySpan<float>(deferred.Summaries, (int)(chunkRows * 3 * _hidden)), deferred.Batch, deferred.SeqLen,
            new Span<float>(deferred.Inter, (int)(chunkRows * _hidden)), deferred.LastChunkOnly);
    }

    /// <summary>
    /// last_timestep after the last block's summaries (<see cref="DualChunkBlock{TNorm, TFeedForward}.LastTimestepRows"/>), with
    /// <paramref name="deferred"/> what <see cref="Summaries"/> returned: batch ranges as items when there are enough,
    /// else each operation split (the first element's intra-chunk phase doing the deferred inter-chunk attention by head).
    /// </summary>
    public void LastTimestep<TNorm, TFeedForward>(in DualChunkBlock<TNorm, TFeedForward> block, in LayerNormLayer finalNorm, ReadOnlySpan<float> x, ReadOnlySpan<float> normed, ReadOnlySpan<float> inter,
        Span<float> lastAttn, Span<float> last, Span<float> lastNormed, Span<float> output, int batch, int seqLen, in DeferredInter deferred)
        where TNorm : struct, INormLayer where TFeedForward : struct, IFeedForward
    {
        int h = _hidden, w = Workers, rows = batch * seqLen;
        if (x.Length < (long)rows * h || normed.Length < (long)rows * h || inter.Length < (long)rows / _chunkSize * h
            || lastAttn.Length < (long)batch * h || last.Length < (long)batch * h || lastNormed.Length < (long)batch * h || output.Length < (long)batch * h)
            throw new ArgumentException("Readout operand shorter than its shape.");
        if (w > 1 && batch >= w)
        {
            RunDeferred(deferred);
            int perItem = (batch + w - 1) / w;
            var lastItems = Items<TNorm, TFeedForward>().Last;
            lastItems.Set(block, finalNorm, P(x), P(normed), P(inter), P(lastAttn), P(last), P(lastNormed), P(output), batch, seqLen, perItem);
            Dispatch(lastItems, (batch + perItem - 1) / perItem);
            return;
        }
        if (deferred.IsEmpty)
        {
            block.LastTimestepRows(new Split(this), finalNorm, x, normed, inter, Buffers.GroupQkv(0), Buffers.GroupAttn(0), lastAttn, last, lastNormed, output, 0, batch, seqLen);
            return;
        }
        // Element 0 alone, so exactly one intra-chunk phase gets the deferred work; the rest after it. Any batch range
        // gives the same bits (each element needs only its own rows).
        block.LastTimestepRows(new Split(this, deferred), finalNorm, x, normed, inter, Buffers.GroupQkv(0), Buffers.GroupAttn(0), lastAttn, last, lastNormed, output, 0, 1, seqLen);
        if (batch > 1)
            block.LastTimestepRows(new Split(this), finalNorm, x, normed, inter, Buffers.GroupQkv(0), Buffers.GroupAttn(0), lastAttn, last, lastNormed, output, 1, batch - 1, seqLen);
    }

    /// <summary>Columns [start, start + count) of C = A · W (+ epilogue), as row × column blocks.</summary>
    public void Dense(in DenseLayer layer, ReadOnlySpan<float> a, int m, int lda, Span<float> c, int ldc, int start, int count)
    {
        int w = Workers;
        if (w == 1 || (long)m * layer.In * count < MinParallelMacs)
        {
            layer.Apply(a, m, lda, c, ldc, start, count);
            return;
        }
        // Bounds once here (the kernel re-checks each item against spans rebuilt from these pointers).
        if (a.Length < (long)(m - 1) * lda + layer.In || c.Length < (long)(m - 1) * ldc + layer.Out)
            throw new ArgumentException("GEMM operand shorter than its shape.");
        const int split = PackedMatrix.PanelWidth;                  // column ranges the kernel computes alone
        int panels = (count + split - 1) / split;
        int colChunks = Math.Min(panels, 2 * w);
        int colStep = (panels + colChunks - 1) / colChunks * split;
        colChunks = (count + colStep - 1) / colStep;
        int rowBlock = GemmRowBlocksPerItem * Gemm.RowBlock;
        int rowChunks = m >= 2 * rowBlock ? Math.Min((m + rowBlock - 1) / rowBlock, Math.Max(1, (4 * w + colChunks - 1) / colChunks)) : 1;
        int rowStep = (m + rowChunks - 1) / rowChunks;
        if (rowChunks > 1) rowStep = (rowStep + rowBlock - 1) / rowBlock * rowBlock;
        rowChunks = (m + rowStep - 1) / rowStep;
        _dense.Set(layer, P(a), m, lda, P(c), ldc, start, start + count, rowStep, colStep, colChunks);
        Dispatch(_dense, rowChunks * colChunks);
    }

    /// <summary>y = norm(x) over <paramref name="rows"/> rows, as row ranges.</summary>
    public void Norm<TNorm>(in TNorm norm, ReadOnlySpan<float> x, int rows, Span<float> y) where TNorm : struct, INormLayer
    {
        int width = norm.Width;
        if (Workers == 1 || (long)rows * width < MinParallelFloats)
        {
            norm.Apply(x, rows, y);
            return;
        }
        if (x.Length < (long)rows * width || y.Length < (long)rows * width)
            throw new ArgumentException("Norm operand shorter than its shape.");
        int perItem = PerItem(rows);
        // typeof tests on a struct type argument are JIT-time constants: each instantiation keeps one branch.
        var items = typeof(TNorm) == typeof(LayerNormLayer) ? (NormItems<TNorm>)(object)_layerNorm : (NormItems<TNorm>)(object)_rmsNorm;
        items.Set(norm, P(x), P(y), rows, perItem);
        Dispatch(items, (rows + perItem - 1) / perItem);
    }

    /// <summary>The chunk means of <paramref name="h"/> [chunkRows·C, H] into <paramref name="means"/> [chunkRows, H], as chunk ranges.</summary>
    public void ChunkMeans(in InterChunkAttention attention, ReadOnlySpan<float> h, int chunkRows, Span<float> means)
    {
        if (Workers == 1 || (long)chunkRows * _chunkSize * _hidden < MinParallelFloats)
        {
            attention.ChunkMeans(h, 0, chunkRows, means);
            return;
        }
        if (h.Length < (long)chunkRows * _chunkSize * _hidden || means.Length < (long)chunkRows * _hidden)
            throw new ArgumentException("Chunk-mean operand shorter than its shape.");
        int perItem = PerItem(chunkRows);
        _chunkMeans.Set(attention, P(h), P(means), chunkRows, perItem);
        Dispatch(_chunkMeans, (chunkRows + perItem - 1) / perItem);
    }

    /// <summary>Inter-chunk attention, one item per (batch, head).</summary>
    public void InterAttention(in InterChunkAttention attention, ReadOnlySpan<float> summaries, int batch, int seqLen, Span<float> inter, bool lastChunkOnly)
    {
        long chunkRows = (long)batch * (seqLen / _chunkSize);
        if (summaries.Length < chunkRows * 3 * _hidden || inter.Length < chunkRows * _hidden)
            throw new ArgumentException("Attention operand shorter than its shape.");
        _inter.Set(attention, P(summaries), P(inter), batch, seqLen, lastChunkOnly);
        Dispatch(_inter, batch * attention.Heads);
    }

    /// <summary>
    /// Intra-chunk attention blended with the inter rows, one item per (chunk, head); or, with <paramref name="deferred"/>
    /// inter-chunk attention (from <see cref="Summaries"/>), one item per head doing that head's inter-chunk attention
    /// first (the intra part reads only the inter columns of its own head, so the two need no barrier between them).
    /// </summary>
    public void IntraAttention(in IntraChunkAttention attention, in GateBlend gate, ReadOnlySpan<float> qkv, int chunks, ReadOnlySpan<float> inter, Span<float> output, bool lastRowOnly,
        in DeferredInter deferred)
    {
        int c = _chunkSize, h = _hidden;
        if (qkv.Length < (long)chunks * c * 3 * h || inter.Length < (long)chunks * h || output.Length < (long)chunks * c * h)
            throw new ArgumentException("Attention operand shorter than its shape.");
        if (!deferred.IsEmpty)
        {
            _heads.Set(deferred.Attention, attention, gate, deferred.Summaries, deferred.Inter, deferred.Batch, deferred.SeqLen, deferred.LastChunkOnly,
                P(qkv), P(inter), P(output), chunks, lastRowOnly);
            Dispatch(_heads, attention.Heads);
            return;
        }
        _intra.Set(attention, gate, P(qkv), P(inter), P(output), chunks, lastRowOnly);
        Dispatch(_intra, chunks * attention.Heads);
    }

    /// <summary>
    /// A block after its summaries (<see cref="DualChunkBlock{TNorm, TFeedForward}.RowGroup"/>) over <paramref name="rows"/> rows in row
    /// groups of whole chunks, with <paramref name="deferred"/> what <see cref="Summaries"/> returned: one group per
    /// item when there are enough groups (the deferred inter-chunk attention first, as a phase of its own), else group
    /// by group with each operation split (the first group's intra-chunk phase doing it by head).
    /// </summary>
    public void RowGroups<TNorm, TFeedForward>(in DualChunkBlock<TNorm, TFeedForward> block, Span<float> x, Span<float> normed, ReadOnlySpan<float> inter, int rows,
        in DeferredInter deferred)
        where TNorm : struct, INormLayer where TFeedForward : struct, IFeedForward
    {
        int h = _hidden, c = _chunkSize, g = Buffers.GroupRows, groups = (rows + g - 1) / g;
        if (x.Length < (long)rows * h || normed.Length < (long)rows * h || inter.Length < (long)rows / c * h)
            throw new ArgumentException("Block operand shorter than its shape.");
        if (Workers == 1 || groups >= Workers)
        {
            RunDeferred(deferred);
            var rowGroups = Items<TNorm, TFeedForward>().RowGroups;
            rowGroups.Set(block, P(x), P(normed), P(inter), rows);
            Dispatch(rowGroups, groups);
            return;
        }
        for (int r0 = 0; r0 < rows; r0 += g)
        {
            int n = Math.Min(g, rows - r0);
            var split = r0 == 0 ? new Split(this, deferred) : new Split(this);  // one intra-chunk phase takes the deferred work
            block.RowGroup(split, x.Slice(r0 * h, n * h), normed.Slice(r0 * h, n * h), inter.Slice(r0 / c * h, n / c * h), n,
                Buffers.GroupQkv(0), Buffers.GroupAttn(0));
        }
    }

    /// <summary>The block's FFN: one FFN row block per item when there are enough of them, else each GEMM split.</summary>
    public void FeedForward<TNorm, TFeedForward>(in DualChunkBlock<TNorm, TFeedForward> block, Span<float> x, Span<float> normed, int rows)
        where TNorm : struct, INormLayer where TFeedForward : struct, IFeedForward
    {
        int rowBlocks = (rows + WorkspacePlan.FfnRowBlock - 1) / WorkspacePlan.FfnRowBlock;
        if (x.Length < (long)rows * _hidden || normed.Length < (long)rows * _hidden)
            throw new ArgumentException("FFN operand shorter than its shape.");
        if (Workers == 1 || rowBlocks >= Workers)
        {
            var ffn = Items<TNorm, TFeedForward>().FeedForward;
            ffn.Set(block, P(x), P(normed), rows);
            Dispatch(ffn, rowBlocks);
            return;
        }
        block.FeedForward(new Split(this), x, normed, rows);
    }

    /// <summary>
    /// A stream's inter-chunk attention at <paramref name="layer"/>, one item per (sequence, head): the new chunk's q̄
    /// (in <paramref name="summaries"/> [B, 3H]) over the k̄ v̄ of its <paramref name="chunks"/> chunks in
    /// <paramref name="state"/>, into <paramref name="inter"/> [B, H].
    /// </summary>
    public void StreamInter(in InterChunkAttention attention, StreamState state, int layer, int chunks, ReadOnlySpan<float> summaries, Span<float> inter, int batch)
    {
        int h = _hidden;
        if (summaries.Length < (long)batch * 3 * h || inter.Length < (long)batch * h || chunks > state.Capacity)
            throw new ArgumentException("Stream attention operand shorter than its shape.");
        _streamInter.Set(attention, state, layer, chunks, P(summaries), P(inter));
        Dispatch(_streamInter, batch * attention.Heads);
    }

    /// <summary>The items of this workspace's block type (its model's architecture).</summary>
    private BlockItems<TNorm, TFeedForward> Items<TNorm, TFeedForward>()
        where TNorm : struct, INormLayer where TFeedForward : struct, IFeedForward
        => (BlockItems<TNorm, TFeedForward>)_block;

    /// <summary>Rows per item of a row-wise op: up to 4 items per worker.</summary>
    private int PerItem(int rows)
    {
        int items = Math.Min(rows, 4 * Workers);
        return (rows + items - 1) / items;
    }

    private void Dispatch(IParallelWork work, int items)
    {
        if (_group is null || items <= 1)
        {
            for (int i = 0; i < items; i++) work.Execute(i, 0);
            return;
        }
        _group.Run(work, items, Workers);
    }

    /// <summary>Address of a span's first element; only for pinned memory (the workspace, or the pinned caller buffers).</summary>
    private static float* P(ReadOnlySpan<float> s) => (float*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(s));
}

/// <summary>
/// An inter-chunk attention <see cref="Scheduler.Summaries"/> left undone so that the next intra-chunk phase can do it
/// by head without a barrier of its own; the caller passes it on (<see cref="Scheduler.RowGroups"/>,
/// <see cref="Scheduler.LastTimestep"/>). Empty (default): the inter rows are complete.
/// </summary>
internal readonly unsafe struct DeferredInter(InterChunkAttention attention, float* summaries, float* inter, int batch, int seqLen, bool lastChunkOnly)
{
    public readonly InterChunkAttention Attention = attention;
    public readonly float* Summaries = summaries;  // [B·NC, 3H] q̄ | k̄ | v̄
    public readonly float* Inter = inter;          // [B·NC, H]  written by the deferred work
    public readonly int Batch = batch, SeqLen = seqLen;
    public readonly bool LastChunkOnly = lastChunkOnly;

    public bool IsEmpty => Summaries == null;
}
