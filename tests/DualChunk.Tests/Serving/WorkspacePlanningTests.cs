using DualChunk.Core;
using static DualChunk.Tests.Serving.ServingTestSupport;

namespace DualChunk.Tests.Serving;

/// <summary>
/// Issue 9 item 5: the pool plans a workspace by what a call needs (rows B·N, longest N), so no request fails or
/// costs more because of an earlier request's shape; the host limits MaxBatch, MaxSeqLen and MaxWorkspaceBytes
/// are checked before anything is allocated.
/// </summary>
[TestFixture]
public sealed class WorkspacePlanningTests
{
    [Test]
    public void AWideCallThenALongCallPoolsAboutWhatTheLongCallAloneNeeds()
    {
        var config = new ModelConfig(20, 64, 4, 1, 8, 128);
        const int longN = 4096;
        long alone;
        using (var fresh = Create(config, threads: 1))
        {
            Run(fresh, RandomWeights.Input(longN * 20, 1), 1, longN, OutputMode.LastTimestep);
            alone = fresh.PooledWorkspaceBytes;
        }
        using var model = Create(config, threads: 1);
        Run(model, RandomWeights.Input(16 * 64 * 20, 2), 16, 64, OutputMode.LastTimestep);
        long wide = model.PooledWorkspaceBytes;
        Run(model, RandomWeights.Input(longN * 20, 1), 1, longN, OutputMode.LastTimestep);
        // Planning max(B) × max(N) would pool 16 × 4096 rows here, ~16 times what the long call needs.
        Assert.That(model.PooledWorkspaceBytes, Is.LessThanOrEqualTo(alone * 5 / 4),
            $"after B=16 N=64 ({wide:N0} B) then B=1 N={longN}: pooled {model.PooledWorkspaceBytes:N0} B; that call alone needs {alone:N0} B");
        // And the wide call still fits the pooled workspace: no new one.
        long before = model.PooledWorkspaceBytes;
        Run(model, RandomWeights.Input(16 * 64 * 20, 2), 16, 64, OutputMode.LastTimestep);
        Assert.That(model.PooledWorkspaceBytes, Is.EqualTo(before));
    }

    [Test]
    public void ABatchOf64ThenOneSequenceOf65536DoesNotFailBecauseOfTheEarlierBatch()
    {
        // H = 256: planning 64 × 65536 rows would need more than one .NET array; one sequence needs ~140 MB.
        // One layer in last_timestep mode: only its summaries run over all rows, so the long call is cheap.
        var config = new ModelConfig(8, 256, 1, 1, 64, 16);
        using var model = Create(config, threads: 1);
        Run(model, RandomWeights.Input(64 * 64 * 8, 3), 64, 64, OutputMode.LastTimestep);
        float[] output = [];
        Assert.That(() => output = Run(model, RandomWeights.Input(65536 * 8, 4), 1, 65536, OutputMode.LastTimestep), Throws.Nothing);
        Assert.That(output.All(float.IsFinite), Is.True);
    }

    [Test]
    public void ABatchOverMaxBatchThrowsNamingTheLimitBeforeAllocating()
    {
        using var model = DualChunkModel.FromTensors(RandomWeights.Create(Small, 5), Small, new DualChunkModelOptions { MaxBatch = 4 });
        long allocated = GC.GetAllocatedBytesForCurrentThread();
        // The input is empty: the limit is checked before the input's length, so nothing is read or allocated from it.
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => model.Run(ReadOnlySpan<float>.Empty, 1_000_000, 8, new float[64], OutputMode.LastTimestep));
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - allocated, Is.LessThan(100_000));
        Assert.That(ex!.Message, Does.Contain("MaxBatch = 4").And.Contain("at most 4 sequences"));
        Assert.That(model.PooledWorkspaceBytes, Is.Zero);
        Assert.That(() => model.WarmUp(maxBatch: 5), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contain("MaxBatch"));
        Assert.That(() => model.CreateWorkspace(5, 8), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contain("MaxBatch"));
        Assert.That(() => Run(model, new float[4 * 8 * Small.EmbedDim], 4, 8, OutputMode.LastTimestep), Throws.Nothing);
    }

    [Test]
    public void ASequenceOverMaxSeqLenThrowsNamingTheLimitBeforeAllocating()
    {
        using var model = DualChunkModel.FromTensors(RandomWeights.Create(Small, 5), Small, new DualChunkModelOptions { MaxSeqLen = 64 });
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => model.Run(ReadOnlySpan<float>.Empty, 1, 1 << 30, new float[64], OutputMode.LastTimestep));
        Assert.That(ex!.Message, Does.Contain("MaxSeqLen = 64").And.Contain("at most 64 positions"));
        Assert.That(model.PooledWorkspaceBytes, Is.Zero);
        Assert.That(() => Run(model, new float[64 * Small.EmbedDim], 1, 64, OutputMode.All), Throws.Nothing);
    }

    [Test]
    public void ACallNeedingMoreThanMaxWorkspaceBytesThrowsBeforeAllocating()
    {
        using var model = DualChunkModel.FromTensors(RandomWeights.Create(Small, 5), Small, new DualChunkModelOptions { MaxWorkspaceBytes = 1 << 20 });
        Assert.That(() => Run(model, new float[8 * Small.EmbedDim], 1, 8, OutputMode.LastTimestep), Throws.Nothing);
        long pooled = model.PooledWorkspaceBytes;
        var input = new float[4096 * Small.EmbedDim];
        var output = new float[Small.HiddenSize];
        long start = GC.GetAllocatedBytesForCurrentThread();
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => model.Run(input, 1, 4096, output, OutputMode.LastTimestep));
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - start, Is.LessThan(100_000));
        Assert.That(ex!.Message, Does.Contain("MaxWorkspaceBytes = 1,048,576").And.Contain("raise MaxWorkspaceBytes"));
        Assert.That(model.PooledWorkspaceBytes, Is.EqualTo(pooled));
    }

    [Test]
    public void LimitsMustBePositive()
    {
        var tensors = RandomWeights.Create(Small, 5);
        foreach (var options in new[] { new DualChunkModelOptions { MaxBatch = 0 }, new DualChunkModelOptions { MaxSeqLen = -1 }, new DualChunkModelOptions { MaxWorkspaceBytes = 0 } })
            Assert.That(() => DualChunkModel.FromTensors(tensors, Small, options), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contain("null for no limit"));
    }

    [Test]
    public void ACallerOwnedWorkspaceTakesAnyShapeWithinItsRowsAndLength()
    {
        using var model = Create(Small, threads: 2);
        var ws = model.CreateWorkspace(4, 64);
        Assert.That((ws.MaxBatch, ws.MaxSeqLen, ws.MaxRows), Is.EqualTo((4, 64, 256L)));
        var input = RandomWeights.Input(4 * 64 * Small.EmbedDim, 6);
        foreach (var (b, n) in new[] { (4, 64), (2, 16), (1, 64) })
        {
            var x = input.AsSpan(0, b * n * Small.EmbedDim).ToArray();
            var viaPool = Run(model, x, b, n, OutputMode.All);
            var output = new float[viaPool.Length];
            model.Run(x, b, n, output, OutputMode.All, ws);
            AssertBitwise(viaPool, output, $"B={b} N={n}");
        }
        Assert.That(() => model.Run(new float[5 * 8 * Small.EmbedDim], 5, 8, new float[5 * Small.HiddenSize], OutputMode.LastTimestep, ws),
            Throws.ArgumentException.With.Message.Contain("Create a larger workspace"));
    }
}
