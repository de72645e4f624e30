using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace DualChunk.Core;

/// <summary>
/// The library's <see cref="System.Diagnostics.Metrics"/> instruments, on the meter <see cref="MeterName"/>.
/// The library writes nothing to the console or to any log: observe it through these (e.g. with
/// OpenTelemetry's <c>AddMeter("DualChunk")</c> or <c>dotnet-counters monitor --counters DualChunk</c>).
/// </summary>
public static class DualChunkMetrics
{
    /// <summary>Name of the meter: <c>DualChunk</c>.</summary>
    public const string MeterName = "DualChunk";

    /// <summary>Counter (<c>{call}</c>) of completed forward passes, tagged <c>dualchunk.output_mode</c> (last, all, mean).</summary>
    public const string CallsInstrument = "dualchunk.calls";

    /// <summary>Histogram (seconds) of completed forward passes' latency, validation included, tagged like the counter.</summary>
    public const string DurationInstrument = "dualchunk.call.duration";

    /// <summary>Observable gauge (bytes) of the workspaces held by the pools of all live models.</summary>
    public const string WorkspaceBytesInstrument = "dualchunk.workspace.bytes";

    /// <summary>Name of the output-mode tag.</summary>
    public const string OutputModeTag = "dualchunk.output_mode";

    private static readonly Meter Meter = new(MeterName);
    private static readonly Counter<long> Calls = Meter.CreateCounter<long>(CallsInstrument, "{call}", "Completed DualChunk forward passes.");
    private static readonly Histogram<double> Duration = Meter.CreateHistogram<double>(DurationInstrument, "s", "Latency of DualChunk forward passes.");
    private static long s_workspaceBytes;

#pragma warning disable CA1823 // kept alive by the meter; read through the callback
    private static readonly ObservableGauge<long> WorkspaceBytes = Meter.CreateObservableGauge(WorkspaceBytesInstrument,
        () => Interlocked.Read(ref s_workspaceBytes), "By", "Bytes of workspaces pooled by live DualChunk models.");
#pragma warning restore CA1823

    // Tag values are interned strings: recording allocates nothing.
    private static readonly KeyValuePair<string, object?> LastTag = new(OutputModeTag, "last");
    private static readonly KeyValuePair<string, object?> AllTag = new(OutputModeTag, "all");
    private static readonly KeyValuePair<string, object?> MeanTag = new(OutputModeTag, "mean");

    internal static void RecordCall(OutputMode mode, long startTimestamp)
    {
        var tag = mode switch
        {
            OutputMode.All => AllTag,
            OutputMode.MeanPool => MeanTag,
            _ => LastTag,
        };
        if (Duration.Enabled)
            Duration.Record(Stopwatch.GetElapsedTime(startTimestamp).TotalSeconds, tag);
        Calls.Add(1, tag);
    }

    internal static void AddWorkspaceBytes(long bytes) => Interlocked.Add(ref s_workspaceBytes, bytes);
}
