namespace DualChunk.Server.Sequences;

/// <summary>Limits of the open sequences, bound from the configuration section <c>Server:Sequences</c>.</summary>
public sealed class SequenceOptions
{
    /// <summary>Sequences open at once (default 1024); a start beyond it is refused (503), no open one is evicted.</summary>
    public int MaxSequences { get; set; } = 1024;

    /// <summary>
    /// Positions one sequence may reach (null: the model's <c>MaxSeqLen</c>, which also caps it: a stream cannot grow
    /// past the model's limit). An append beyond it is refused (400).
    /// </summary>
    public int? MaxSequenceLength { get; set; }

    /// <summary>Seconds a sequence may stay without a request before its state is freed (default 300).</summary>
    public double IdleTimeoutSeconds { get; set; } = 300;

    /// <summary>
    /// Bytes of stream state (k̄, v̄ per chunk and layer, and the mean sums) all open sequences may hold together
    /// (default 1 GiB); a start or an append that would pass it is refused (503), no open sequence is evicted.
    /// </summary>
    public long MaxStateBytes { get; set; } = 1L << 30;

    /// <summary>The idle timeout as a span.</summary>
    public TimeSpan IdleTimeout => TimeSpan.FromSeconds(IdleTimeoutSeconds);

    internal void Validate()
    {
        const string key = "Server:Sequences";
        if (MaxSequences < 0) throw new InvalidOperationException($"{key}:MaxSequences is {MaxSequences}; it must be 0 (no sequences) or more.");
        if (MaxSequenceLength is <= 0) throw new InvalidOperationException($"{key}:MaxSequenceLength is {MaxSequenceLength}; it must be positive, or unset for the model's MaxSeqLen.");
        if (!(IdleTimeoutSeconds > 0) || IdleTimeoutSeconds > 7 * 24 * 3600) throw new InvalidOperationException($"{key}:IdleTimeoutSeconds is {IdleTimeoutSeconds}; it must be above 0 and at most a week.");
        if (MaxStateBytes < 0) throw new InvalidOperationException($"{key}:MaxStateBytes is {MaxStateBytes}; it must be 0 or more.");
    }
}
