using System.Diagnostics.Metrics;

namespace DualChunk.Core;

/// <summary>
/// How <see cref="DualChunkModel"/> loads weights and runs calls. The values are read when a model is loaded: changing
/// them afterwards does not change a loaded model.
/// </summary>
/// <remarks>
/// The properties are settable, as in every Microsoft.Extensions options type, so configuration binding fills them
/// (<c>DualChunk.Extensions.Hosting</c> binds all of them except <see cref="MeterFactory"/> from
/// <c>DualChunk:Models:&lt;name&gt;</c>).
/// </remarks>
public sealed class DualChunkModelOptions
{
    /// <summary>Largest accepted <see cref="MaxDegreeOfParallelism"/>.</summary>
    public const int MaxThreads = 256;

    /// <summary>
    /// The chunk size the model was built with. Safetensors checkpoints do not store it (null means Edifice's default,
    /// 64); a .dcw file stores it, and a different value here is an error.
    /// </summary>
    public int? ChunkSize { get; set; }

    /// <summary>
    /// Threads one call may use, the calling thread included (default 1: the host already runs requests in
    /// parallel). Above 1 the model owns <c>MaxDegreeOfParallelism − 1</c> dedicated background threads; one call at a
    /// time uses them, concurrent calls run on their own threads. Between calls they block on an event (see
    /// <see cref="AllowSpinning"/> for inside a call). Results are bitwise identical for every value.
    /// </summary>
    public int MaxDegreeOfParallelism { get; set; } = 1;

    /// <summary>
    /// Whether the threads of one call spin briefly (about 50 µs) while they wait for each other inside the call,
    /// before they block (default true; it matters only when <see cref="MaxDegreeOfParallelism"/> &gt; 1). The anchor
    /// is ONNX Runtime's <c>session.intra_op.allow_spinning</c>.
    /// </summary>
    /// <remarks>
    /// A call hands work between its threads dozens of times; a spinning thread picks it up in nanoseconds, a blocked
    /// one needs a kernel wake-up of tens of µs, which at small sizes costs more than the second thread brings. The
    /// price is CPU time burned while waiting, at most about 50 µs per wait, taken from whatever else wants that core:
    /// other requests, other processes. Between calls the threads always block, so an idle model uses no CPU either
    /// way. Turn it off on an oversubscribed machine (more busy threads than cores), where a spinning thread can
    /// delay the very thread it waits for, or when CPU time matters more than latency. Results do not depend on it.
    /// </remarks>
    public bool AllowSpinning { get; set; } = true;

    /// <summary>
    /// Memory-map a .dcw file and use its layer-norm parameters and biases in place (default false: the file is read
    /// into memory and the model does not depend on it once <c>Load</c> returns). Ignored for safetensors files and
    /// streams, which are always read.
    /// </summary>
    /// <remarks>
    /// <b>Hazard, as with llama.cpp's <c>use_mmap</c>:</b> a mapped model reads the file for as long as it lives. If the
    /// file is truncated or deleted-and-shrunk while the model is loaded, the next call touches a page that no longer
    /// exists and the OS kills the process with SIGBUS (an <see cref="AccessViolationException"/> that cannot be
    /// caught); if it is overwritten in place, calls silently use the new bytes, which load-time validation never saw
    /// (NaN or wrong outputs). Enable it only for files nothing rewrites while the process runs (e.g. a read-only
    /// image), and replace a model file by writing a new file and renaming it over the old one (the mapping keeps the
    /// old file). The saving is small: the GEMM weights are packed into managed memory at load either way.
    /// </remarks>
    public bool MemoryMap { get; set; }

    /// <summary>
    /// Largest batch B a call may send (null, the default, means no limit). Checked before anything is allocated: a
    /// larger call throws <see cref="ArgumentOutOfRangeException"/>.
    /// </summary>
    public int? MaxBatch { get; set; }

    /// <summary>
    /// Largest sequence length N a call may send (null, the default, means no limit). Checked before anything is
    /// allocated: a longer call throws <see cref="ArgumentOutOfRangeException"/>.
    /// </summary>
    public int? MaxSeqLen { get; set; }

    /// <summary>
    /// Largest workspace, in bytes, one call may need (null, the default, means no limit). A workspace grows with
    /// B·N·H (about 8·B·N·H bytes plus per-thread buffers); a call that would need more throws
    /// <see cref="ArgumentOutOfRangeException"/> before anything is allocated.
    /// </summary>
    public long? MaxWorkspaceBytes { get; set; }

    /// <summary>
    /// The model's name, for its traces (<see cref="DualChunkTracing.ModelNameTag"/>); null (the default) leaves the tag
    /// out. <c>DualChunk.Extensions.Hosting</c> sets the name the model is registered under.
    /// </summary>
    public string? Name { get; set; }

    /// <summary>
    /// Where the model's meter comes from: with a factory (e.g. the host's <c>IMeterFactory</c> from dependency
    /// injection) the instruments of <see cref="DualChunkMetrics"/> are created on <c>factory.Create("DualChunk")</c>,
    /// so they are scoped to that host and disposed with it; null (the default) records on one process-wide meter.
    /// </summary>
    public IMeterFactory? MeterFactory { get; set; }

    /// <summary>A copy of these options (the same <see cref="MeterFactory"/> instance).</summary>
    public DualChunkModelOptions Clone() => (DualChunkModelOptions)MemberwiseClone();

    /// <summary>
    /// Checks every value, as loading a model does first.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">
    /// A value is out of range; <see cref="ArgumentException.ParamName"/> is the property's name and the message says what
    /// is allowed.
    /// </exception>
    public void Validate()
    {
        if (MaxBatch is <= 0)
            throw new ArgumentOutOfRangeException(nameof(MaxBatch), MaxBatch, "MaxBatch must be positive, or null for no limit.");
        if (MaxSeqLen is <= 0)
            throw new ArgumentOutOfRangeException(nameof(MaxSeqLen), MaxSeqLen, "MaxSeqLen must be positive, or null for no limit.");
        if (MaxWorkspaceBytes is <= 0)
            throw new ArgumentOutOfRangeException(nameof(MaxWorkspaceBytes), MaxWorkspaceBytes, "MaxWorkspaceBytes must be positive, or null for no limit.");
        if (ChunkSize is <= 0)
            throw new ArgumentOutOfRangeException(nameof(ChunkSize), ChunkSize,
                "Chunk size must be positive; pass the chunk size the model was built with (Edifice's default is 64).");
        if (MaxDegreeOfParallelism is < 1 or > MaxThreads)
            throw new ArgumentOutOfRangeException(nameof(MaxDegreeOfParallelism), MaxDegreeOfParallelism,
                $"MaxDegreeOfParallelism must be 1..{MaxThreads}; 1 (the default) runs each call on its calling thread only.");
    }
}
