using System.Diagnostics;
using System.Diagnostics.Metrics;
using CommunityToolkit.HighPerformance.Buffers;
using DualChunk.Core;
using DualChunk.Extensions.Hosting;
using DualChunk.Server.Pipeline;
using DualChunk.Server.Sequences.Store;
using Microsoft.Extensions.Options;
using static DualChunk.Server.Pipeline.InferenceException;

namespace DualChunk.Server.Sequences;

/// <summary>
/// The open sequences of the server (Triton's sequence extension on <see cref="DualChunkStream"/>): opens a stream
/// on <c>sequence_start</c>, appends each request's chunks in arrival order (one request of a sequence at a time),
/// frees it on <c>sequence_end</c> or after <see cref="SequenceOptions.IdleTimeout"/>, and enforces
/// <see cref="SequenceOptions.MaxSequences"/>, the length limit and the state-bytes budget before allocating.
/// A sequence holds a lease on the model version it started on until it ends.
/// </summary>
/// <remarks>
/// The one place that owns sequence state. With a sequence store (SequenceTable.Store.cs, issue 22) an idle sequence
/// is spilled instead of dropped, every open one is written on shutdown, and one missing here is looked up and
/// restored before "not open" is answered.
/// </remarks>
internal sealed partial class SequenceTable : IDisposable
{
    private const int RememberClosed = 4096;
    private readonly Lock _lock = new();
    private readonly Dictionary<string, OpenSequence> _open = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _closed = new(StringComparer.Ordinal);
    private readonly Queue<string> _closedOrder = new();
    private readonly DualChunkModelProvider _pool;
    private readonly SequenceOptions _options;
    private readonly Timer _sweeper;
    private readonly Counter<long> _appends, _expiries;
    private long _stateBytes;
    private bool _disposed;

    public SequenceTable(DualChunkModelProvider pool, IOptions<SequenceOptions> options, IMeterFactory meterFactory,
        SequenceStoreMetrics? storeMetrics = null, ShutdownDrainState? drain = null, ILogger<SequenceTable>? logger = null, ISequenceStore? store = null)
    {
        _pool = pool;
        _options = options.Value;
        _store = store;
        _storeMetrics = storeMetrics ?? new SequenceStoreMetrics();
        _drain = drain;
        _logger = logger ?? (ILogger)Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;
        var meter = meterFactory.Create(ServerMetrics.MeterName);
        meter.CreateObservableUpDownCounter("dualchunk.server.sequences.open", () => (long)OpenCount, "{sequence}", "Sequences open now.");
        meter.CreateObservableUpDownCounter("dualchunk.server.sequences.state_bytes", () => Interlocked.Read(ref _stateBytes), "By", "Stream state held by the open sequences.");
        _appends = meter.CreateCounter<long>("dualchunk.server.sequence.appends", "{request}", "Requests appended to a sequence.");
        _expiries = meter.CreateCounter<long>("dualchunk.server.sequence.idle_expiries", "{sequence}", "Sequences freed after the idle timeout.");
        var period = TimeSpan.FromTicks(Math.Clamp(_options.IdleTimeout.Ticks / 4, TimeSpan.FromMilliseconds(50).Ticks, TimeSpan.FromSeconds(5).Ticks));
        if (store is not null) period = TimeSpan.FromTicks(Math.Max(Math.Min(period.Ticks, store.LeaseDuration.Ticks / 3), TimeSpan.FromMilliseconds(50).Ticks)); // leases renewed in time
        _sweeper = new Timer(_ => Sweep(), null, period, period);
    }

    /// <summary>Sequences open now.</summary>
    public int OpenCount
    {
        get
        {
            lock (_lock) return _open.Count;
        }
    }

    /// <summary>Stream state bytes the open sequences hold.</summary>
    public long StateBytes => Interlocked.Read(ref _stateBytes);

    /// <summary>
    /// Appends the request's chunks to its sequence (opening or restarting it on <c>sequence_start</c>) and returns
    /// what <c>dualchunk stream</c> writes for them: All [B, k·C, H]; LastTimestep and MeanPool [B, k, H].
    /// </summary>
    public async ValueTask<InferenceResult> AppendAsync(ModelTarget target, InferenceRequest request, CancellationToken cancellationToken)
    {
        var p = request.Sequence;
        var sequence = Enter(p, target.Name);
        try
        {
            await sequence.Gate.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                if (_store is not null) await BeforeAppendAsync(sequence, target, request, cancellationToken).ConfigureAwait(false);
                CheckLength(sequence, p);
                var result = AppendInOrder(sequence, target, request);
                if (_store is not null && p.End) await EndInStoreAsync(sequence).ConfigureAwait(false);
                return result;
            }
            finally
            {
                sequence.Gate.Release();
            }
        }
        finally
        {
            Leave(sequence);
        }
    }

    /// <summary>Finds the sequence (or makes its entry for a start) and marks it busy, so it cannot idle out meanwhile.</summary>
    private OpenSequence Enter(SequenceParameters p, string modelName)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_drain is { IsDraining: true })
                throw new InferenceException(InferenceErrorKind.NotReady,
                    $"This replica is shutting down and writing its sequences to the store; retry sequence {p.Display} on another replica (it resumes there).");
            if (!_open.TryGetValue(p.Key, out var s))
            {
                // With a store, a sequence missing here gets an entry without a stream: the request looks it up (Resume).
                if (!p.Start && _store is null)
                    throw new InferenceException(InferenceErrorKind.UnknownSequence, NotOpen(p));
                if (_open.Count >= _options.MaxSequences)
                    throw new InferenceException(InferenceErrorKind.Overloaded,
                        Inv($"{_open.Count} sequences are open, the limit (Server:Sequences:MaxSequences); end finished sequences (sequence_end) or retry later. No open sequence is evicted."));
                s = new OpenSequence(p.Key, p.Display, modelName);
                _open.Add(p.Key, s);
                if (p.Start) _closed.Remove(p.Key);
            }
            s.Busy++;
            return s;
        }
    }

    private void Leave(OpenSequence s)
    {
        lock (_lock)
        {
            s.Busy--;
            s.LastUsed = Stopwatch.GetTimestamp();
            // A start that failed before its stream was made leaves an empty entry: drop it.
            if (s.Busy == 0 && s.Stream is null && s.Closed is null && _open.TryGetValue(s.Key, out var current) && current == s)
                _open.Remove(s.Key);
        }
    }

    private string NotOpen(SequenceParameters p)
        => _closed.TryGetValue(p.Key, out var reason)
            ? $"Sequence {p.Display} is not open: {reason}. Start it again with sequence_start: true."
            : $"Sequence {p.Display} is not open: it was never started here (or ended long ago). Send its first request with sequence_start: true.";

    private InferenceResult AppendInOrder(OpenSequence s, ModelTarget target, InferenceRequest request)
    {
        var p = request.Sequence;
        if (s.Closed is { } reason)
            throw new InferenceException(InferenceErrorKind.UnknownSequence, $"Sequence {p.Display} is not open: {reason}. Start it again with sequence_start: true.");
        if (!string.Equals(s.ModelName, target.Name, StringComparison.OrdinalIgnoreCase))
            throw new InferenceException(Inv($"Sequence {p.Display} runs on model '{s.ModelName}', not '{target.Name}'; send its requests to /v2/models/{s.ModelName}/infer."));
        var input = request.Input;
        if (p.Start) Open(s, target, input.Batch, input.SeqLen);
        var stream = s.Stream!;
        var model = stream.Model;
        int c = stream.ChunkSize, h = model.Config.HiddenSize, e = model.Config.EmbedDim, batch = stream.Batch;
        if (input.Batch != batch)
            throw new InferenceException(Inv($"Sequence {p.Display} was started with batch B = {batch}; this request has B = {input.Batch}. Every request of a sequence carries [{batch}, k·{c}, {e}]."));
        int maxLength = MaxLength(model, s.LeaseOptions);
        if ((long)stream.Length + input.SeqLen > maxLength)
            throw new InferenceException(Inv($"Sequence {p.Display} has {stream.Length} positions; {input.SeqLen} more would pass its limit of {maxLength} (Server:Sequences:MaxSequenceLength, capped by the model's MaxSeqLen). End it (sequence_end) and start a new one."));
        if (request.Mode == OutputMode.MeanPool && !stream.CanMeanPool)
            throw new InferenceException(InferenceErrorKind.Conflict,
                $"Sequence {p.Display} had a \"last\" append, which does not keep the mean over every position: \"mean\" is no longer available. Use \"last\" or \"all\", or restart the sequence with output_mode \"mean\" (or \"all\") throughout.");
        Reserve(s, stream, stream.Length + input.SeqLen, maxLength);

        int chunks = input.SeqLen / c, perChunk = request.Mode == OutputMode.All ? c : 1;
        var output = MemoryOwner<float>.Allocate(batch * chunks * perChunk * h);
        long started = Stopwatch.GetTimestamp();
        try
        {
            using var chunk = MemoryOwner<float>.Allocate(batch * c * e);
            using var result = MemoryOwner<float>.Allocate(stream.OutputLength(request.Mode));
            var data = input.Data;
            for (int k = 0; k < chunks; k++)
            {
                for (int b = 0; b < batch; b++)
                    data.Slice((b * input.SeqLen + k * c) * e, c * e).CopyTo(chunk.Span[(b * c * e)..]);
                try
                {
                    // Not cancellable: the request's chunks go in together or the sequence is closed (never half-applied).
                    stream.Append(chunk.Span, result.Span, request.Mode);
                }
                catch (Exception ex) when (k > 0 && ex is not OutOfMemoryException)
                {
                    Close(s, $"an append failed half-way through a request ({ex.Message})");
                    throw;
                }
                for (int b = 0; b < batch; b++)
                    result.Span.Slice(b * perChunk * h, perChunk * h).CopyTo(output.Span[((b * chunks + k) * perChunk * h)..]);
            }
        }
        catch (Exception ex) when (ex is ArgumentException or NumericalOverflowException)
        {
            output.Dispose();
            throw new InferenceException(ex.Message, ex);
        }
        catch
        {
            output.Dispose();
            throw;
        }
        _appends.Add(1);
        var elapsed = Stopwatch.GetElapsedTime(started);
        string version = s.Generation.ToString(System.Globalization.CultureInfo.InvariantCulture);
        if (p.End) Close(s, "it was ended by a request with sequence_end: true");
        return new InferenceResult(output, [batch, chunks * perChunk, h], s.ModelName, version, elapsed);
    }

    private int MaxLength(DualChunkModel model, DualChunkHostedModelOptions? hosted)
    {
        long max = Math.Min(_options.MaxSequenceLength ?? int.MaxValue, hosted?.Model.MaxSeqLen ?? int.MaxValue);
        int c = model.Config.ChunkSize;
        return (int)(max / c * c);
    }

    /// <summary>(Re)opens the sequence's stream on the serving model for [batch, seqLen]-shaped requests.</summary>
    private void Open(OpenSequence s, ModelTarget target, int batch, int seqLen)
    {
        Free(s);
        var hosted = _pool.GetOptions(target.Name);
        int max = MaxLength(target.Model, hosted);
        if (seqLen > max)
            throw new InferenceException(Inv($"The first request of sequence {s.Display} has {seqLen} positions, more than a sequence may reach ({max}: Server:Sequences:MaxSequenceLength, capped by the model's MaxSeqLen)."));
        long bytes = DualChunkStream.StateBytesFor(target.Model.Config, batch, seqLen);
        TryReserve(bytes, s.Display);
        try
        {
            if (!_pool.TryAcquire(target.Name, out var lease))
                throw new InferenceException(InferenceErrorKind.NotReady, $"Model '{target.Name}' is not ready; retry shortly.");
            try
            {
                s.Stream = lease.Model.CreateStream(batch, seqLen);
            }
            catch
            {
                lease.Dispose();
                throw;
            }
            s.Lease = lease;
            s.Generation = lease.Generation;
            s.LeaseOptions = hosted;
            Account(s.Stream.StateBytes - bytes);
            s.StateBytes = s.Stream.StateBytes;
        }
        catch
        {
            Account(-bytes);
            throw;
        }
    }

    /// <summary>Room for <paramref name="positions"/>: grows the state by doubling (up to the limit) within the budget.</summary>
    private void Reserve(OpenSequence s, DualChunkStream stream, int positions, int maxLength)
    {
        if (positions <= stream.Capacity) return;
        int c = stream.ChunkSize;
        int capacity = (int)Math.Min(Math.Max(2L * stream.Capacity, positions), maxLength) / c * c;
        long before = stream.StateBytes;
        long delta = DualChunkStream.StateBytesFor(stream.Model.Config, stream.Batch, capacity) - before;
        TryReserve(delta, s.Display);
        try
        {
            stream.EnsureCapacity(capacity);
        }
        catch (ArgumentException ex)
        {
            Account(-delta);
            throw new InferenceException(ex.Message, ex);
        }
        Account(stream.StateBytes - before - delta);
        s.StateBytes = stream.StateBytes;
    }

    private void TryReserve(long bytes, string display)
    {
        long current = Interlocked.Read(ref _stateBytes);
        while (true)
        {
            if (current + bytes > _options.MaxStateBytes)
                throw new InferenceException(InferenceErrorKind.Overloaded,
                    Inv($"Sequence {display} needs {bytes} more bytes of state; the open sequences hold {current} of the {_options.MaxStateBytes} allowed (Server:Sequences:MaxStateBytes). End finished sequences or retry later; no open sequence is evicted."));
            long seen = Interlocked.CompareExchange(ref _stateBytes, current + bytes, current);
            if (seen == current) return;
            current = seen;
        }
    }

    private void Account(long bytes) => Interlocked.Add(ref _stateBytes, bytes);

    /// <summary>Frees the sequence's stream and lease (under its gate, or when nobody uses it).</summary>
    private void Free(OpenSequence s)
    {
        if (s.Stream is { } stream)
        {
            stream.Dispose();
            Account(-s.StateBytes);
            s.Stream = null;
            s.StateBytes = 0;
        }
        s.Lease?.Dispose(); // the last user of a replaced model version disposes it
        s.Lease = null;
    }

    /// <summary>Ends the sequence with a reason later requests are told.</summary>
    private void Close(OpenSequence s, string reason)
    {
        lock (_lock)
        {
            s.Closed = reason;
            if (_open.TryGetValue(s.Key, out var current) && current == s) _open.Remove(s.Key);
            Remember(s.Key, reason);
        }
        Free(s);
    }

    private void Remember(string key, string reason)
    {
        if (_closed.TryAdd(key, reason)) _closedOrder.Enqueue(key);
        else _closed[key] = reason;
        while (_closedOrder.Count > RememberClosed)
            _closed.Remove(_closedOrder.Dequeue());
    }

    /// <summary>Frees every sequence idle for longer than the timeout (runs on a timer when there is no store).</summary>
    internal void Expire()
    {
        List<OpenSequence>? expired = null;
        long now = Stopwatch.GetTimestamp();
        lock (_lock)
        {
            if (_disposed) return;
            foreach (var s in _open.Values)
            {
                if (s.Busy == 0 && Stopwatch.GetElapsedTime(s.LastUsed, now) > _options.IdleTimeout)
                    (expired ??= []).Add(s);
            }
            if (expired is not null)
            {
                string reason = Inv($"it idled out after {_options.IdleTimeoutSeconds:0.###} s without a request (Server:Sequences:IdleTimeoutSeconds), and its state was freed");
                foreach (var s in expired)
                {
                    s.Closed = reason;
                    _open.Remove(s.Key);
                    Remember(s.Key, reason);
                }
            }
        }
        if (expired is null)
        {
            ReturnMemoryAfterSweep(0); // what earlier sweeps freed within the interval is returned now (outside the lock)
            return;
        }
        long freed = 0;
        foreach (var s in expired)
        {
            freed += s.Stream is { } stream ? stream.StateBytes : 0; // a stream holds no workspace (its appends rent one)
            Free(s); // Busy was 0 under the lock and the entry is gone: no request can reach it any more
            _expiries.Add(1);
        }
        ReturnMemoryAfterSweep(freed);
    }

    /// <summary>
    /// Many idle sequences freed (a client fleet gone, or sequences spilled a few per sweep): without allocations to
    /// prompt a collection the GC keeps their arrays, mostly in the large-object heap, and the process's RSS stays
    /// where it was. One aggressive collection (compacting, decommitting) hands the memory back once the sweeps have
    /// freed <see cref="ReturnMemoryAfterFreeingBytes"/> since the last one (counted across sweeps: spills that trickle
    /// in count too), or once a wave of expiries has ended (a sweep frees nothing while at least
    /// <see cref="ReturnMemoryAfterWaveBytes"/> is pending: 1,000 one-chunk sequences hold only 12 MB of state, but the
    /// garbage of the requests that opened them left far more committed), at most every <see cref="ReturnMemoryInterval"/>
    /// (the pause stays rare under churn); a sweep within it leaves the collection to a later sweep. Only sweeps touch
    /// the two fields (an overlap costs one extra collection at most).
    /// </summary>
    private void ReturnMemoryAfterSweep(long freedBytes)
    {
        _freedSinceCollection += freedBytes;
        bool due = _freedSinceCollection >= ReturnMemoryAfterFreeingBytes || (freedBytes == 0 && _freedSinceCollection >= ReturnMemoryAfterWaveBytes);
        if (!due || Stopwatch.GetElapsedTime(_lastCollection) < ReturnMemoryInterval) return;
        _freedSinceCollection = 0;
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        _lastCollection = Stopwatch.GetTimestamp();
    }

    /// <summary>Stream bytes the sweeps must free before they ask the GC to return memory to the OS.</summary>
    internal const long ReturnMemoryAfterFreeingBytes = 16L << 20;

    /// <summary>Stream bytes pending when a sweep frees nothing (the wave of expiries is over) that also ask for it.</summary>
    internal const long ReturnMemoryAfterWaveBytes = 1L << 20;

    /// <summary>The shortest time between two of those collections.</summary>
    internal static readonly TimeSpan ReturnMemoryInterval = TimeSpan.FromSeconds(10);

    private long _freedSinceCollection, _lastCollection;

    public void Dispose()
    {
        List<OpenSequence> all;
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
            all = [.. _open.Values];
            _open.Clear();
        }
        _sweeper.Dispose();
        foreach (var s in all)
        {
            if (s.Busy == 0) Free(s);
        }
    }

    /// <summary>One sequence: its stream, the model lease it holds, and the gate that orders its requests.</summary>
    private sealed class OpenSequence(string key, string display, string modelName)
    {
        public string Key { get; } = key;

        public string Display { get; } = display;

        public string ModelName { get; } = modelName;

        /// <summary>Requests of this sequence run one at a time, in the order they reach it (FIFO).</summary>
        public SemaphoreSlim Gate { get; } = new(1, 1);

        // Under the table's lock:
        public int Busy;
        public long LastUsed = Stopwatch.GetTimestamp();
        public string? Closed;

        // Under Gate:
        public DualChunkStream? Stream;
        public DualChunkModelLease? Lease;
        public long Generation;
        public long StateBytes;
        public DualChunkHostedModelOptions? LeaseOptions;
        public long StoreGeneration;  // the store's fencing generation of this copy (0: none)
        public long LeaseRenewedAt;   // Stopwatch timestamp of the last lease renewal
        public string? RestoredFrom;  // what the store held when this copy was restored from it
    }
}
