using DualChunk.Core;

namespace MyService;

public sealed class Embedder : IDisposable
{
    private readonly DualChunkModel _model;

    public Embedder(string path)
    {
        // Load once at startup. Options are optional; these are the defaults except MaxDegreeOfParallelism.
        _model = DualChunkModel.Load(path, new DualChunkModelOptions
        {
            ChunkSize = null,              // safetensors: the chunk size the model was built with (default 64); .dcw stores it
            MaxDegreeOfParallelism = 2,    // threads per call, the calling thread included; default 1
            MemoryMap = true,              // .dcw: map the file, use γ/β/biases in place
        });
        _model.WarmUp(maxBatch: 16, maxSeqLen: 256);   // JIT every path, touch every weight, pre-plan the pool
    }

    // Per request: the caller owns input and output; nothing is allocated.
    public void Embed(ReadOnlySpan<float> input, int batch, int seqLen, Span<float> output, CancellationToken cancellationToken)
        => _model.Run(input, batch, seqLen, output, OutputMode.LastTimestep, cancellationToken);

    public void Dispose() => _model.Dispose();
}
