using DualChunk.Core;

namespace DualChunk.Cli;

/// <summary><c>dualchunk stream</c>: a [B, N, E] input through a <see cref="DualChunkStream"/>, one chunk at a time.</summary>
internal static class StreamFeed
{
    /// <summary>
    /// Every chunk's output in order: for All [B, N, H] (the chunks' rows), else [B, N / C, H] (one row per chunk:
    /// its last position, or the mean over every position so far).
    /// </summary>
    public static (float[] Output, int[] Shape) Run(DualChunkModel model, float[] input, int batch, int seqLen, OutputMode mode)
    {
        int c = model.Config.ChunkSize, e = model.Config.EmbedDim, h = model.Config.HiddenSize, chunks = seqLen / c;
        int perChunk = mode == OutputMode.All ? c : 1;                      // output rows per sequence and chunk
        int[] shape = [batch, chunks * perChunk, h];
        var output = new float[model.OutputLength(batch, chunks * perChunk, OutputMode.All)];
        using var stream = model.CreateStream(batch, seqLen);
        var chunk = new float[batch * c * e];
        var result = new float[stream.OutputLength(mode)];
        for (int k = 0; k < chunks; k++)
        {
            for (int b = 0; b < batch; b++)
                input.AsSpan((b * seqLen + k * c) * e, c * e).CopyTo(chunk.AsSpan(b * c * e));
            stream.Append(chunk, result, mode);
            for (int b = 0; b < batch; b++)
                result.AsSpan(b * perChunk * h, perChunk * h).CopyTo(output.AsSpan((b * chunks + k) * perChunk * h));
        }
        return (output, shape);
    }
}
