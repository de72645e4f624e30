using System.Runtime.CompilerServices;
using DualChunk.Kernels;

namespace DualChunk.Core;

/// <summary>
/// Everything a forward pass mutates, planned once for a maximum batch and sequence length and
/// reused across calls. One workspace serves one call at a time; the model pools them.
/// All buffers are slices of one pinned array, each starting on a 64-byte boundary; the buffers a worker
/// thread writes privately (attention scratch, FFN hidden rows) have one slice per worker.
/// </summary>
/// <remarks>Not thread-safe: one call at a time per workspace. Create one with <see cref="DualChunkModel.CreateWorkspace"/>.</remarks>
public sealed class Workspace
{
    /// <summary>Rows of the FFN processed together: [FfnRowBlock, F] stays in L2.</summary>
    internal const int FfnRowBlock = 128;

    /// <summary>
    /// Target rows of a row group: the block after the summaries runs group by group (whole chunks), so a group's
    /// [G, 3H] queries/keys/values and [G, H] attention stay in L2 instead of streaming [B·N, 3H] through memory.
    /// </summary>
    internal const int TargetGroupRows = 256;

    private const int AlignFloats = 16; // 64 bytes
    private readonly float[] _memory;
    private readonly (int Offset, int Length) _x, _normed, _chunkMeans, _summaries, _inter, _last, _lastNormed, _lastAttn;
    private readonly (int Offset, int Length)[] _groupQkv, _groupAttn, _ffn, _scratch; // one per worker

    internal Workspace(ModelConfig config, int maxBatch, int maxSeqLen, int workers)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(workers);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxBatch);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxSeqLen);
        config.ValidateSequenceLength(maxSeqLen);
        Config = config;
        MaxBatch = maxBatch;
        MaxSeqLen = maxSeqLen;
        int h = config.HiddenSize, c = config.ChunkSize, d = config.HeadDim;
        long rows = (long)maxBatch * maxSeqLen, chunkRows = rows / c;
        long offset = 0;
        (int, int) Plan(long floats)
        {
            long start = offset;
            offset = (offset + floats + AlignFloats - 1) / AlignFloats * AlignFloats;
            return ((int)start, (int)floats);
        }
        GroupRows = (int)Math.Min(rows, Math.Max(1, TargetGroupRows / c) * (long)c);
        _x = Plan(rows * h);                                   // [B·N, H]   residual stream
        _normed = Plan(rows * h);                              // [B·N, H]   layer-norm output
        _chunkMeans = Plan(chunkRows * h);                     // [B·NC, H]  chunk means of the layer-norm output
        _summaries = Plan(chunkRows * 3 * h);                  // [B·NC, 3H] q̄ | k̄ | v̄
        _inter = Plan(chunkRows * h);                          // [B·NC, H]  inter-chunk attention
        _last = Plan((long)maxBatch * h);                      // [B, H]     residual at position N-1 (readout)
        _lastNormed = Plan((long)maxBatch * h);                // [B, H]
        _lastAttn = Plan((long)maxBatch * h);                  // [B, H]     blended attention at position N-1
        _groupQkv = new (int, int)[workers];
        _groupAttn = new (int, int)[workers];
        _ffn = new (int, int)[workers];
        _scratch = new (int, int)[workers];
        for (int w = 0; w < workers; w++)
        {
            _groupQkv[w] = Plan((long)GroupRows * 3 * h);      // [G, 3H] queries | keys | values of a row group, per worker
            _groupAttn[w] = Plan((long)GroupRows * h);         // [G, H]  its blended attention, per worker
            _ffn[w] = Plan((long)Math.Min(rows, FfnRowBlock) * config.FfnSize); // [rowBlock, F] FFN hidden, per worker
            _scratch[w] = Plan(Math.Max(CausalAttention.ScratchFloats(c, d), CausalAttention.ScratchFloats(maxSeqLen / c, d))); // per worker
        }
        if (offset + AlignFloats > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(maxSeqLen),
                $"A workspace for batch {maxBatch} × {maxSeqLen} positions needs {offset * 4L:N0} bytes, more than one .NET array holds; run smaller batches.");
        _memory = GC.AllocateUninitializedArray<float>((int)offset + AlignFloats, pinned: true);
        Base = AlignmentShift(_memory);
        Workers = workers;
        Phases = new PhaseRunner(this);
    }

    /// <summary>The configuration this workspace was planned for.</summary>
    public ModelConfig Config { get; }

    /// <summary>Largest batch a call may use with this workspace.</summary>
    public int MaxBatch { get; }

    /// <summary>Largest sequence length a call may use with this workspace.</summary>
    public int MaxSeqLen { get; }

    /// <summary>Worker slices (attention scratch, FFN rows) planned: calls use at most this many threads.</summary>
    public int Workers { get; }

    /// <summary>Rows G of a row group (whole chunks, at most B·N): the unit of the block's per-group work.</summary>
    internal int GroupRows { get; }

    /// <summary>Bytes held by this workspace.</summary>
    public long Bytes => _memory.LongLength * sizeof(float);

    private int Base { get; }

    internal bool Fits(int batch, int seqLen) => batch <= MaxBatch && seqLen <= MaxSeqLen && (long)batch * seqLen <= (long)MaxBatch * MaxSeqLen;

    internal Span<float> X => Slice(_x);
    internal Span<float> Normed => Slice(_normed);
    internal Span<float> ChunkMeans => Slice(_chunkMeans);
    internal Span<float> Summaries => Slice(_summaries);
    internal Span<float> Inter => Slice(_inter);
    internal Span<float> Last => Slice(_last);
    internal Span<float> LastNormed => Slice(_lastNormed);
    internal Span<float> LastAttn => Slice(_lastAttn);
    internal Span<float> GroupQkv(int worker) => Slice(_groupQkv[worker]);
    internal Span<float> GroupAttn(int worker) => Slice(_groupAttn[worker]);
    internal Span<float> Ffn(int worker) => Slice(_ffn[worker]);
    internal Span<float> Scratch(int worker) => Slice(_scratch[worker]);

    /// <summary>The parallel-phase descriptor of the call running on this workspace (allocated once, here).</summary>
    internal PhaseRunner Phases { get; }

    private Span<float> Slice((int Offset, int Length) s) => _memory.AsSpan(Base + s.Offset, s.Length);

    private static unsafe int AlignmentShift(float[] pinned)
    {
        // The array is pinned, so its address is stable: shift the base to the next 64-byte line.
        nuint address = (nuint)Unsafe.AsPointer(ref pinned[0]);
        return (int)((64 - (address & 63)) & 63) / sizeof(float);
    }
}
