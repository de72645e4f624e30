using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace DualChunk.Server.Sequences.Store;

/// <summary>
/// The sequence store's instruments (meter <see cref="MeterName"/>, exported on <c>/metrics</c>): spills and restores
/// with their bytes, lease conflicts, store errors by operation, and each drain's duration, bytes and failures.
/// </summary>
public sealed class SequenceStoreMetrics : IDisposable
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "DualChunk.Server.SequenceStore";

    private readonly Meter _meter;
    private readonly Counter<long> _spills, _spillBytes, _restores, _restoreBytes, _leaseConflicts, _errors, _drainSequences, _drainBytes, _drainFailures;
    private readonly Histogram<double> _drainDuration;

    /// <summary>Creates the instruments on a meter from <paramref name="meterFactory"/> (or a private meter without one).</summary>
    public SequenceStoreMetrics(IMeterFactory? meterFactory = null)
    {
        _meter = meterFactory?.Create(MeterName) ?? new Meter(MeterName);
        _spills = _meter.CreateCounter<long>("dualchunk.sequence.store.spills", "{sequence}",
            "Sequences written to the store (reason: idle, drain; result: ok or the failure).");
        _spillBytes = _meter.CreateCounter<long>("dualchunk.sequence.store.spill.bytes", "By", "Snapshot bytes written to the store.");
        _restores = _meter.CreateCounter<long>("dualchunk.sequence.store.restores", "{sequence}",
            "Sequences looked up in the store on a request (result: ok, not_found, lost, ended, snapshot_refused, held, unavailable).");
        _restoreBytes = _meter.CreateCounter<long>("dualchunk.sequence.store.restore.bytes", "By", "Snapshot bytes restored from the store.");
        _leaseConflicts = _meter.CreateCounter<long>("dualchunk.sequence.store.lease_conflicts", "{request}",
            "Requests refused because another replica holds the sequence, or copies dropped because another replica took it over.");
        _errors = _meter.CreateCounter<long>("dualchunk.sequence.store.errors", "{operation}",
            "Store operations that failed (operation: begin, acquire, spill, renew, release, end, ping; the store unreachable, slow or erroring).");
        _drainSequences = _meter.CreateCounter<long>("dualchunk.sequence.drain.sequences", "{sequence}", "Open sequences written to the store by shutdown drains.");
        _drainBytes = _meter.CreateCounter<long>("dualchunk.sequence.drain.bytes", "By", "Snapshot bytes written by shutdown drains.");
        _drainFailures = _meter.CreateCounter<long>("dualchunk.sequence.drain.failures", "{sequence}", "Open sequences a shutdown drain could not write (lost; logged by id).");
        _drainDuration = _meter.CreateHistogram<double>("dualchunk.sequence.drain.duration", "s", "Time a shutdown drain took to write every open sequence.");
    }

    /// <summary>A spill's outcome.</summary>
    public void Spilled(string reason, StoreStatus status, long bytes)
    {
        _spills.Add(1, new TagList { { "reason", reason }, { "result", Result(status) } });
        if (status == StoreStatus.Ok) _spillBytes.Add(bytes);
    }

    /// <summary>A lookup's outcome (<paramref name="result"/> one of the documented values).</summary>
    public void Restored(string result, long bytes)
    {
        _restores.Add(1, new KeyValuePair<string, object?>("result", result));
        if (bytes > 0) _restoreBytes.Add(bytes);
    }

    /// <summary>A request or copy lost to another replica's lease.</summary>
    public void LeaseConflict() => _leaseConflicts.Add(1);

    /// <summary>A store operation that failed.</summary>
    public void Error(string operation) => _errors.Add(1, new KeyValuePair<string, object?>("operation", operation));

    /// <summary>A finished drain.</summary>
    public void Drained(int written, int failed, long bytes, TimeSpan duration)
    {
        _drainSequences.Add(written);
        _drainFailures.Add(failed);
        _drainBytes.Add(bytes);
        _drainDuration.Record(duration.TotalSeconds);
    }

    /// <summary>Disposes the meter.</summary>
    public void Dispose() => _meter.Dispose();

    private static string Result(StoreStatus status) => status switch
    {
        StoreStatus.Ok => "ok",
        StoreStatus.NotFound => "not_found",
        StoreStatus.HeldByOther => "held",
        StoreStatus.Fenced => "fenced",
        StoreStatus.TooLarge => "too_large",
        _ => "unavailable",
    };
}
