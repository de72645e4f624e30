using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using DualChunk.Kernels;

namespace DualChunk.Core;

/// <summary>
/// The forward pass's operations cut into independent items by data partition (GEMM row × column blocks whose
/// columns start at multiples of <see cref="PackedMatrix.PanelWidth"/>, layer-norm row ranges, chunk ranges of the
/// chunk means, (batch, head) and (chunk, head) attention items, FFN row blocks, row groups of a block), run on the
/// calling thread or, when the call holds its model's <see cref="WorkerGroup"/>, on the group's threads too.
/// </summary>
/// <remarks>
/// Every output element is computed by the same kernel call arithmetic whatever the partition (the GEMM guarantees
/// it for any row or column range; the other kernels work row by row or item by item), so results are bitwise
/// identical for every thread count. One runner per <see cref="Workspace"/>, allocated with it: a phase stores its
/// arguments in fields (buffers as pointers: the workspace array is pinned and the model pins the caller's input
/// and output for the call), so starting a phase allocates nothing.
/// </remarks>
internal sealed unsafe class PhaseRunner : IParallelWork
{
    /// <summary>Multiply-adds below which a GEMM runs on the calling thread alone (waking a helper costs more).</summary>
    /// <remarks>Mutable only so tests can force every split on tiny models; results never depend on it.</remarks>
    internal static long MinParallelMacs = 1 << 20;

    /// <summary>Floats below which a row-wise op (layer norm, summaries) runs on the calling thread alone.</summary>
    internal static long MinParallelFloats = 1 << 17;

    /// <summary>Row-split granularity of a GEMM: the kernel's M block (GemmRowBlock), so A rows stay blocked as in one call.</summary>
    private const int GemmRowBlock = 96;

    private enum Kind { Dense, LayerNorm, ChunkMeans, Inter, Intra, FfnRows, GroupRows }

    private readonly Workspace _ws;
    private WorkerGroup? _group;
    private Kind _kind;

    // Dense: rows [r·rowStep, ...) × columns [colStart + c·colStep, ...) of C = A · W (+ epilogue).
    private DenseLayer _dense;
    private float* _a, _c;
    private int _m, _lda, _ldc, _colStart, _colEnd, _rowStep, _colStep, _colChunks;

    // Row-wise ops, attention and FFN.
    private LayerNormLayer _norm;
    private InterChunkAttention _inter;
    private DualChunkBlock _block;
    private float* _x, _y, _z;
    private int _rows, _perItem, _batch, _seqLen, _chunks;
    private bool _lastOnly;

    public PhaseRunner(Workspace ws) => _ws = ws;

    /// <summary>Threads a phase of this call may use (1 when the call does not hold a worker group).</summary>
    public int Workers { get; private set; } = 1;

    /// <summary>Starts a call: <paramref name="group"/> is the acquired group, or null to run on the caller only.</summary>
    public void Begin(WorkerGroup? group)
    {
        _group = group;
        Workers = group is null ? 1 : Math.Min(group.Workers, _ws.Workers);
    }

    /// <summary>Ends a call and forgets every pointer it used.</summary>
    public void End()
    {
        _group = null;
        Workers = 1;
        _a = _c = _x = _y = _z = null;
        _block = default;
        _dense = default;
        _norm = default;
    }

    /// <summary>C[r, 0:Out] (op)= A[r, 0:In] · W + b for r in [0, m).</summary>
    public void Dense(in DenseLayer layer, ReadOnlySpan<float> a, int m, int lda, Span<float> c, int ldc)
        => Dense(layer, a, m, lda, c, ldc, 0, layer.Out);

    /// <summary>Only columns [start, start + count); start a multiple of <see cref="PackedMatrix.PanelWidth"/>.</summary>
    public void Dense(in DenseLayer layer, ReadOnlySpan<float> a, int m, int lda, Span<float> c, int ldc, int start, int count)
    {
        int w = Workers;
        if (w == 1 || (long)m * layer.In * count < MinParallelMacs)
        {
            layer.ApplyColumns(a, m, lda, c, ldc, start, count);
            return;
        }
        // Bounds once here (the kernel re-checks each item against spans rebuilt from these pointers).
        if (a.Length < (long)(m - 1) * lda + layer.In || c.Length < (long)(m - 1) * ldc + layer.Out)
            throw new ArgumentException("GEMM operand shorter than its shape.");
        int panels = (count + PackedMatrix.PanelWidth - 1) / PackedMatrix.PanelWidth;
        int colChunks = Math.Min(panels, 2 * w);
        _colStep = (panels + colChunks - 1) / colChunks * PackedMatrix.PanelWidth;
        _colChunks = (count + _colStep - 1) / _colStep;
        int rowChunks = m >= 2 * GemmRowBlock ? Math.Min((m + GemmRowBlock - 1) / GemmRowBlock, Math.Max(1, (4 * w + _colChunks - 1) / _colChunks)) : 1;
        _rowStep = (m + rowChunks - 1) / rowChunks;
        if (rowChunks > 1) _rowStep = (_rowStep + GemmRowBlock - 1) / GemmRowBlock * GemmRowBlock;
        rowChunks = (m + _rowStep - 1) / _rowStep;

        _kind = Kind.Dense;
        _dense = layer;
        _a = P(a);
        _c = P(c);
        _m = m;
        _lda = lda;
        _ldc = ldc;
        _colStart = start;
        _colEnd = start + count;
        Run(rowChunks * _colChunks);
    }

    /// <summary>y = LN(x) over <paramref name="rows"/> rows.</summary>
    public void LayerNorm(in LayerNormLayer norm, ReadOnlySpan<float> x, int rows, Span<float> y)
    {
        int width = norm.Width;
        if (Workers == 1 || (long)rows * width < MinParallelFloats)
        {
            norm.Apply(x, rows, y);
            return;
        }
        if (x.Length < (long)rows * width || y.Length < (long)rows * width)
            throw new ArgumentException("Layer-norm operand shorter than its shape.");
        _kind = Kind.LayerNorm;
        _norm = norm;
        _x = P(x);
        _y = P(y);
        _rows = rows;
        RunRanges(rows);
    }

    /// <summary>Chunk means of <paramref name="h"/> [B·N, H] into <paramref name="chunkMeans"/> [B·N/C, H].</summary>
    public void ChunkMeans(in InterChunkAttention attention, ReadOnlySpan<float> h, int rows, Span<float> chunkMeans)
    {
        int width = _ws.Config.HiddenSize, chunkRows = rows / _ws.Config.ChunkSize;
        if (Workers == 1 || (long)rows * width < MinParallelFloats)
        {
            attention.ChunkMeans(h, 0, chunkRows, chunkMeans);
            return;
        }
        if (h.Length < (long)rows * width || chunkMeans.Length < (long)chunkRows * width)
            throw new ArgumentException("Chunk-mean operand shorter than its shape.");
        _kind = Kind.ChunkMeans;
        _inter = attention;
        _x = P(h);
        _y = P(chunkMeans);
        _rows = chunkRows;
        _seqLen = rows;
        RunRanges(chunkRows);
    }

    /// <summary>Runs the current row-wise phase as up to 4 items per worker of <see cref="_perItem"/> consecutive rows each.</summary>
    private void RunRanges(int rows)
    {
        int items = Math.Min(rows, 4 * Workers);
        _perItem = (rows + items - 1) / items;
        Run((rows + _perItem - 1) / _perItem);
    }

    /// <summary>
    /// Inter-chunk attention per (batch, head): causal attention over the chunk summaries
    /// <paramref name="summaries"/> [B·NC, 3H] into <paramref name="inter"/> [B·NC, H].
    /// </summary>
    public void InterAttention(in InterChunkAttention attention, ReadOnlySpan<float> summaries, int batch, int seqLen, Span<float> inter, bool lastChunkOnly)
    {
        int h = _ws.Config.HiddenSize, chunkRows = batch * (seqLen / _ws.Config.ChunkSize);
        if (summaries.Length < (long)chunkRows * 3 * h || inter.Length < (long)chunkRows * h)
            throw new ArgumentException("Attention operand shorter than its shape.");
        _kind = Kind.Inter;
        _inter = attention;
        _y = P(summaries);
        _z = P(inter);
        _batch = batch;
        _seqLen = seqLen;
        _lastOnly = lastChunkOnly;
        Run(batch * attention.Heads);
    }

    /// <summary>
    /// Intra-chunk attention per (chunk, head) over <paramref name="chunks"/> consecutive chunks: <paramref name="qkv"/>
    /// [chunks·C, 3H], blended with their inter-chunk rows <paramref name="inter"/> [chunks, H], into
    /// <paramref name="output"/> [chunks·C, H]; <paramref name="lastRowOnly"/>: only the last row of each chunk.
    /// </summary>
    public void IntraAttention(in DualChunkBlock block, ReadOnlySpan<float> qkv, int chunks, ReadOnlySpan<float> inter, Span<float> output, bool lastRowOnly)
    {
        int chunkSize = _ws.Config.ChunkSize, h = _ws.Config.HiddenSize;
        if (qkv.Length < (long)chunks * chunkSize * 3 * h || inter.Length < (long)chunks * h || output.Length < (long)chunks * chunkSize * h)
            throw new ArgumentException("Attention operand shorter than its shape.");
        _kind = Kind.Intra;
        _block = block;
        _x = P(qkv);
        _y = P(inter);
        _z = P(output);
        _chunks = chunks;
        _lastOnly = lastRowOnly;
        Run(chunks * block.Intra.Heads);
    }

    /// <summary>
    /// The rest of a block after the inter-chunk attention, over <paramref name="rows"/> rows of x [rows, H] in row
    /// groups of whole chunks: qkv = LN(x)·W_qkv + b (from <paramref name="normed"/>), intra-chunk attention blended with
    /// <paramref name="inter"/> [rows/C, H], x += attn·W_out + b_out, then the FFN. Each group is one item on one
    /// thread (its own [G, 3H] and [G, H] buffers) when there are enough groups; otherwise the groups run in turn,
    /// each operation split over the workers.
    /// </summary>
    public void GroupRows(in DualChunkBlock block, Span<float> x, Span<float> normed, ReadOnlySpan<float> inter, int rows)
    {
        int h = _ws.Config.HiddenSize, c = _ws.Config.ChunkSize, g = _ws.GroupRows, groups = (rows + g - 1) / g;
        if (x.Length < (long)rows * h || normed.Length < (long)rows * h || inter.Length < (long)rows / c * h)
            throw new ArgumentException("Block operand shorter than its shape.");
        if (Workers == 1 || groups >= Workers)
        {
            _kind = Kind.GroupRows;
            _block = block;
            _x = P(x);
            _y = P(normed);
            _z = P(inter);
            _rows = rows;
            Run(groups);
            return;
        }
        var qkv = _ws.GroupQkv(0);                                 // [G, 3H]
        var attn = _ws.GroupAttn(0);                               // [G, H]
        for (int r0 = 0; r0 < rows; r0 += g)
        {
            int n = Math.Min(g, rows - r0);
            var xGroup = x.Slice(r0 * h, n * h);                   // [n, H]
            var hGroup = normed.Slice(r0 * h, n * h);              // [n, H]
            Dense(block.Qkv, hGroup, n, h, qkv, 3 * h);
            IntraAttention(block, qkv, n / c, inter.Slice(r0 / c * h, n / c * h), attn, lastRowOnly: false);
            Dense(block.AttnOut, attn, n, h, xGroup, h);           // x += attn · W_out + b_out
            Ffn(block, xGroup, hGroup, n);
        }
    }

    /// <summary>
    /// x += GELU(LN(x) · W_up + b_up) · W_down + b_down over <paramref name="rows"/> rows of x [rows, H], using
    /// <paramref name="normed"/> [rows, H] for LN(x). Blocks of <see cref="Workspace.FfnRowBlock"/> rows are the
    /// items when there are enough of them; otherwise each block's two GEMMs are split by columns.
    /// </summary>
    public void Ffn(in DualChunkBlock block, Span<float> x, Span<float> normed, int rows)
    {
        int h = _ws.Config.HiddenSize, f = _ws.Config.FfnSize, rowBlocks = (rows + Workspace.FfnRowBlock - 1) / Workspace.FfnRowBlock;
        if (x.Length < (long)rows * h || normed.Length < (long)rows * h)
            throw new ArgumentException("FFN operand shorter than its shape.");
        if (Workers == 1 || rowBlocks >= Workers)
        {
            _kind = Kind.FfnRows;
            _block = block;
            _x = P(x);
            _y = P(normed);
            _rows = rows;
            Run(rowBlocks);
            return;
        }
        var ffn = _ws.Ffn(0);
        for (int r0 = 0; r0 < rows; r0 += Workspace.FfnRowBlock)
        {
            int n = Math.Min(Workspace.FfnRowBlock, rows - r0);
            var xBlock = x.Slice(r0 * h, n * h);             // [n, H]
            var hBlock = normed.Slice(r0 * h, n * h);        // [n, H]
            block.FfnNorm.Apply(xBlock, n, hBlock);
            Dense(block.FfnUp, hBlock, n, h, ffn, f);        // [n, F], GELU fused
            Dense(block.FfnDown, ffn, n, f, xBlock, h);      // x += ...
        }
    }

    private void Run(int items)
    {
        if (_group is null || items <= 1)
        {
            for (int i = 0; i < items; i++) Execute(i, 0);
            return;
        }
        _group.Run(this, items, Workers);
    }

    /// <summary>Runs item <paramref name="item"/> of the current phase with worker slot <paramref name="worker"/>'s scratch.</summary>
    public void Execute(int item, int worker)
    {
        var config = _ws.Config;
        int h = config.HiddenSize;
        switch (_kind)
        {
            case Kind.Dense:
            {
                int r0 = item / _colChunks * _rowStep, rows = Math.Min(_rowStep, _m - r0);
                int c0 = _colStart + item % _colChunks * _colStep, cols = Math.Min(_colStep, _colEnd - c0);
                var a = new ReadOnlySpan<float>(_a + (long)r0 * _lda, (rows - 1) * _lda + _dense.In);
                var c = new Span<float>(_c + (long)r0 * _ldc, (rows - 1) * _ldc + _dense.Out);
                _dense.ApplyColumns(a, rows, _lda, c, _ldc, c0, cols);
                break;
            }
            case Kind.LayerNorm:
            {
                int r0 = item * _perItem, rows = Math.Min(_perItem, _rows - r0), width = _norm.Width;
                _norm.Apply(new ReadOnlySpan<float>(_x + (long)r0 * width, rows * width), rows, new Span<float>(_y + (long)r0 * width, rows * width));
                break;
            }
            case Kind.ChunkMeans:
            {
                int first = item * _perItem, count = Math.Min(_perItem, _rows - first);
                _inter.ChunkMeans(new ReadOnlySpan<float>(_x, _seqLen * h), first, count, new Span<float>(_y, _rows * h));
                break;
            }
            case Kind.Inter:
            {
                int b = item / _inter.Heads, head = item % _inter.Heads, chunkRows = _batch * _seqLen / config.ChunkSize;
                _inter.ApplyHead(new ReadOnlySpan<float>(_y, chunkRows * 3 * h), _seqLen, new Span<float>(_z, chunkRows * h),
                    _ws.Scratch(worker), _lastOnly, b, head);
                break;
            }
            case Kind.Intra:
            {
                int heads = _block.Intra.Heads, chunk = item / heads, head = item % heads, c = config.ChunkSize;
                _block.Intra.ApplyHead(new ReadOnlySpan<float>(_x + (long)chunk * c * 3 * h, c * 3 * h), new ReadOnlySpan<float>(_y + (long)chunk * h, h),
                    _block.Gate, new Span<float>(_z + (long)chunk * c * h, c * h), _ws.Scratch(worker), _lastOnly, head);
                break;
            }
            case Kind.GroupRows:
            {
                int g = _ws.GroupRows, c = config.ChunkSize, r0 = item * g, n = Math.Min(g, _rows - r0), heads = _block.Intra.Heads;
                var xGroup = new Span<float>(_x + (long)r0 * h, n * h);             // [n, H]
                var hGroup = new Span<float>(_y + (long)r0 * h, n * h);             // [n, H]
                var qkv = _ws.GroupQkv(worker);                                      // [G, 3H]
                var attn = _ws.GroupAttn(worker);                                    // [G, H]
                var scratch = _ws.Scratch(worker);
                _block.Qkv.Apply(hGroup, n, h, qkv, 3 * h);
                for (int chunk = 0; chunk < n / c; chunk++)
                {
                    var interRow = new ReadOnlySpan<float>(_z + (long)(r0 / c + chunk) * h, h);
                    for (int head = 0; head < heads; head++)
                        _block.Intra.ApplyHead(qkv[(chunk * c * 3 * h)..], interRow, _block.Gate, attn[(chunk * c * h)..], scratch, false, head);
                }
                _block.AttnOut.Apply(attn, n, h, xGroup, h);                          // x += attn · W_out + b_out
                FfnRows(xGroup, hGroup, n, worker);
                break;
            }
            case Kind.FfnRows:
            {
                int r0 = item * Workspace.FfnRowBlock, n = Math.Min(Workspace.FfnRowBlock, _rows - r0);
                FfnRows(new Span<float>(_x + (long)r0 * h, n * h), new Span<float>(_y + (long)r0 * h, n * h), n, worker);
                break;
            }
        }
    }

    /// <summary>x += GELU(LN(x) · W_up + b_up) · W_down + b_down on <paramref name="rows"/> rows, one FFN row block at a time, on this thread.</summary>
    private void FfnRows(Span<float> x, Span<float> normed, int rows, int worker)
    {
        int h = _ws.Config.HiddenSize, f = _ws.Config.FfnSize;
        var ffn = _ws.Ffn(worker);                                                   // [FfnRowBlock, F] this worker's slice
        for (int r0 = 0; r0 < rows; r0 += Workspace.FfnRowBlock)
        {
            int n = Math.Min(Workspace.FfnRowBlock, rows - r0);
            var xBlock = x.Slice(r0 * h, n * h);                                     // [n, H]
            var hBlock = normed.Slice(r0 * h, n * h);                                // [n, H]
            _block.FfnNorm.Apply(xBlock, n, hBlock);
            _block.FfnUp.Apply(hBlock, n, h, ffn, f);                                // GELU fused
            _block.FfnDown.Apply(ffn, n, f, xBlock, h);                              // x += ...
        }
    }

    /// <summary>Address of a span's first element; only for pinned memory (the workspace, or the pinned caller buffers).</summary>
    private static float* P(ReadOnlySpan<float> s) => (float*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(s));
}
