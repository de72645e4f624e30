using System.Diagnostics;
using System.Globalization;
using DualChunk.Core;
using DualChunk.Server.Pipeline;
using DualChunk.Server.Sequences.Store;
using static DualChunk.Server.Pipeline.InferenceException;

namespace DualChunk.Server.Sequences;

// The sequence store's part of the table (issue 22; docs/deploy.md "Sequences across replicas"). Without a store
// none of this runs and the table behaves as before. With one:
//  - a start takes the sequence's lease (another replica holding it: 409 ABORTED, never a fork);
//  - a request for a sequence not in memory acquires it from the store and restores it (the snapshot's checks name
//    both weights fingerprints on a mismatch), or says why not: held elsewhere, lost, ended, never started;
//  - an idle sequence is spilled and freed instead of dropped; leases of the ones in memory are renewed;
//  - on shutdown every open sequence is written (DrainAsync), failures logged by id and counted.
// The store being down is not an outage: sequences in memory keep serving; what needs the store fails or retries.
internal sealed partial class SequenceTable
{
    private const int DrainParallelism = 4;
    private readonly ISequenceStore? _store;
    private readonly SequenceStoreMetrics _storeMetrics;
    private readonly ShutdownDrainState? _drain;
    private readonly ILogger _logger;
    private int _sweeping;
    private volatile bool _storeHealthy = true;

    /// <summary>Whether a store is configured.</summary>
    public bool HasStore => _store is not null;

    /// <summary>False after a store operation failed, until one succeeds (readiness shows the store degraded).</summary>
    public bool StoreHealthy => _storeHealthy;

    /// <summary>The timer's work: without a store, free idle sequences; with one, spill them and renew leases.</summary>
    private void Sweep()
    {
        if (_store is null)
        {
            Expire();
            return;
        }
        if (Interlocked.Exchange(ref _sweeping, 1) == 1) return; // the previous sweep is still writing
        _ = Task.Run(async () =>
        {
            try
            {
                await SpillIdleAsync().ConfigureAwait(false);
                await RenewLeasesAsync().ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                LogSweepFailed(_logger, ex);
            }
            finally
            {
                Volatile.Write(ref _sweeping, 0);
            }
        });
    }

    /// <summary>Before a request's chunks: a start takes the lease; a sequence not in memory is resumed from the store.</summary>
    private async Task BeforeAppendAsync(OpenSequence s, ModelTarget target, InferenceRequest request, CancellationToken cancellationToken)
    {
        var p = request.Sequence;
        if (s.Closed is not null) return; // AppendInOrder says why
        if (p.Start)
        {
            var begun = await _store!.BeginAsync(s.Key, target.Name, cancellationToken).ConfigureAwait(false);
            Observe(begun, "begin");
            if (begun.Status == StoreStatus.HeldByOther)
            {
                _storeMetrics.LeaseConflict();
                throw new InferenceException(InferenceErrorKind.ActiveElsewhere,
                    $"Sequence {s.Display} is active on another replica ({begun.Holder}); a start here would fork it. Retry (it is retryable), or route to that replica.");
            }
            if (!begun.IsOk)
                LogStartWithoutStore(_logger, s.Display, begun.Message);
            s.StoreGeneration = begun.IsOk ? begun.Generation : 0;
            s.LeaseRenewedAt = Stopwatch.GetTimestamp();
            return;
        }
        if (s.Stream is null) await ResumeAsync(s, target, p, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>sequence_length, when sent, must equal the positions the sequence holds (409 naming both otherwise).</summary>
    private static void CheckLength(OpenSequence s, SequenceParameters p)
    {
        if (p.Start || p.Length is not { } claimed || s.Stream is not { } stream || claimed == stream.Length) return;
        string where = s.RestoredFrom is { } from ? $" (restored from the store: {from}; anything appended after that spill was lost with its replica)" : "";
        throw new InferenceException(InferenceErrorKind.Conflict,
            Inv($"Sequence {s.Display} holds {stream.Length} positions{where}; this request says sequence_length = {claimed}. Nothing was appended: resend from position {stream.Length} with sequence_length: {stream.Length}, or start the sequence again."));
    }

    /// <summary>Looks the sequence up in the store and restores it here, or throws saying why it cannot continue.</summary>
    private async Task ResumeAsync(OpenSequence s, ModelTarget target, SequenceParameters p, CancellationToken cancellationToken)
    {
        var acquired = await _store!.AcquireAsync(s.Key, cancellationToken).ConfigureAwait(false);
        Observe(acquired.WithoutValue, "acquire");
        switch (acquired.Status)
        {
            case StoreStatus.Ok:
                break;
            case StoreStatus.NotFound:
                _storeMetrics.Restored("not_found", 0);
                string closedHere;
                lock (_lock) closedHere = NotOpen(p);
                throw new InferenceException(InferenceErrorKind.UnknownSequence,
                    closedHere + Inv($" The sequence store has no record of it either (never started, or its retention of {_store.Retention.TotalHours:0.##} h passed)."));
            case StoreStatus.HeldByOther:
                _storeMetrics.Restored("held", 0);
                _storeMetrics.LeaseConflict();
                throw new InferenceException(InferenceErrorKind.ActiveElsewhere,
                    $"Sequence {s.Display} is active on another replica ({acquired.Holder}). Retry (it is retryable): it can move here once that replica spills it (idle or shutdown) or its lease expires; or route to that replica.");
            default:
                _storeMetrics.Restored("unavailable", 0);
                throw new InferenceException(InferenceErrorKind.NotReady,
                    $"Sequence {s.Display} is not in this replica's memory and the sequence store cannot be asked: {acquired.Message} Retry shortly, or send it to the replica that holds it.");
        }
        var record = acquired.Value!;
        if (record.Ended is { } ended)
        {
            _storeMetrics.Restored("ended", 0);
            throw new InferenceException(InferenceErrorKind.UnknownSequence,
                $"Sequence {s.Display} is not open: it was ended (sequence_end) at {Time(ended)} on replica {record.LastOwner}. Start it again with sequence_start: true.");
        }
        try
        {
            if (record.Snapshot is null)
            {
                _storeMetrics.Restored("lost", 0);
                throw new InferenceException(InferenceErrorKind.Conflict,
                    $"Sequence {s.Display} was lost: it started at {Time(record.Started)} on replica {record.LastOwner}, which stopped without writing it to the sequence store (a crash or kill before any spill). Start it again with sequence_start: true and resend its input.");
            }
            if (!string.Equals(record.Model, target.Name, StringComparison.OrdinalIgnoreCase))
                throw new InferenceException($"Sequence {s.Display} runs on model '{record.Model}', not '{target.Name}'; send its requests to /v2/models/{record.Model}/infer.");
            Restore(s, target, record);
            s.StoreGeneration = record.Generation;
            s.LeaseRenewedAt = Stopwatch.GetTimestamp();
            s.RestoredFrom = Inv($"{record.Positions} positions spilled at {Time(record.Spilled ?? record.Started)} by replica {record.LastOwner}");
            _storeMetrics.Restored("ok", record.Snapshot.Length);
        }
        catch
        {
            await ReleaseQuietlyAsync(s).ConfigureAwait(false); // the lease Acquire took: another replica may try
            throw;
        }
    }

    /// <summary>A stream from the snapshot, on the serving model, within the state budget.</summary>
    private void Restore(OpenSequence s, ModelTarget target, StoredSequence record)
    {
        byte[] snapshot = record.Snapshot!;
        long bytes = snapshot.Length; // the state is the snapshot less its header and checksum: an upper bound
        TryReserve(bytes, s.Display);
        try
        {
            if (!_pool.TryAcquire(target.Name, out var lease))
                throw new InferenceException(InferenceErrorKind.NotReady, $"Model '{target.Name}' is not ready; retry shortly.");
            DualChunkStream stream;
            try
            {
                stream = lease.Model.RestoreStream(snapshot);
            }
            catch (StreamSnapshotException ex)
            {
                lease.Dispose();
                _storeMetrics.Restored("snapshot_refused", 0);
                throw new InferenceException(InferenceErrorKind.Conflict,
                    $"Sequence {s.Display} cannot resume on this replica's model '{target.Name}' (version {lease.Generation}): {ex.Message}");
            }
            catch
            {
                lease.Dispose();
                throw;
            }
            var hosted = _pool.GetOptions(target.Name);
            if (stream.Length > MaxLength(stream.Model, hosted))
            {
                stream.Dispose();
                lease.Dispose();
                throw new InferenceException(Inv($"Sequence {s.Display} holds {stream.Length} positions, more than a sequence may reach here ({MaxLength(target.Model, hosted)}: Server:Sequences:MaxSequenceLength, capped by the model's MaxSeqLen)."));
            }
            s.Stream = stream;
            s.Lease = lease;
            s.Generation = lease.Generation;
            s.LeaseOptions = hosted;
            Account(stream.StateBytes - bytes);
            s.StateBytes = stream.StateBytes;
        }
        catch
        {
            if (s.Stream is null) Account(-bytes);
            throw;
        }
    }

    /// <summary>After a request with sequence_end: the store deletes the state (a record that it ended stays).</summary>
    private async Task EndInStoreAsync(OpenSequence s)
    {
        var ended = await _store!.EndAsync(s.Key, s.StoreGeneration).ConfigureAwait(false);
        Observe(ended, "end");
        if (!ended.IsOk)
            LogEndNotStored(_logger, s.Display, ended.Message);
    }

    /// <summary>Writes one sequence (its gate held) to the store and frees it when written; a stale copy is dropped.</summary>
    private async Task<(StoreResult Result, long Bytes)> SpillAsync(OpenSequence s, string reason, CancellationToken cancellationToken)
    {
        var stream = s.Stream!;
        byte[] snapshot = stream.Snapshot();
        var result = await _store!.SpillAsync(s.Key, s.StoreGeneration, s.ModelName, snapshot, stream.Length, releaseLease: true, cancellationToken).ConfigureAwait(false);
        Observe(result, "spill");
        _storeMetrics.Spilled(reason, result.Status, snapshot.Length);
        if (result.IsOk) Free(s);
        else if (result.Status is StoreStatus.HeldByOther or StoreStatus.Fenced) TakenOver(s, result);
        return (result, snapshot.Length);
    }

    /// <summary>Spills every sequence idle past the timeout (idle ones only: a waiting request keeps it here).</summary>
    private async Task SpillIdleAsync()
    {
        List<OpenSequence>? idle = null;
        long now = Stopwatch.GetTimestamp();
        lock (_lock)
        {
            if (_disposed || _drain is { IsDraining: true }) return;
            foreach (var s in _open.Values)
            {
                if (s.Busy == 0 && s.Closed is null && Stopwatch.GetElapsedTime(s.LastUsed, now) > _options.IdleTimeout)
                {
                    s.Busy++; // held by the sweep: not removed meanwhile
                    (idle ??= []).Add(s);
                }
            }
        }
        if (idle is null)
        {
            ReturnMemoryAfterSweep(0); // what earlier sweeps freed within the interval is returned now
            return;
        }
        bool storeDown = false;
        long freed = 0;
        foreach (var s in idle)
        {
            try
            {
                if (storeDown || !s.Gate.Wait(0)) continue; // a request got in first: it is not idle any more
                try
                {
                    if (s.Stream is not { } stream || s.Closed is not null) continue;
                    long bytes = stream.StateBytes; // a stream holds no workspace (its appends rent one)
                    var (result, _) = await SpillAsync(s, "idle", CancellationToken.None).ConfigureAwait(false);
                    if (s.Stream is null) freed += bytes; // spilled and freed
                    if (result.Status is StoreStatus.Unavailable or StoreStatus.TooLarge)
                    {
                        LogIdleStays(_logger, s.Display, result.Message);
                        storeDown = result.Status == StoreStatus.Unavailable; // the next sweep tries again
                    }
                }
                finally
                {
                    s.Gate.Release();
                }
            }
            finally
            {
                Unhold(s);
            }
        }
        ReturnMemoryAfterSweep(freed);
    }

    /// <summary>Renews the leases of the sequences in memory (a third of the lease duration after the last).</summary>
    private async Task RenewLeasesAsync()
    {
        var due = new List<OpenSequence>();
        long now = Stopwatch.GetTimestamp();
        lock (_lock)
        {
            if (_disposed) return;
            foreach (var s in _open.Values)
            {
                if (s.Closed is null && s.Stream is not null && Stopwatch.GetElapsedTime(s.LeaseRenewedAt, now) > _store!.LeaseDuration / 3)
                    due.Add(s);
            }
        }
        foreach (var batch in due.Chunk(256))
        {
            var renewals = batch.Select(async s => (s, await _store!.RenewAsync(s.Key, s.StoreGeneration).ConfigureAwait(false))).ToArray();
            foreach (var (s, result) in await Task.WhenAll(renewals).ConfigureAwait(false))
            {
                Observe(result, "renew");
                if (result.IsOk) s.LeaseRenewedAt = Stopwatch.GetTimestamp();
                else if (result.Status is StoreStatus.HeldByOther or StoreStatus.Fenced)
                {
                    await s.Gate.WaitAsync().ConfigureAwait(false); // the request in flight, if any, finishes first
                    try
                    {
                        if (s.Closed is null) TakenOver(s, result);
                    }
                    finally
                    {
                        s.Gate.Release();
                    }
                }
                else break; // store unreachable: the next sweep tries again; the copy keeps serving meanwhile
            }
        }
    }

    /// <summary>
    /// Shutdown: writes every open sequence to the store (waiting for its request in flight, if any) and frees it.
    /// Returns (written, failed, bytes); failures are logged by id and counted.
    /// </summary>
    public async Task<(int Written, int Failed, long Bytes)> DrainAsync(CancellationToken cancellationToken)
    {
        if (_store is null) return (0, 0, 0);
        List<OpenSequence> all;
        lock (_lock)
        {
            if (_disposed) return (0, 0, 0);
            all = [.. _open.Values.Where(s => s.Closed is null)];
            foreach (var s in all) s.Busy++;
        }
        var clock = Stopwatch.StartNew();
        int written = 0, failed = 0;
        long bytes = 0;
        var failures = new System.Collections.Concurrent.ConcurrentBag<string>();
        await Parallel.ForEachAsync(all, new ParallelOptions { MaxDegreeOfParallelism = DrainParallelism }, async (s, _) =>
        {
            try
            {
                // The host's shutdown token bounds the whole drain; a sequence not written by then is a failure.
                await s.Gate.WaitAsync(cancellationToken).ConfigureAwait(false);
                try
                {
                    if (s.Stream is null || s.Closed is not null) return;
                    var (result, size) = await SpillAsync(s, "drain", cancellationToken).ConfigureAwait(false);
                    if (result.IsOk)
                    {
                        Interlocked.Increment(ref written);
                        Interlocked.Add(ref bytes, size);
                    }
                    else
                    {
                        Interlocked.Increment(ref failed);
                        failures.Add($"{s.Display}: {result.Message}");
                    }
                }
                finally
                {
                    s.Gate.Release();
                }
            }
            catch (OperationCanceledException)
            {
                Interlocked.Increment(ref failed);
                failures.Add($"{s.Display}: the shutdown timeout passed before it was written");
            }
            finally
            {
                Unhold(s);
            }
        }).ConfigureAwait(false);
        _storeMetrics.Drained(written, failed, bytes, clock.Elapsed);
        LogDrained(_logger, written, bytes, clock.Elapsed.TotalSeconds, failed);
        foreach (string f in failures) LogDrainFailed(_logger, f);
        return (written, failed, bytes);
    }

    /// <summary>Another replica took the sequence over (our lease lapsed): this copy is stale and is dropped.</summary>
    private void TakenOver(OpenSequence s, StoreResult result)
    {
        _storeMetrics.LeaseConflict();
        LogTakenOver(_logger, s.Display, result.Message);
        Close(s, $"another replica took it over ({result.Message}); send its requests there");
    }

    private async Task ReleaseQuietlyAsync(OpenSequence s)
    {
        var released = await _store!.ReleaseAsync(s.Key).ConfigureAwait(false);
        Observe(released, "release");
    }

    /// <summary>Ends the sweep's or drain's hold: the entry goes if it has no stream left and nobody waits.</summary>
    private void Unhold(OpenSequence s)
    {
        lock (_lock)
        {
            s.Busy--;
            if (s.Busy == 0 && s.Stream is null && s.Closed is null && _open.TryGetValue(s.Key, out var current) && current == s)
                _open.Remove(s.Key);
        }
    }

    private void Observe(StoreResult result, string operation)
    {
        if (result.Status == StoreStatus.Unavailable)
        {
            _storeHealthy = false;
            _storeMetrics.Error(operation);
        }
        else
        {
            _storeHealthy = true;
        }
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "The sequence sweep failed; it runs again on the next tick.")]
    private static partial void LogSweepFailed(ILogger logger, Exception exception);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Sequence {Sequence} starts without the store ({Message}): it lives in this replica's memory only until the store is back.")]
    private static partial void LogStartWithoutStore(ILogger logger, string sequence, string message);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Sequence {Sequence} ended here but the store was not told ({Message}); its spill, if any, expires with the retention.")]
    private static partial void LogEndNotStored(ILogger logger, string sequence, string message);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Idle sequence {Sequence} stays in memory: {Message}")]
    private static partial void LogIdleStays(ILogger logger, string sequence, string message);

    [LoggerMessage(Level = LogLevel.Information, Message = "Drain: {Written} open sequences ({Bytes} bytes) written to the store in {Seconds} s; {Failed} failed.")]
    private static partial void LogDrained(ILogger logger, int written, long bytes, double seconds, int failed);

    [LoggerMessage(Level = LogLevel.Error, Message = "Drain: sequence {Failure} (lost: not written to the store).")]
    private static partial void LogDrainFailed(ILogger logger, string failure);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Sequence {Sequence}: {Message} The copy here is dropped.")]
    private static partial void LogTakenOver(ILogger logger, string sequence, string message);

    private static string Time(DateTimeOffset t) => t.ToString("yyyy-MM-ddTHH:mm:ss.fffZ", CultureInfo.InvariantCulture);
}
