using System.Diagnostics;

namespace DualChunk.Core;

/// <summary>
/// The model's traces: an <see cref="ActivitySource"/> named <see cref="ActivitySourceName"/> (<c>DualChunk</c>) with
/// one span per <see cref="DualChunkModel.Run(ReadOnlySpan{float}, int, int, Span{float}, OutputMode, CancellationToken)"/>
/// (<see cref="RunActivityName"/>) and one per <see cref="DualChunkStream.Append"/> (<see cref="AppendActivityName"/>),
/// each a child of <see cref="Activity.Current"/>. With OpenTelemetry: <c>tracing.AddSource(DualChunkTracing.ActivitySourceName)</c>.
/// </summary>
/// <remarks>
/// When nothing listens to the source a call starts no span and allocates nothing. A span carries the tags below;
/// a call that throws sets the span's status to <see cref="ActivityStatusCode.Error"/> (description: the message),
/// the OpenTelemetry tag <c>error.type</c> (the exception's full type name) and an <c>exception</c> event. OpenTelemetry
/// has no semantic conventions for a model call that is not generative AI, so the other tags are in the
/// <c>dualchunk.</c> namespace and match the metrics' (<see cref="DualChunkMetrics.OutputModeTag"/>).
/// </remarks>
public static class DualChunkTracing
{
    /// <summary>The activity source's name, as the meter's: <c>DualChunk</c>.</summary>
    public const string ActivitySourceName = "DualChunk";

    /// <summary>The span of one model call: <c>dualchunk.run</c>.</summary>
    public const string RunActivityName = "dualchunk.run";

    /// <summary>The span of one stream append: <c>dualchunk.stream.append</c>.</summary>
    public const string AppendActivityName = "dualchunk.stream.append";

    /// <summary>The model's name, when it has one (<see cref="DualChunkModelOptions.Name"/>): <c>dualchunk.model.name</c>.</summary>
    public const string ModelNameTag = "dualchunk.model.name";

    /// <summary>The model's dimensions (<see cref="ModelConfig.ToString"/>): <c>dualchunk.model.config</c>.</summary>
    public const string ConfigTag = "dualchunk.model.config";

    /// <summary>B, the sequences of the call: <c>dualchunk.batch</c>.</summary>
    public const string BatchTag = "dualchunk.batch";

    /// <summary>N, the positions the call computes (an append: C): <c>dualchunk.positions</c>.</summary>
    public const string PositionsTag = "dualchunk.positions";

    /// <summary>An append: the stream's length before it, in positions: <c>dualchunk.stream.positions</c>.</summary>
    public const string StreamPositionsTag = "dualchunk.stream.positions";

    /// <summary>The threads one call may use (<see cref="DualChunkModel.MaxDegreeOfParallelism"/>): <c>dualchunk.threads</c>.</summary>
    public const string ThreadsTag = "dualchunk.threads";

    internal static readonly ActivitySource Source = new(ActivitySourceName, typeof(DualChunkTracing).Assembly.GetName().Version?.ToString());

    /// <summary>The span of a call, or null (allocation-free) when nothing listens.</summary>
    internal static Activity? StartRun(DualChunkModel model, int batch, int positions, OutputMode mode)
    {
        if (!Source.HasListeners()) return null;
        var activity = Source.StartActivity(RunActivityName, ActivityKind.Internal);
        if (activity is { IsAllDataRequested: true }) Describe(activity, model, batch, positions, mode);
        return activity;
    }

    /// <summary>The span of an append, or null (allocation-free) when nothing listens.</summary>
    internal static Activity? StartAppend(DualChunkModel model, int batch, int chunkSize, long streamPositions, OutputMode mode)
    {
        if (!Source.HasListeners()) return null;
        var activity = Source.StartActivity(AppendActivityName, ActivityKind.Internal);
        if (activity is { IsAllDataRequested: true })
        {
            Describe(activity, model, batch, chunkSize, mode);
            activity.SetTag(StreamPositionsTag, streamPositions);
        }
        return activity;
    }

    /// <summary>Marks the span failed with <paramref name="error"/>; false, so it can sit in an exception filter.</summary>
    internal static bool Failed(Activity? activity, Exception error)
    {
        if (activity is null) return false;
        activity.SetStatus(ActivityStatusCode.Error, error.Message);
        if (activity.IsAllDataRequested)
        {
            activity.SetTag(DualChunkMetrics.ErrorTypeTag, error.GetType().FullName);
            activity.AddException(error);
        }
        return false;
    }

    private static void Describe(Activity activity, DualChunkModel model, int batch, int positions, OutputMode mode)
    {
        if (model.Name is { } name) activity.SetTag(ModelNameTag, name);
        activity.SetTag(ConfigTag, model.ConfigText);
        activity.SetTag(BatchTag, batch);
        activity.SetTag(PositionsTag, positions);
        activity.SetTag(DualChunkMetrics.OutputModeTag, CallInstruments.ModeName(mode));
        activity.SetTag(ThreadsTag, model.MaxDegreeOfParallelism);
    }
}
