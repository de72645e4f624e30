namespace DualChunk.Core;

// The typed work items of Scheduler: each holds the arguments of one kind of operation (set per dispatch, cleared
// at the end of the call) and runs item i on worker slot w. Buffers are pointers into pinned memory; each item
// rebuilds bounded spans from them, so the kernels still check every access.

/// <summary>Row block × column block of C = A · W (+ epilogue).</summary>
internal sealed unsafe class DenseItems : IParallelWork
{
    private DenseLayer _layer;
    private float* _a, _c;
    private int _m, _lda, _ldc, _colStart, _colEnd, _rowStep, _colStep, _colChunks;

    public void Set(in DenseLayer layer, float* a, int m, int lda, float* c, int ldc, int colStart, int colEnd, int rowStep, int colStep, int colChunks)
    {
        _layer = layer; _a = a; _m = m; _lda = lda; _c = c; _ldc = ldc;
        _colStart = colStart; _colEnd = colEnd; _rowStep = rowStep; _colStep = colStep; _colChunks = colChunks;
    }

    public void Clear()
    {
        _layer = default; _a = null; _c = null;
    }

    public void Execute(int item, int worker)
    {
        int r0 = item / _colChunks * _rowStep, rows = Math.Min(_rowStep, _m - r0);
        int c0 = _colStart + item % _colChunks * _colStep, cols = Math.Min(_colStep, _colEnd - c0);
        var a = new ReadOnlySpan<float>(_a + (long)r0 * _lda, (rows - 1) * _lda + _layer.In);
        var c = new Span<float>(_c + (long)r0 * _ldc, (rows - 1) * _ldc + _layer.Out);
        _layer.Apply(a, rows, _lda, c, _ldc, c0, cols);
    }
}

/// <summary>A row-wise operation cut into ranges of consecutive rows; <see cref="Run"/> computes one range.</summary>
internal abstract unsafe class RowRangeItems : IParallelWork
{
    protected float* Source { get; private set; }
    protected float* Target { get; private set; }
    private int _rows, _perItem;

    protected void SetRange(float* source, float* target, int rows, int perItem)
    {
        Source = source;
        Target = target;
        _rows = rows;
        _perItem = perItem;
    }

    public virtual void Clear()
    {
        Source = null;
        Target = null;
    }

    public void Execute(int item, int worker)
    {
        int first = item * _perItem;
        Run(first, Math.Min(_perItem, _rows - first), _rows);
    }

    /// <summary>Rows [first, first + count) of <paramref name="rows"/>.</summary>
    protected abstract void Run(int first, int count, int rows);
}

/// <summary>A range of rows of y = norm(x).</summary>
internal sealed unsafe class NormItems<TNorm> : RowRangeItems where TNorm : struct, INormLayer
{
    private TNorm _norm;

    public void Set(in TNorm norm, float* x, float* y, int rows, int perItem)
    {
        _norm = norm;
        SetRange(x, y, rows, perItem);
    }

    public override void Clear()
    {
        _norm = default;
        base.Clear();
    }

    protected override void Run(int first, int count, int rows)
    {
        int width = _norm.Width;
        _norm.Apply(new ReadOnlySpan<float>(Source + (long)first * width, count * width), count, new Span<float>(Target + (long)first * width, count * width));
    }
}

/// <summary>A range of chunks of the chunk means (a "row" is one chunk).</summary>
internal sealed unsafe class ChunkMeanItems(ModelConfig config) : RowRangeItems
{
    private readonly int _h = config.HiddenSize, _c = config.ChunkSize;
    private InterChunkAttention _attention;

    public void Set(in InterChunkAttention attention, float* h, float* means, int chunkRows, int perItem)
    {
        _attention = attention;
        SetRange(h, means, chunkRows, perItem);
    }

    protected override void Run(int first, int count, int rows)
        => _attention.ChunkMeans(new ReadOnlySpan<float>(Source, rows * _c * _h), first, count, new Span<float>(Target, rows * _h));
}

/// <summary>One (batch element, head) of the inter-chunk attention.</summary>
internal sealed unsafe class InterHeadItems(WorkerBuffers buffers) : IParallelWork
{
    private InterChunkAttention _attention;
    private float* _summaries, _inter;
    private int _batch, _seqLen;
    private bool _lastChunkOnly;

    public void Set(in InterChunkAttention attention, float* summaries, float* inter, int batch, int seqLen, bool lastChunkOnly)
    {
        _attention = attention; _summaries = summaries; _inter = inter; _batch = batch; _seqLen = seqLen; _lastChunkOnly = lastChunkOnly;
    }

    public void Clear()
    {
        _summaries = null; _inter = null;
    }

    public void Execute(int item, int worker)
    {
        long chunkRows = (long)_batch * _seqLen / _attention.ChunkSize;
        _attention.ApplyHead(new ReadOnlySpan<float>(_summaries, (int)(chunkRows * 3 * _attention.Hidden)), _seqLen,
            new Span<float>(_inter, (int)(chunkRows * _attention.Hidden)), buffers.Scratch(worker), _lastChunkOnly,
            item / _attention.Heads, item % _attention.Heads);
    }
}

/// <summary>
/// One (sequence, head) of a stream's inter-chunk attention at one layer: the new chunk's query summary over the key
/// and value summaries of every chunk so far (<see cref="InterChunkAttention.ApplyLastChunk"/>), with the worker's
/// attention scratch (planned for the stream's room: <see cref="WorkspacePool.RentForAppend"/>).
/// </summary>
internal sealed unsafe class StreamInterItems(WorkerBuffers buffers) : IParallelWork
{
    private InterChunkAttention _attention;
    private StreamState? _state;
    private float* _summaries, _inter;
    private int _layer, _chunks;

    public void Set(in InterChunkAttention attention, StreamState state, int layer, int chunks, float* summaries, float* inter)
    {
        _attention = attention; _state = state; _layer = layer; _chunks = chunks; _summaries = summaries; _inter = inter;
    }

    public void Clear()
    {
        _state = null; _summaries = null; _inter = null;
    }

    public void Execute(int item, int worker)
    {
        int heads = _attention.Heads, b = item / heads, h = _attention.Hidden;
        _attention.ApplyLastChunk(new ReadOnlySpan<float>(_summaries + (long)b * 3 * h, 3 * h), _state!.Rows(_layer, b), _state.RowFloats, _chunks,
            new Span<float>(_inter + (long)b * h, h), buffers.Scratch(worker), item % heads);
    }
}

/// <summary>One (chunk, head) of the intra-chunk attention and its blend.</summary>
internal sealed unsafe class IntraHeadItems(WorkerBuffers buffers, ModelConfig config) : IParallelWork
{
    private readonly int _h = config.HiddenSize, _c = config.ChunkSize;
    private IntraChunkAttention _attention;
    private GateBlend _gate;
    private float* _qkv, _inter, _output;
    private int _chunks;
    private bool _lastRowOnly;

    public void Set(in IntraChunkAttention attention, in GateBlend gate, float* qkv, float* inter, float* output, int chunks, bool lastRowOnly)
    {
        _attention = attention; _gate = gate; _qkv = qkv; _inter = inter; _output = output; _chunks = chunks; _lastRowOnly = lastRowOnly;
    }

    public void Clear()
    {
        _gate = default; _qkv = null; _inter = null; _output = null;
    }

    public void Execute(int item, int worker)
        => _attention.ApplyChunkHead(new ReadOnlySpan<float>(_qkv, _chunks * _c * 3 * _h), new ReadOnlySpan<float>(_inter, _chunks * _h), _gate,
            new Span<float>(_output, _chunks * _c * _h), buffers.Scratch(worker), _lastRowOnly, item / _attention.Heads, item % _attention.Heads);
}

/// <summary>
/// The work items that hold a block, one instance each per workspace, for the block type of the model's architecture
/// (<see cref="BlockItems{TNorm, TFeedForward}"/>).
/// </summary>
internal abstract class BlockItems
{
    /// <summary>Forgets every pointer of the call.</summary>
    public abstract void Clear();
}

/// <summary>The block-holding items of <c>DualChunkBlock&lt;TNorm, TFeedForward&gt;</c>.</summary>
internal sealed class BlockItems<TNorm, TFeedForward>(WorkerBuffers buffers, ModelConfig config) : BlockItems
    where TNorm : struct, INormLayer
    where TFeedForward : struct, IFeedForward
{
    public readonly SummaryItems<TNorm, TFeedForward> Summaries = new(buffers, config);
    public readonly RowGroupItems<TNorm, TFeedForward> RowGroups = new(buffers, config);
    public readonly FfnRowBlockItems<TNorm, TFeedForward> FeedForward = new(buffers, config);
    public readonly LastTimestepItems<TNorm, TFeedForward> Last = new(buffers, config);

    public override void Clear()
    {
        Summaries.Clear();
        RowGroups.Clear();
        FeedForward.Clear();
        Last.Clear();
    }
}

/// <summary>One row group of whole chunks: the rest of a block after its summaries, on one thread.</summary>
internal sealed unsafe class RowGroupItems<TNorm, TFeedForward>(WorkerBuffers buffers, ModelConfig config) : IParallelWork
    where TNorm : struct, INormLayer
    where TFeedForward : struct, IFeedForward
{
    private readonly int _h = config.HiddenSize, _c = config.ChunkSize;
    private DualChunkBlock<TNorm, TFeedForward> _block;
    private float* _x, _normed, _inter;
    private int _rows;

    public void Set(in DualChunkBlock<TNorm, TFeedForward> block, float* x, float* normed, float* inter, int rows)
    {
        _block = block; _x = x; _normed = normed; _inter = inter; _rows = rows;
    }

    public void Clear()
    {
        _block = default; _x = null; _normed = null; _inter = null;
    }

    public void Execute(int item, int worker)
    {
        int g = buffers.GroupRows, r0 = item * g, n = Math.Min(g, _rows - r0);
        _block.RowGroup(new OnThisThread(buffers, worker),
            new Span<float>(_x + (long)r0 * _h, n * _h), new Span<float>(_normed + (long)r0 * _h, n * _h),
            new ReadOnlySpan<float>(_inter + (long)(r0 / _c) * _h, n / _c * _h), n, buffers.GroupQkv(worker), buffers.GroupAttn(worker));
    }
}

/// <summary>One FFN row block, on one thread.</summary>
internal sealed unsafe class FfnRowBlockItems<TNorm, TFeedForward>(WorkerBuffers buffers, ModelConfig config) : IParallelWork
    where TNorm : struct, INormLayer
    where TFeedForward : struct, IFeedForward
{
    private readonly int _h = config.HiddenSize;
    private DualChunkBlock<TNorm, TFeedForward> _block;
    private float* _x, _normed;
    private int _rows;

    public void Set(in DualChunkBlock<TNorm, TFeedForward> block, float* x, float* normed, int rows)
    {
        _block = block; _x = x; _normed = normed; _rows = rows;
    }

    public void Clear()
    {
        _block = default; _x = null; _normed = null;
    }

    public void Execute(int item, int worker)
    {
        int r0 = item * WorkspacePlan.FfnRowBlock, n = Math.Min(WorkspacePlan.FfnRowBlock, _rows - r0);
        _block.FeedForward(new OnThisThread(buffers, worker), new Span<float>(_x + (long)r0 * _h, n * _h), new Span<float>(_normed + (long)r0 * _h, n * _h), n);
    }
}

/// <summary>
/// A range of chunks' summaries (<see cref="DualChunkBlock{TNorm, TFeedForward}.ChunkSummaries"/>); with <c>withInter</c> each range is one
/// batch element's chunks and its inter-chunk attention follows on the same thread.
/// </summary>
internal sealed unsafe class SummaryItems<TNorm, TFeedForward>(WorkerBuffers buffers, ModelConfig config) : IParallelWork
    where TNorm : struct, INormLayer
    where TFeedForward : struct, IFeedForward
{
    private readonly int _h = config.HiddenSize, _c = config.ChunkSize;
    private DualChunkBlock<TNorm, TFeedForward> _block;
    private float* _x, _normed, _means, _summaries, _inter;
    private int _chunkRows, _perItem, _seqLen;
    private bool _withInter, _lastChunkOnly;

    public void Set(in DualChunkBlock<TNorm, TFeedForward> block, float* x, float* normed, float* means, float* summaries, float* inter,
        int chunkRows, int perItem, int seqLen, bool withInter, bool lastChunkOnly)
    {
        _block = block; _x = x; _normed = normed; _means = means; _summaries = summaries; _inter = inter;
        _chunkRows = chunkRows; _perItem = perItem; _seqLen = seqLen; _withInter = withInter; _lastChunkOnly = lastChunkOnly;
    }

    public void Clear()
    {
        _block = default; _x = null; _normed = null; _means = null; _summaries = null; _inter = null;
    }

    public void Execute(int item, int worker)
    {
        int first = item * _perItem, count = Math.Min(_perItem, _chunkRows - first), rows = _chunkRows * _c;
        var ex = new OnThisThread(buffers, worker);
        var summaries = new Span<float>(_summaries, _chunkRows * 3 * _h);
        _block.ChunkSummaries(ex, new ReadOnlySpan<float>(_x, rows * _h), new Span<float>(_normed, rows * _h),
            new Span<float>(_means, _chunkRows * _h), summaries, first, count, valuesOnly: _seqLen == _c);
        if (_withInter)
            ex.InterAttention(_block.Inter, summaries.Slice(first * 3 * _h, count * 3 * _h), 1, _seqLen,
                new Span<float>(_inter + (long)first * _h, count * _h), _lastChunkOnly);
    }
}

/// <summary>
/// One head: its inter-chunk attention over every batch element, then its intra-chunk attention and blend over the
/// chunks of a row group, which read only the inter columns this head wrote.
/// </summary>
internal sealed unsafe class HeadItems(WorkerBuffers buffers, ModelConfig config) : IParallelWork
{
    private readonly int _h = config.HiddenSize, _c = config.ChunkSize;
    private InterChunkAttention _interAttention;
    private IntraChunkAttention _intraAttention;
    private GateBlend _gate;
    private float* _summaries, _interAll, _qkv, _inter, _output;
    private int _batch, _seqLen, _chunks;
    private bool _lastChunkOnly, _lastRowOnly;

    public void Set(in InterChunkAttention interAttention, in IntraChunkAttention intraAttention, in GateBlend gate, float* summaries, float* interAll,
        int batch, int seqLen, bool lastChunkOnly, float* qkv, float* inter, float* output, int chunks, bool lastRowOnly)
    {
        _interAttention = interAttention; _intraAttention = intraAttention; _gate = gate; _summaries = summaries; _interAll = interAll;
        _batch = batch; _seqLen = seqLen; _lastChunkOnly = lastChunkOnly; _qkv = qkv; _inter = inter; _output = output; _chunks = chunks; _lastRowOnly = lastRowOnly;
    }

    public void Clear()
    {
        _gate = default; _summaries = null; _interAll = null; _qkv = null; _inter = null; _output = null;
    }

    public void Execute(int item, int worker)
    {
        var scratch = buffers.Scratch(worker);
        int chunkRows = _batch * (_seqLen / _c);
        var summaries = new ReadOnlySpan<float>(_summaries, chunkRows * 3 * _h);
        var interAll = new Span<float>(_interAll, chunkRows * _h);
        for (int b = 0; b < _batch; b++)
            _interAttention.ApplyHead(summaries, _seqLen, interAll, scratch, _lastChunkOnly, b, item);
        var qkv = new ReadOnlySpan<float>(_qkv, _chunks * _c * 3 * _h);
        var inter = new ReadOnlySpan<float>(_inter, _chunks * _h);
        var output = new Span<float>(_output, _chunks * _c * _h);
        for (int chunk = 0; chunk < _chunks; chunk++)
            _intraAttention.ApplyChunkHead(qkv, inter, _gate, output, scratch, _lastRowOnly, chunk, item);
    }
}

/// <summary>A range of batch elements of the last_timestep readout (<see cref="DualChunkBlock{TNorm, TFeedForward}.LastTimestepRows"/>), on one thread.</summary>
internal sealed unsafe class LastTimestepItems<TNorm, TFeedForward>(WorkerBuffers buffers, ModelConfig config) : IParallelWork
    where TNorm : struct, INormLayer
    where TFeedForward : struct, IFeedForward
{
    private readonly int _h = config.HiddenSize, _c = config.ChunkSize;
    private LayerNormLayer _finalNorm;
    private DualChunkBlock<TNorm, TFeedForward> _block;
    private float* _x, _normed, _inter, _lastAttn, _last, _lastNormed, _output;
    private int _batch, _seqLen, _perItem;

    public void Set(in DualChunkBlock<TNorm, TFeedForward> block, in LayerNormLayer finalNorm, float* x, float* normed, float* inter, float* lastAttn, float* last,
        float* lastNormed, float* output, int batch, int seqLen, int perItem)
    {
        _finalNorm = finalNorm; _block = block; _x = x; _normed = normed; _inter = inter; _lastAttn = lastAttn; _last = last;
        _lastNormed = lastNormed; _output = output; _batch = batch; _seqLen = seqLen; _perItem = perItem;
    }

    public void Clear()
    {
        _finalNorm = default; _block = default; _x = null; _normed = null; _inter = null; _lastAttn = null; _last = null; _lastNormed = null; _output = null;
    }

    public void Execute(int item, int worker)
    {
        int first = item * _perItem, count = Math.Min(_perItem, _batch - first), rows = _batch * _seqLen, bh = _batch * _h;
        _block.LastTimestepRows(new OnThisThread(buffers, worker), _finalNorm, new ReadOnlySpan<float>(_x, rows * _h), new ReadOnlySpan<float>(_normed, rows * _h),
            new ReadOnlySpan<float>(_inter, rows / _c * _h), buffers.GroupQkv(worker), buffers.GroupAttn(worker),
            new Span<float>(_lastAttn, bh), new Span<float>(_last, bh), new Span<float>(_lastNormed, bh), new Span<float>(_output, bh),
            first, count, _seqLen);
    }
}
