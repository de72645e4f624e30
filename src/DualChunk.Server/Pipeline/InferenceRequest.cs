using CommunityToolkit.HighPerformance.Buffers;
using DualChunk.Core;
using static DualChunk.Server.Pipeline.InferenceException;

namespace DualChunk.Server.Pipeline;

/// <summary>
/// The sequence parameters of a request (Triton's sequence extension). <see cref="Id"/> is null for a request
/// outside any sequence.
/// </summary>
/// <param name="Id">The sequence id as the client gave it: a uint64 or a string (a number is written in decimal).</param>
/// <param name="IsString">Whether the client sent the id as a string (so "7" and 7 are different sequences).</param>
/// <param name="Start">sequence_start: open (or restart) the sequence with this request.</param>
/// <param name="End">sequence_end: free it after answering.</param>
/// <param name="Length">sequence_length: the positions the client believes the sequence holds before this request
/// (issue 22: a mismatch is refused, never appended to a prefix the client does not have); null when not sent.</param>
internal readonly record struct SequenceParameters(string? Id, bool IsString, bool Start, bool End, long? Length = null)
{
    public static SequenceParameters None => default;

    /// <summary>The table key: a number and a string with the same text are different ids.</summary>
    public string Key => (IsString ? "s:" : "u:") + Id;

    /// <summary>The id as written in messages.</summary>
    public string Display => IsString ? $"\"{Id}\"" : Id ?? "";

    /// <summary>Checks the combination: start/end need an id.</summary>
    public void Validate()
    {
        if (Id is null && (Start || End))
            throw new InferenceException(
                "sequence_start / sequence_end need a sequence_id (a non-zero uint64 or a non-empty string) naming the sequence; add \"sequence_id\" to the request parameters.");
        if (Length is < 0)
            throw new InferenceException(Inv($"\"sequence_length\" is {Length}; it must be the positions the sequence holds before this request (0 or more)."));
        if (Id is null && Length is not null)
            throw new InferenceException("\"sequence_length\" belongs to a sequence request; add \"sequence_id\" or drop it.");
    }
}

/// <summary>A decoded request, whatever protocol it came by: the input, the output mode, the sequence parameters.</summary>
internal sealed class InferenceRequest(ParsedInput input, OutputMode mode, SequenceParameters sequence) : IDisposable
{
    public ParsedInput Input { get; } = input;

    public OutputMode Mode { get; } = mode;

    public SequenceParameters Sequence { get; } = sequence;

    public void Dispose() => Input.Dispose();

    /// <summary>"last" (default), "all", "mean".</summary>
    public static OutputMode ParseMode(string? mode, string where) => mode switch
    {
        null or "last" => OutputMode.LastTimestep,
        "all" => OutputMode.All,
        "mean" => OutputMode.MeanPool,
        _ => throw new InferenceException($"Unknown output mode '{(mode.Length > 32 ? mode[..32] + "…" : mode)}' in {where}; use \"last\" (default), \"all\" or \"mean\"."),
    };
}

/// <summary>A served request's output in a pooled buffer (dispose to return it), its shape and the model that made it.</summary>
internal sealed class InferenceResult(MemoryOwner<float> output, int[] shape, string modelName, string modelVersion, TimeSpan modelTime) : IDisposable
{
    public ReadOnlyMemory<float> Output => output.Memory;

    public int[] Shape { get; } = shape;

    public string ModelName { get; } = modelName;

    public string ModelVersion { get; } = modelVersion;

    /// <summary>Time spent in the model (the Server-Timing header).</summary>
    public TimeSpan ModelTime { get; } = modelTime;

    public void Dispose() => output.Dispose();
}
