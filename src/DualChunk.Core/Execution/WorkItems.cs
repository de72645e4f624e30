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

/// <summary>A range of rows of y = LN(x).</summary>
internal sealed unsafe class LayerNormItems : RowRangeItems
{
    private LayerNormLayer _norm;

    public void Set(in LayerNormLayer norm, float* x, float* y, int rows, int perItem)
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

/// <summary>One row group of whole chunks: the rest of a block after its summaries, on one thread.</summary>
internal sealed unsafe class RowGroupItems(WorkerBuffers buffers, ModelConfig config) : IParallelWork
{
    private readonly int _h = config.HiddenSize, _c = config.ChunkSize;
    private DualChunkBlock _block;
    private float* _x, _normed, _inter;
    private int _rows;

    public void Set(in DualChunkBlock block, float* x, float* normed, float* inter, int rows)
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
internal sealed unsafe class FfnRowBlockItems(WorkerBuffers buffers, ModelConfig config) : IParallelWork
{
    private readonly int _h = config.HiddenSize;
    private DualChunkBlock _block;
    private float* _x, _normed;
    private int _rows;

    public void Set(in DualChunkBlock block, float* x, float* normed, int rows)
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
