using System.Runtime.CompilerServices;

namespace DualChunk.Core;

/// <summary>
/// Everything a forward pass mutates, planned once for calls up to a size and reused across calls. One workspace
/// serves one call at a time; the model pools them. All buffers are slices of one pinned array, each starting on a
/// 64-byte boundary; the buffers a worker thread writes privately (row-group rows, FFN hidden rows, attention
/// scratch) have one slice per worker.
/// </summary>
/// <remarks>
/// A call of batch B and sequence length N fits when B ≤ <see cref="MaxBatch"/>, N ≤ <see cref="MaxSeqLen"/> and
/// B·N ≤ <see cref="MaxRows"/>. Not thread-safe: one call at a time per workspace. Create one with
/// <see cref="DualChunkModel.CreateWorkspace"/>.
/// </remarks>
public sealed class Workspace
{
    private readonly float[] _memory;
    private readonly WorkspacePlan _plan;
    private readonly int _base;

    internal Workspace(ModelConfig config, in WorkspacePlan plan)
    {
        Config = config;
        _plan = plan;
        _memory = GC.AllocateUninitializedArray<float>(checked((int)plan.Floats), pinned: true);
        _base = AlignmentShift(_memory);
        Workers = new WorkerBuffers(_memory, _base, plan);
        Scheduler = new Scheduler(Workers, config);
    }

    /// <summary>The configuration this workspace was planned for.</summary>
    public ModelConfig Config { get; }

    /// <summary>Largest batch a call may use with this workspace.</summary>
    public int MaxBatch => (int)Math.Min(_plan.Batch, int.MaxValue);

    /// <summary>Largest sequence length a call may use with this workspace.</summary>
    public int MaxSeqLen => _plan.SeqLen;

    /// <summary>Largest number of rows, batch × sequence length, a call may use with this workspace.</summary>
    public long MaxRows => _plan.Rows;

    /// <summary>Bytes held by this workspace.</summary>
    public long Bytes => _memory.LongLength * sizeof(float);

    internal WorkspacePlan Plan => _plan;

    /// <summary>Worker slices planned: calls use at most this many threads.</summary>
    internal int WorkerCount => _plan.Workers;

    internal bool Fits(int batch, int seqLen) => _plan.Fits(batch, seqLen);

    internal Span<float> X => Slice(_plan.X);
    internal Span<float> Normed => Slice(_plan.Normed);
    internal Span<float> ChunkMeans => Slice(_plan.ChunkMeans);
    internal Span<float> Summaries => Slice(_plan.Summaries);
    internal Span<float> Inter => Slice(_plan.Inter);
    internal Span<float> Last => Slice(_plan.Last);
    internal Span<float> LastNormed => Slice(_plan.LastNormed);
    internal Span<float> LastAttn => Slice(_plan.LastAttn);

    /// <summary>The per-worker buffers (row group, FFN hidden rows, attention scratch).</summary>
    internal WorkerBuffers Workers { get; }

    /// <summary>Partitions and dispatches this workspace's calls (its work items are allocated once, here).</summary>
    internal Scheduler Scheduler { get; }

    private Span<float> Slice((long Offset, long Length) s) => _memory.AsSpan(_base + (int)s.Offset, (int)s.Length);

    private static unsafe int AlignmentShift(float[] pinned)
    {
        // The array is pinned, so its address is stable: shift the base to the next 64-byte line.
        nuint address = (nuint)Unsafe.AsPointer(ref pinned[0]);
        return (int)((64 - (address & 63)) & 63) / sizeof(float);
    }
}

/// <summary>The buffers one worker thread writes privately, one slice per worker slot, inside a workspace's array.</summary>
internal sealed class WorkerBuffers(float[] memory, int baseIndex, WorkspacePlan plan)
{
    /// <summary>Rows G of a row group (whole chunks, at most B·N).</summary>
    public int GroupRows { get; } = plan.GroupRows;

    public Span<float> GroupQkv(int worker) => Slice(plan.GroupQkv, worker);    // [G, 3H]
    public Span<float> GroupAttn(int worker) => Slice(plan.GroupAttn, worker);  // [G, H]
    public Span<float> FfnHidden(int worker) => Slice(plan.FfnHidden, worker);  // [FfnRowBlock, F]
    public Span<float> Scratch(int worker) => Slice(plan.Scratch, worker);      // attention scratch

    private Span<float> Slice((long Offset, long Length) s, int worker)
        => memory.AsSpan(baseIndex + (int)(s.Offset + worker * plan.WorkerFloats), (int)s.Length);
}
