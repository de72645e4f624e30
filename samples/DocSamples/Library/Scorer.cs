using DualChunk.Core;

namespace MyService;

/// <summary>The streaming sample of docs/api.md ("Streaming"), compiled so it cannot rot.</summary>
public static class StreamingSample
{
    // A log scored as it arrives: one stream per log, one Append per chunk of C frames.
    public static float[] ScoreAsItArrives(DualChunkModel model, IEnumerable<float[]> chunks /* each [C, E] */)
    {
        using var stream = model.CreateStream(batch: 1, capacity: 16_384);  // state for 16,384 positions, allocated now
        var last = new float[stream.OutputLength(OutputMode.LastTimestep)]; // [H]
        foreach (var chunk in chunks)
            stream.Append(chunk, last, OutputMode.LastTimestep);             // costs one chunk, whatever Length is
        byte[] parked = stream.Snapshot();                                   // park it (e.g. in a cache) ...
        using var resumed = model.CreateStream(batch: 1);
        resumed.Restore(parked);                                             // ... and resume it later, bitwise
        return last;                                                         // = model.Run on the whole prefix
    }
}
