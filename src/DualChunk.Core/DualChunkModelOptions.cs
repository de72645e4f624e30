using System.Diagnostics.Metrics;

namespace DualChunk.Core;

/// <summary>How <see cref="DualChunkModel"/> loads weights and runs calls. Immutable once the model is built.</summary>
public sealed class DualChunkModelOptions
{
    /// <summary>Largest accepted <see cref="MaxDegreeOfParallelism"/>.</summary>
    public const int MaxThreads = 256;

    /// <summary>
    /// The chunk size the model was built with. Safetensors checkpoints do not store it (null means Edifice's default,
    /// 64); a .dcw file stores it, and a different value here is an error.
    /// </summary>
    public int? ChunkSize { get; init; }

    /// <summary>
    /// Threads one call may use, the calling thread included (default 1: the host already runs requests in
    /// parallel). Above 1 the model owns <c>MaxDegreeOfParallelism − 1</c> dedicated background threads that block on
    /// an event between phases; one call at a time uses them, concurrent calls run on their own threads. Results are
    /// bitwise identical for every value.
    /// </summary>
    public int MaxDegreeOfParallelism { get; init; } = 1;

    /// <summary>
    /// Memory-map a .dcw file and use its layer-norm parameters and biases in place (default true). False reads the
    /// file into arrays. Ignored for safetensors files, which are always read.
    /// </summary>
    public bool MemoryMap { get; init; } = true;

    /// <summary>
    /// Where the model's meter comes from: with a factory (e.g. the host's <c>IMeterFactory</c> from dependency
    /// injection) the instruments of <see cref="DualChunkMetrics"/> are created on <c>factory.Create("DualChunk")</c>,
    /// so they are scoped to that host and disposed with it; null (the default) records on one process-wide meter.
    /// </summary>
    public IMeterFactory? MeterFactory { get; init; }

    internal void Validate()
    {
        if (ChunkSize is <= 0)
            throw new ArgumentOutOfRangeException(nameof(ChunkSize), ChunkSize,
                "Chunk size must be positive; pass the chunk size the model was built with (Edifice's default is 64).");
        if (MaxDegreeOfParallelism is < 1 or > MaxThreads)
            throw new ArgumentOutOfRangeException(nameof(MaxDegreeOfParallelism), MaxDegreeOfParallelism,
                $"MaxDegreeOfParallelism must be 1..{MaxThreads}; 1 (the default) runs each call on its calling thread only.");
    }
}
