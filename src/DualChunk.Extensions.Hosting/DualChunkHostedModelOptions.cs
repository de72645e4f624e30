using DualChunk.Core;

namespace DualChunk.Extensions.Hosting;

/// <summary>
/// One named model of the host, bound from the configuration section <c>DualChunk:Models:&lt;name&gt;</c>
/// (keys <c>Path</c>, <c>ChunkSize</c>, <c>MaxDegreeOfParallelism</c>, <c>AllowSpinning</c>, <c>MaxBatch</c>, <c>MaxSeqLen</c>,
/// <c>WarmUp</c>, <c>ReloadOnChange</c>) and then by the delegate given to
/// <see cref="DualChunkServiceCollectionExtensions.AddDualChunkModel"/>.
/// </summary>
public sealed class DualChunkHostedModelOptions
{
    /// <summary>The weights file: an Edifice safetensors checkpoint or a .dcw file. Required.</summary>
    public string? Path { get; set; }

    /// <summary>The chunk size the model was built with (<see cref="DualChunkModelOptions.ChunkSize"/>); null: the file's, or Edifice's 64.</summary>
    public int? ChunkSize { get; set; }

    /// <summary>Threads one call may use (<see cref="DualChunkModelOptions.MaxDegreeOfParallelism"/>, default 1).</summary>
    public int MaxDegreeOfParallelism { get; set; } = 1;

    /// <summary>
    /// Whether a call's threads spin briefly while they wait for each other inside the call
    /// (<see cref="DualChunkModelOptions.AllowSpinning"/>, default true; only matters when
    /// <see cref="MaxDegreeOfParallelism"/> &gt; 1). Turn it off when cores are scarcer than latency.
    /// </summary>
    public bool AllowSpinning { get; set; } = true;

    /// <summary>
    /// Largest batch a caller may send (null: unlimited). The service layer rejects larger requests before allocating
    /// anything from them; warm-up plans the pool for this batch.
    /// </summary>
    public int? MaxBatch { get; set; }

    /// <summary>
    /// Largest sequence length N a caller may send (null: unlimited). The service layer rejects longer requests before
    /// allocating anything from them; warm-up plans the pool for the largest multiple of C up to this.
    /// </summary>
    public int? MaxSeqLen { get; set; }

    /// <summary>
    /// Run <see cref="DualChunkModel.WarmUp"/> (at [<see cref="MaxBatch"/> or 1, <see cref="MaxSeqLen"/> or C]) after
    /// loading, before the model counts as ready (default true), so the first request neither JITs nor allocates.
    /// </summary>
    public bool WarmUp { get; set; } = true;

    /// <summary>
    /// Watch <see cref="Path"/> and load the file again when it changes (default false). The new model is warmed, then
    /// swapped in atomically; calls in flight finish on the old model, which is disposed after the last of them. A
    /// file that fails to load leaves the old model serving and the health check unhealthy with the reason. Replace
    /// the file atomically (write a temporary file, then rename it over the old one). A reloadable .dcw file is read
    /// into memory rather than memory-mapped, so rewriting it in place cannot change the model that serves.
    /// </summary>
    public bool ReloadOnChange { get; set; }

    /// <summary>
    /// How long the file must stay unchanged after a change event before it is loaded again (default 250 ms), so a
    /// file written in several steps is loaded once.
    /// </summary>
    public TimeSpan ReloadDelay { get; set; } = TimeSpan.FromMilliseconds(250);

    /// <summary>Checks the values, naming the configuration key and the fix.</summary>
    /// <exception cref="InvalidOperationException">A value is missing or out of range.</exception>
    internal void Validate(string name)
    {
        string key = $"{DualChunkServiceCollectionExtensions.ConfigurationSection}:{name}";
        if (string.IsNullOrWhiteSpace(Path))
            throw new InvalidOperationException($"Model '{name}' has no weights file: set {key}:Path (a .safetensors or .dcw file).");
        if (ChunkSize is <= 0)
            throw new InvalidOperationException($"{key}:ChunkSize is {ChunkSize}; it must be positive (the chunk size the model was built with).");
        if (MaxDegreeOfParallelism is < 1 or > DualChunkModelOptions.MaxThreads)
            throw new InvalidOperationException($"{key}:MaxDegreeOfParallelism is {MaxDegreeOfParallelism}; it must be 1..{DualChunkModelOptions.MaxThreads}.");
        if (MaxBatch is <= 0)
            throw new InvalidOperationException($"{key}:MaxBatch is {MaxBatch}; it must be positive, or unset for no limit.");
        if (MaxSeqLen is <= 0)
            throw new InvalidOperationException($"{key}:MaxSeqLen is {MaxSeqLen}; it must be positive, or unset for no limit.");
        if (ReloadDelay < TimeSpan.Zero || ReloadDelay > TimeSpan.FromMinutes(10))
            throw new InvalidOperationException($"{key}:ReloadDelay is {ReloadDelay}; it must be between 0 and 10 minutes.");
    }

    /// <summary>The library options the model is loaded with.</summary>
    internal DualChunkModelOptions ToModelOptions(System.Diagnostics.Metrics.IMeterFactory? meterFactory, string? name = null) => new()
    {
        Name = name,
        ChunkSize = ChunkSize,
        MaxDegreeOfParallelism = MaxDegreeOfParallelism,
        AllowSpinning = AllowSpinning,
        MeterFactory = meterFactory,
        // Read into memory, never mapped: a file rewritten or truncated in place must not change or kill the model
        // serving from it (a mapped file that shrinks raises SIGBUS in the process).
        MemoryMap = false,
        // The model checks the limits too, before it allocates (callers such as src/DualChunk.Server check them
        // earlier still, before sizing anything from a request).
        MaxBatch = MaxBatch,
        MaxSeqLen = MaxSeqLen,
    };

    internal DualChunkHostedModelOptions Clone() => (DualChunkHostedModelOptions)MemberwiseClone();
}
