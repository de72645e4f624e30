using DualChunk.Core;

namespace MyService;

public sealed class Embedder : IDisposable
{
    private readonly DualChunkModel _model;

    public Embedder(string path)
    {
        // Load once at startup. Options are optional; these are the defaults except MaxDegreeOfParallelism and the limits.
        _model = DualChunkModel.Load(path, new DualChunkModelOptions
        {
            ChunkSize = null,              // safetensors: the chunk size the model was built with (default 64); .dcw stores it
            MaxDegreeOfParallelism = 2,    // threads per call, the calling thread included; default 1
            MemoryMap = false,             // default: read the file; the model never depends on it afterwards
            MaxBatch = 64,                 // host limits, checked before anything is allocated (null = no limit)
            MaxSeqLen = 8192,
            MaxWorkspaceBytes = 512L << 20,
        });
        _model.WarmUp(maxBatch: 16, maxSeqLen: 256);   // JIT every path, touch every weight, pre-plan the pool
    }

    // Per request: the caller owns input and output; nothing is allocated.
    public void Embed(ReadOnlySpan<float> input, int batch, int seqLen, Span<float> output, CancellationToken cancellationToken)
        => _model.Run(input, batch, seqLen, output, OutputMode.LastTimestep, cancellationToken);

    public void Dispose() => _model.Dispose();
}
