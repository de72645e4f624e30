namespace DualChunk.Server;

/// <summary>The service's own limits, bound from the configuration section <c>Service</c>.</summary>
public sealed class ServiceOptions
{
    /// <summary>Predict calls that run at once (default: the number of cores; each call is CPU-bound).</summary>
    public int MaxConcurrentCalls { get; set; } = Environment.ProcessorCount;

    /// <summary>Predict calls that may wait for a slot (default 8 × cores); beyond it the service answers 503 at once.</summary>
    public int MaxQueuedCalls { get; set; } = 8 * Environment.ProcessorCount;

    /// <summary>Largest request body in bytes (default 32 MiB); a larger one gets 413.</summary>
    public long MaxRequestBodyBytes { get; set; } = 32L << 20;

    /// <summary>
    /// Most bytes of an over-size gRPC message the server reads and discards before it answers RESOURCE_EXHAUSTED
    /// (default 64 MiB): answering mid-upload resets the stream, and some clients then report the reset instead of
    /// the status. A message claiming more is answered at once.
    /// </summary>
    public long OversizeDrainBytes { get; set; } = 64L << 20;

    /// <summary>Most seconds the server spends reading an over-size gRPC message it will refuse (default 10).</summary>
    public int OversizeDrainSeconds { get; set; } = 10;

    /// <summary>Seconds a client is told to wait (Retry-After) when the service is overloaded or not ready.</summary>
    public int RetryAfterSeconds { get; set; } = 1;

    /// <summary>The batch limit when <c>DualChunk:Models:default:MaxBatch</c> is not set.</summary>
    public const int DefaultMaxBatch = 8;

    /// <summary>The sequence-length limit when <c>DualChunk:Models:default:MaxSeqLen</c> is not set.</summary>
    public const int DefaultMaxSeqLen = 256;

    internal void Validate()
    {
        if (MaxConcurrentCalls < 1) throw new InvalidOperationException($"Service:MaxConcurrentCalls is {MaxConcurrentCalls}; it must be at least 1.");
        if (MaxQueuedCalls < 0) throw new InvalidOperationException($"Service:MaxQueuedCalls is {MaxQueuedCalls}; it must be 0 or more.");
        if (MaxRequestBodyBytes < 1024) throw new InvalidOperationException($"Service:MaxRequestBodyBytes is {MaxRequestBodyBytes}; it must be at least 1024.");
        if (OversizeDrainBytes < 0) throw new InvalidOperationException($"Service:OversizeDrainBytes is {OversizeDrainBytes}; it must be 0 or more.");
        if (OversizeDrainSeconds < 0) throw new InvalidOperationException($"Service:OversizeDrainSeconds is {OversizeDrainSeconds}; it must be 0 or more.");
        if (RetryAfterSeconds < 1) throw new InvalidOperationException($"Service:RetryAfterSeconds is {RetryAfterSeconds}; it must be at least 1.");
    }
}
