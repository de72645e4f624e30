using System.Globalization;

namespace DualChunk.Core;

/// <summary>
/// A model's idle workspaces. A call rents one that fits its shape, or a new one planned for what it needs.
/// </summary>
/// <remarks>
/// On a miss the largest idle workspace is dropped and the new one is planned for the larger of its capacities and
/// the call's (rows B·N and sequence length N separately, never max B × max N), so the pool converges on one
/// workspace that fits the traffic without ever costing more than the two shapes together; when that merge would not
/// fit one array or the byte budget, the call's own shape is planned alone. Thread-safe.
/// </remarks>
internal sealed class WorkspacePool(ModelConfig config, int workers, long? maxBytes, DualChunkInstruments metrics)
{
    private readonly Lock _lock = new();
    private Workspace[] _idle = new Workspace[4]; // a stack
    private int _count;
    private long _bytes;

    /// <summary>Bytes held by the idle workspaces.</summary>
    public long Bytes
    {
        get
        {
            lock (_lock) return _bytes;
        }
    }

    /// <summary>The plan for exactly one call of <paramref name="batch"/> × <paramref name="seqLen"/>, checked against the limits (throws before anything is allocated).</summary>
    public WorkspacePlan PlanFor(int batch, int seqLen) => Checked(Pooled((long)batch * seqLen, seqLen), batch, seqLen);

    /// <summary>
    /// The plan for one append of a stream of <paramref name="batch"/> sequences with room for
    /// <paramref name="chunks"/> chunks: B·C rows, the inter-chunk attention scratch over the whole room (checked
    /// against the limits; throws before anything is allocated).
    /// </summary>
    public WorkspacePlan PlanForAppend(int batch, int chunks)
    {
        int c = config.ChunkSize;
        int seqLen = (int)Math.Min((long)chunks * c, int.MaxValue / c * c);
        return Checked(Pooled((long)batch * c, seqLen), batch, seqLen);
    }

    /// <summary>An idle workspace that fits a call of <paramref name="batch"/> × <paramref name="seqLen"/>, or a new one.</summary>
    public Workspace Rent(int batch, int seqLen) => Rent(batch, (long)batch * seqLen, seqLen, PlanFor(batch, seqLen));

    /// <summary>
    /// An idle workspace that fits one append of a stream of <paramref name="batch"/> sequences whose new chunk attends
    /// over <paramref name="chunks"/> chunks, or a new one planned for the stream's room of <paramref name="roomChunks"/>
    /// (<see cref="PlanForAppend"/>), so a growing stream replans only when its room doubles. A stream holds none
    /// between appends.
    /// </summary>
    public Workspace RentForAppend(int batch, int chunks, int roomChunks)
    {
        var alone = PlanForAppend(batch, Math.Max(chunks, roomChunks));
        return Rent(batch, alone.Rows, chunks * config.ChunkSize, alone);
    }

    private Workspace Rent(long batch, long rows, int seqLen, in WorkspacePlan alone)
    {
        WorkspacePlan? merged = null;
        lock (_lock)
        {
            for (int i = _count - 1; i >= 0; i--)
            {
                var ws = _idle[i];
                if (ws.Plan.Fits(batch, rows, seqLen))
                    return Take(i);
            }
            if (_count > 0)
            {
                int largest = 0;
                for (int i = 1; i < _count; i++)
                    if (_idle[i].Bytes > _idle[largest].Bytes) largest = i;
                var dropped = Take(largest).Plan;
                var union = Pooled(Math.Max(alone.Rows, dropped.Rows), Math.Max(alone.SeqLen, dropped.SeqLen));
                if (union.FitsOneArray && union.Bytes <= (maxBytes ?? long.MaxValue))
                    merged = union;
            }
        }
        return new Workspace(config, merged ?? alone);
    }

    public void Return(Workspace ws)
    {
        lock (_lock)
        {
            if (_count == _idle.Length)
                Array.Resize(ref _idle, _idle.Length * 2);
            _idle[_count++] = ws;
            _bytes += ws.Bytes;
            metrics.AddWorkspaceBytes(ws.Bytes);
        }
    }

    public void Clear()
    {
        lock (_lock)
        {
            metrics.AddWorkspaceBytes(-_bytes);
            _bytes = 0;
            Array.Clear(_idle);
            _count = 0;
        }
    }

    /// <summary>A pooled plan: any batch whose rows fit (B ≤ rows / C, as N ≥ C).</summary>
    private WorkspacePlan Pooled(long rows, int seqLen) => new(config, rows, seqLen, rows / config.ChunkSize, workers);

    /// <summary>Throws, before anything is allocated, when <paramref name="plan"/> exceeds one array or the byte budget.</summary>
    public WorkspacePlan Checked(in WorkspacePlan plan, long batch, int seqLen)
    {
        if (!plan.FitsOneArray)
            throw new ArgumentOutOfRangeException(nameof(batch), batch, string.Create(CultureInfo.InvariantCulture,
                $"A call of batch {batch} × seq_len {seqLen} needs a {plan.Bytes:N0}-byte workspace, more than one .NET array holds; send fewer or shorter sequences per call."));
        if (plan.Bytes > maxBytes)
            throw new ArgumentOutOfRangeException(nameof(batch), batch, string.Create(CultureInfo.InvariantCulture,
                $"A call of batch {batch} × seq_len {seqLen} needs a {plan.Bytes:N0}-byte workspace, over DualChunkModelOptions.MaxWorkspaceBytes = {maxBytes:N0}; send fewer or shorter sequences per call, or raise MaxWorkspaceBytes."));
        return plan;
    }

    private Workspace Take(int i)
    {
        var ws = _idle[i];
        _idle[i] = _idle[--_count];
        _idle[_count] = null!;
        _bytes -= ws.Bytes;
        metrics.AddWorkspaceBytes(-ws.Bytes);
        return ws;
    }
}
