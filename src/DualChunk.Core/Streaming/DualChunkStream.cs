using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Globalization;

namespace DualChunk.Core;

/// <summary>
/// B sequences that grow one chunk of C positions at a time: <see cref="Append"/> runs the model on the new chunk only
/// and returns what <see cref="DualChunkModel.Run(ReadOnlySpan{float}, int, int, Span{float}, OutputMode, CancellationToken)"/>
/// returns for the whole prefix, bitwise, at the cost of one chunk whatever the length (docs/model.md "Streaming").
/// Create one with <see cref="DualChunkModel.CreateStream"/>. (Not a <see cref="System.IO.Stream"/>: a stream of chunks.)
/// </summary>
/// <remarks>
/// <para>The stream owns its state (per layer the key and value summaries of every chunk so far, L × NC × 2H floats
/// per sequence, plus 2H float64 running sums per sequence for the mean pool), nothing else: each <see cref="Append"/>
/// rents its working buffers from the model's workspace pool, as Run does, and returns them.
/// <see cref="Append"/> allocates nothing while the length stays within <see cref="Capacity"/>; the append that
/// reaches it doubles the capacity (amortised growth, it allocates), or call <see cref="EnsureCapacity"/> up front.</para>
/// <para>Not thread-safe: one call at a time (a concurrent call throws <see cref="InvalidOperationException"/>).
/// Streams of one model may run in parallel; the model's intra-op threads go to one call at a time as for Run.</para>
/// <para>A failed <see cref="Append"/> (bad input, cancellation, overflow) leaves the stream as it was.</para>
/// </remarks>
[SuppressMessage("Naming", "CA1711", Justification = "A stream of chunks is the issue's and the CLI's word (dualchunk stream); it is not a System.IO.Stream, and the docs say so.")]
public sealed partial class DualChunkStream : IDisposable
{
    private readonly DualChunkModel _model;
    private readonly StreamState _state;
    private readonly double[] _sumsWork;
    private int _chunks, _busy;
    private bool _meanValid = true, _disposed;

    internal DualChunkStream(DualChunkModel model, int batch, int capacityChunks)
    {
        _model = model;
        Batch = batch;
        _state = new StreamState(model.Config, batch, capacityChunks);
        _sumsWork = new double[_state.Sums.Length];
    }

    /// <summary>The model the stream runs.</summary>
    public DualChunkModel Model => _model;

    /// <summary>B: sequences advancing together.</summary>
    public int Batch { get; }

    /// <summary>C: positions per <see cref="Append"/>.</summary>
    public int ChunkSize => _model.Config.ChunkSize;

    /// <summary>Positions appended so far to each sequence (a multiple of C).</summary>
    public int Length => _chunks * ChunkSize;

    /// <summary>Positions the state has room for before an <see cref="Append"/> grows it.</summary>
    public int Capacity => _state.Capacity * ChunkSize;

    /// <summary>
    /// Bytes of the state: L·B·(Capacity / C)·2H floats + B·2H doubles. The stream holds nothing else of size (besides
    /// B·2H doubles of work sums): an <see cref="Append"/> rents its workspace from the model's pool.
    /// </summary>
    public long StateBytes => _state.Bytes;

    /// <summary>
    /// Bytes of state a stream of <paramref name="batch"/> sequences needs for <paramref name="positions"/> positions:
    /// L·B·(N / C)·2H·4 + B·2H·8.
    /// </summary>
    public static long StateBytesFor(ModelConfig config, int batch, long positions)
    {
        ArgumentNullException.ThrowIfNull(config);
        return StreamState.BytesFor(config, batch, positions / config.ChunkSize);
    }

    /// <summary>
    /// False once a <see cref="OutputMode.LastTimestep"/> append skipped the last block on all but the last position:
    /// the mean pool then lacks those positions, and a <see cref="OutputMode.MeanPool"/> append throws until
    /// <see cref="Reset"/>.
    /// </summary>
    public bool CanMeanPool => _meanValid;

    /// <summary>Floats the output of one <see cref="Append"/> holds: B·C·H for <see cref="OutputMode.All"/>, else B·H.</summary>
    public int OutputLength(OutputMode mode) => mode == OutputMode.All ? Batch * ChunkSize * _model.Config.HiddenSize : Batch * _model.Config.HiddenSize;

    /// <summary>
    /// Appends one chunk to every sequence and writes that chunk's output: <paramref name="chunk"/> is [B, C, E];
    /// <paramref name="output"/> is [B, C, H] for <see cref="OutputMode.All"/> (the chunk's positions), [B, H] for
    /// <see cref="OutputMode.LastTimestep"/> (its last position) and for <see cref="OutputMode.MeanPool"/> (the mean
    /// over every position so far). Bitwise what Run returns for the prefix that ends with this chunk.
    /// </summary>
    /// <exception cref="ArgumentException">The chunk is not B × C × E floats (only whole chunks: Edifice defines no output for a length that is not a multiple of C), holds NaN/∞, or the output length is wrong.</exception>
    /// <exception cref="InvalidOperationException">MeanPool after a LastTimestep append, the length would pass the model's MaxSeqLen, or another call is using the stream.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled (checked between layers; the stream is unchanged).</exception>
    /// <exception cref="NumericalOverflowException">The model overflowed float32 on finite input (the stream is unchanged).</exception>
    /// <exception cref="ObjectDisposedException">The stream or the model was disposed.</exception>
    public void Append(ReadOnlySpan<float> chunk, Span<float> output, OutputMode mode = OutputMode.LastTimestep, CancellationToken cancellationToken = default)
    {
        long start = Stopwatch.GetTimestamp();
        var metrics = _model.Metrics.Appends; // dualchunk.stream.appends and .append.duration, like Run's
        using var activity = DualChunkTracing.StartAppend(_model, Batch, ChunkSize, (long)_chunks * ChunkSize, mode); // null when nothing listens
        try
        {
            Begin();
            try
            {
                ValidateAppend(chunk, output, mode);
                if (_chunks == _state.Capacity)
                    Reserve(checked(2 * _state.Capacity), MaxChunks());
                if (_model.AppendCore(this, chunk, output, mode, cancellationToken))
                    CommitSums();
                _chunks++;
                if (mode == OutputMode.LastTimestep) _meanValid = false;
            }
            finally
            {
                End();
            }
        }
        catch (Exception ex) when (metrics.RecordFailure(mode, start, ex) | DualChunkTracing.Failed(activity, ex))
        {
            throw; // never reached: the filter records and declines
        }
        metrics.RecordCall(mode, start);
    }

    /// <summary>Makes room for <paramref name="positions"/> positions (a multiple of C), so appends up to there allocate nothing.</summary>
    /// <exception cref="ArgumentException"><paramref name="positions"/> is not a positive multiple of C, or over the model's MaxSeqLen.</exception>
    public void EnsureCapacity(int positions)
    {
        Begin();
        try
        {
            _model.Config.ValidateSequenceLength(positions);
            int chunks = positions / ChunkSize, max = MaxChunks();
            if (chunks > max)
                throw new ArgumentOutOfRangeException(nameof(positions), positions, string.Create(CultureInfo.InvariantCulture,
                    $"Capacity {positions} is over the model's MaxSeqLen = {max * ChunkSize}; reserve at most that, or raise DualChunkModelOptions.MaxSeqLen."));
            if (chunks > _state.Capacity) Reserve(chunks, max);
        }
        finally
        {
            End();
        }
    }

    /// <summary>Empties every sequence (length 0); the capacity is kept.</summary>
    public void Reset()
    {
        Begin();
        try
        {
            _chunks = 0;
            _meanValid = true;
            _state.ClearSums();
        }
        finally
        {
            End();
        }
    }

    /// <summary>
    /// Ends the stream: later calls throw <see cref="ObjectDisposedException"/>. It holds no threads, handles or native
    /// memory (its arrays go with the object). Idempotent.
    /// </summary>
    public void Dispose() => _disposed = true;

    // What AppendCore needs (internal to the assembly).
    internal StreamState State => _state;
    internal int Chunks => _chunks;
    internal double[] SumsWork => _sumsWork;

    private void CommitSums() => _sumsWork.CopyTo(_state.Sums, 0);

    private void ValidateAppend(ReadOnlySpan<float> chunk, Span<float> output, OutputMode mode)
    {
        if (mode is not (OutputMode.LastTimestep or OutputMode.All or OutputMode.MeanPool))
            throw new ArgumentOutOfRangeException(nameof(mode), mode, "Unknown output mode.");
        int c = ChunkSize, e = _model.Config.EmbedDim, positions = Batch * c, b = Batch;
        if (chunk.Length != (long)positions * e)
        {
            string got = chunk.Length % ((long)b * e) == 0
                ? string.Create(CultureInfo.InvariantCulture, $"{chunk.Length / ((long)b * e)} positions per sequence")
                : "not a whole number of positions";
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture,
                $"A stream appends whole chunks: [batch {b}, chunk {c}, embed {e}] = {(long)positions * e} floats, got {chunk.Length} ({got}). Edifice defines no output for a length that is not a multiple of the chunk size; buffer positions until you have {c} per sequence, then append them."), nameof(chunk));
        }
        if (output.Length != OutputLength(mode))
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture,
                $"Output has {output.Length} floats; mode {mode} with batch {b}, chunk {c}, hidden {_model.Config.HiddenSize} needs {OutputLength(mode)} (OutputLength)."), nameof(output));
        if (mode == OutputMode.MeanPool && !_meanValid)
            throw new InvalidOperationException("MeanPool needs the final-norm output of every position so far, and an earlier LastTimestep append computed only its chunk's last position. Append in All or MeanPool mode from the start (or after Reset) to read the mean pool.");
        if (_chunks >= MaxChunks())
            throw new InvalidOperationException(string.Create(CultureInfo.InvariantCulture,
                $"The stream holds {Length} positions, the model's MaxSeqLen; Reset it or raise DualChunkModelOptions.MaxSeqLen."));
    }

    private int MaxChunks() => (_model.MaxSeqLenLimit ?? int.MaxValue) / ChunkSize;

    private void Reserve(int chunks, int max)
    {
        chunks = Math.Min(chunks, max);
        _state.Grow(chunks, _chunks);
    }

    private void Begin()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (Interlocked.Exchange(ref _busy, 1) != 0)
            throw new InvalidOperationException("Another call is using this stream; a stream serves one call at a time.");
    }

    private void End() => Volatile.Write(ref _busy, 0);
}
