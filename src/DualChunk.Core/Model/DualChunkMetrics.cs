using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;

namespace DualChunk.Core;

/// <summary>
/// The library's <see cref="System.Diagnostics.Metrics"/> instruments, on the meter <see cref="MeterName"/>.
/// The library writes nothing to the console or to any log: observe it through these (e.g. with
/// OpenTelemetry's <c>AddMeter("DualChunk")</c> or <c>dotnet-counters monitor --counters DualChunk</c>).
/// A model built with <see cref="DualChunkModelOptions.MeterFactory"/> records on the meter that factory creates
/// (the way ASP.NET Core and <c>IMeterFactory</c>-aware hosts expect); otherwise on one process-wide meter.
/// </summary>
public static class DualChunkMetrics
{
    /// <summary>Name of the meter: <c>DualChunk</c>.</summary>
    public const string MeterName = "DualChunk";

    /// <summary>
    /// Counter (<c>{call}</c>) of forward passes, tagged <c>dualchunk.output_mode</c> (last, all, mean); a call that
    /// threw (bad input, cancellation, a disposed model) also carries <see cref="ErrorTypeTag"/>.
    /// </summary>
    public const string CallsInstrument = "dualchunk.calls";

    /// <summary>
    /// Histogram (seconds) of forward passes' latency, validation included, tagged like the counter, with the bucket
    /// advice <see cref="DurationBucketBoundaries"/>.
    /// </summary>
    public const string DurationInstrument = "dualchunk.call.duration";

    /// <summary>
    /// Counter (<c>{append}</c>) of stream appends (<see cref="DualChunkStream.Append"/>), tagged like
    /// <see cref="CallsInstrument"/>: <c>dualchunk.output_mode</c>, and <see cref="ErrorTypeTag"/> when the append threw.
    /// </summary>
    public const string AppendsInstrument = "dualchunk.stream.appends";

    /// <summary>Histogram (seconds) of stream appends' latency, tagged and bucketed like <see cref="DurationInstrument"/>.</summary>
    public const string AppendDurationInstrument = "dualchunk.stream.append.duration";

    /// <summary>Observable gauge (bytes) of the workspaces held by the pools of all live models on the meter.</summary>
    public const string WorkspaceBytesInstrument = "dualchunk.workspace.bytes";

    /// <summary>Name of the output-mode tag.</summary>
    public const string OutputModeTag = "dualchunk.output_mode";

    /// <summary>
    /// Name of the tag a failed or cancelled call carries (OpenTelemetry's <c>error.type</c>): the full name of the
    /// exception type, e.g. <c>System.OperationCanceledException</c> or <c>System.ArgumentException</c>.
    /// </summary>
    public const string ErrorTypeTag = "error.type";

    /// <summary>
    /// Explicit bucket boundaries (seconds) advised for <see cref="DurationInstrument"/>: ASP.NET Core's
    /// <c>http.server.request.duration</c> boundaries (0.005 … 10 s), preceded by finer ones from 50 µs, because
    /// a forward pass of a small model takes well under 5 ms and would otherwise land in one bucket.
    /// </summary>
    public static IReadOnlyList<double> DurationBucketBoundaries { get; } = Array.AsReadOnly(
    [
        0.00005, 0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004,
        0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10,
    ]);

    /// <summary>The instruments on the process-wide meter (models built without a meter factory).</summary>
    internal static DualChunkInstruments Shared { get; } = new(new Meter(MeterName));

    // One instrument set per factory-created meter, so every model on one factory shares a counter, histogram and
    // gauge (a factory returns the same Meter for the same name). Weak: a disposed factory's meter goes away.
    private static readonly ConditionalWeakTable<Meter, DualChunkInstruments> s_byMeter = [];

    /// <summary>The instruments for <paramref name="factory"/>'s <see cref="MeterName"/> meter, or <see cref="Shared"/> without one.</summary>
    internal static DualChunkInstruments For(IMeterFactory? factory)
    {
        if (factory is null) return Shared;
        var meter = factory.Create(new MeterOptions(MeterName));
        return s_byMeter.GetValue(meter, static m => new DualChunkInstruments(m));
    }
}

/// <summary>One meter's DualChunk instruments and the workspace bytes its gauge reports.</summary>
internal sealed class DualChunkInstruments
{
    private long _workspaceBytes;

    public DualChunkInstruments(Meter meter)
    {
        Meter = meter;
        Calls = new CallInstruments(meter, DualChunkMetrics.CallsInstrument, "{call}", "DualChunk forward passes (failed ones tagged error.type).",
            DualChunkMetrics.DurationInstrument, "Latency of DualChunk forward passes.");
        Appends = new CallInstruments(meter, DualChunkMetrics.AppendsInstrument, "{append}", "DualChunk stream appends (failed ones tagged error.type).",
            DualChunkMetrics.AppendDurationInstrument, "Latency of DualChunk stream appends.");
        meter.CreateObservableGauge(DualChunkMetrics.WorkspaceBytesInstrument,
            () => Interlocked.Read(ref _workspaceBytes), "By", "Bytes of workspaces pooled by live DualChunk models.");
    }

    public Meter Meter { get; }

    /// <summary>Forward passes (Run).</summary>
    public CallInstruments Calls { get; }

    /// <summary>Stream appends.</summary>
    public CallInstruments Appends { get; }

    public void AddWorkspaceBytes(long bytes) => Interlocked.Add(ref _workspaceBytes, bytes);
}

/// <summary>A counter and a latency histogram of one kind of call, tagged with its output mode (and error.type on failure).</summary>
internal sealed class CallInstruments
{
    // Tag values are interned strings: recording a successful call allocates nothing.
    private static readonly KeyValuePair<string, object?> LastTag = new(DualChunkMetrics.OutputModeTag, "last");
    private static readonly KeyValuePair<string, object?> AllTag = new(DualChunkMetrics.OutputModeTag, "all");
    private static readonly KeyValuePair<string, object?> MeanTag = new(DualChunkMetrics.OutputModeTag, "mean");

    private readonly Counter<long> _calls;
    private readonly Histogram<double> _duration;

    public CallInstruments(Meter meter, string counter, string unit, string counterDescription, string histogram, string histogramDescription)
    {
        _calls = meter.CreateCounter<long>(counter, unit, counterDescription);
        _duration = meter.CreateHistogram(histogram, "s", histogramDescription,
            tags: null, advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = DualChunkMetrics.DurationBucketBoundaries });
    }

    /// <summary>The tag value of <paramref name="mode"/>: last, all or mean (interned).</summary>
    public static string ModeName(OutputMode mode) => (string)ModeTag(mode).Value!;

    private static KeyValuePair<string, object?> ModeTag(OutputMode mode) => mode switch
    {
        OutputMode.All => AllTag,
        OutputMode.MeanPool => MeanTag,
        _ => LastTag,
    };

    public void RecordCall(OutputMode mode, long startTimestamp)
    {
        var tag = ModeTag(mode);
        if (_duration.Enabled)
            _duration.Record(Stopwatch.GetElapsedTime(startTimestamp).TotalSeconds, tag);
        _calls.Add(1, tag);
    }

    /// <summary>Records a call that threw <paramref name="error"/>; false, so it can sit in an exception filter.</summary>
    public bool RecordFailure(OutputMode mode, long startTimestamp, Exception error)
    {
        var tags = new TagList { ModeTag(mode), { DualChunkMetrics.ErrorTypeTag, error.GetType().FullName } };
        if (_duration.Enabled)
            _duration.Record(Stopwatch.GetElapsedTime(startTimestamp).TotalSeconds, tags);
        _calls.Add(1, tags);
        return false;
    }
}
