using System.Globalization;
using DualChunk.Core;

namespace DualChunk.Bench;

/// <summary>
/// `idle-streams [count] [chunks]`: the managed bytes each idle stream retains (issue 22: 10,000 idle sequences of
/// 4 chunks at the default dims). Opens <c>count</c> streams of batch 1 with room for <c>chunks</c> chunks, appends
/// that many chunks to each, and compares GC.GetTotalMemory after full collections before and after; one stream
/// appended before the baseline puts the pooled workspace and the JIT in it.
/// </summary>
internal static class IdleStreams
{
    public static void Run(int count, int chunks)
    {
        var config = new ModelConfig(287, 256, 8, 4, 64, 1024);
        int c = config.ChunkSize;
        using var model = DualChunkModel.FromTensors(RandomWeights.Create(config, 1), config);
        var chunk = RandomWeights.Input(c * config.EmbedDim, 2);
        var output = new float[config.HiddenSize];
        using (var warm = model.CreateStream(1, chunks * c))
            for (int k = 0; k < chunks; k++) warm.Append(chunk, output);
        long before = Retained();
        var streams = new DualChunkStream[count];
        for (int i = 0; i < count; i++)
        {
            streams[i] = model.CreateStream(1, chunks * c);
            for (int k = 0; k < chunks; k++) streams[i].Append(chunk, output);
        }
        long after = Retained();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"streams={count} chunks={chunks} config={config} retained_bytes={after - before} per_stream_bytes={(after - before) / count} state_bytes={streams[0].StateBytes} pooled_workspace_bytes={model.PooledWorkspaceBytes}"));
        GC.KeepAlive(streams);
    }

    private static long Retained()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        return GC.GetTotalMemory(forceFullCollection: true);
    }
}
