using System.Globalization;
using DualChunk.Core;
using DualChunk.Kernels;
using DualChunk.Tests.Golden;
using static DualChunk.Tests.Serving.ServingTestSupport;

namespace DualChunk.Tests.Model;

/// <summary>
/// Streams against Run on the prefix: what <see cref="DualChunkStream.Append"/> returns for chunk k must be bitwise
/// what Run returns for the first k + 1 chunks (the chunk's rows for All, the prefix's last position, the prefix's
/// mean pool), on random models of many shapes, batches and chunk counts, on 1 and 2 threads (every split forced),
/// in every mode and mixed modes, across capacity growth and snapshot/restore; and on the golden cases.
/// </summary>
[TestFixture]
public sealed class StreamTests
{
    // E ≠ H and E == H; H < 4 (RowMean's scalar path), odd C, C = 1, NH > 1, D not a multiple of the vector width,
    // more than 8 and 16 chunks (the attention kernel's blocks of keys), B > 1.
    private static readonly (ModelConfig Config, int Chunks, int B)[] Shapes =
    [
        (new(20, 24, 3, 2, 5, 96), 11, 2),
        (new(3, 2, 1, 2, 3, 8), 9, 1),
        (new(16, 16, 2, 3, 1, 32), 19, 2),
        (new(33, 40, 5, 2, 8, 160), 18, 3),
        (new(64, 64, 4, 1, 16, 256), 10, 1),
        (new(7, 48, 2, 2, 4, 96), 35, 1),
    ];

    private static IEnumerable<TestCaseData> Cases()
    {
        for (int i = 0; i < Shapes.Length; i++)
            foreach (int threads in new[] { 1, 2 })
                yield return new TestCaseData(i, threads).SetName($"StreamEqualsRunOnPrefix_{Shapes[i].Config.ToString().Replace(' ', '_')}_chunks{Shapes[i].Chunks}_B{Shapes[i].B}_threads{threads}");
    }

    [TestCaseSource(nameof(Cases))]
    public void StreamEqualsRunOnPrefix(int shape, int threads)
    {
        var (config, chunks, batch) = Shapes[shape];
        using var splits = threads > 1 ? ForceSplits() : null;
        using var model = Create(config, threads, seed: 300 + shape);
        int c = config.ChunkSize, e = config.EmbedDim, n = chunks * c;
        var input = RandomWeights.Input(batch * n * e, seed: 400 + shape);
        OutputMode[][] schedules =
        [
            [OutputMode.LastTimestep], [OutputMode.All], [OutputMode.MeanPool], [OutputMode.All, OutputMode.MeanPool, OutputMode.MeanPool],
        ];
        foreach (var schedule in schedules)
        {
            using var stream = model.CreateStream(batch, capacity: c); // grows on the 2nd, 3rd, 5th, 9th … append
            for (int k = 0; k < chunks; k++)
            {
                var mode = schedule[k % schedule.Length];
                var output = Poisoned(stream.OutputLength(mode));
                stream.Append(Chunk(input, batch, n, e, c, k), output, mode);
                Assert.That(stream.Length, Is.EqualTo((k + 1) * c));
                var expected = Expected(model, input, batch, n, k + 1, c, mode);
                AssertBitwise(expected, output, $"{string.Join('/', schedule)} chunk {k} {mode}");
            }
        }
    }

    [Test]
    public void GoldenCasesFedChunkByChunk([ValueSource(typeof(GoldenCase), nameof(GoldenCase.Names))] string name)
    {
        // Every mode: the last chunk's output is Run's on the whole input bitwise, and Edifice's within the golden bound.
        var golden = GoldenCase.Load(name);
        using var model = DualChunkModel.Load(golden.ModelPath, golden.ChunkSize);
        int c = golden.ChunkSize, e = golden.EmbedDim, h = golden.HiddenSize, n = golden.SeqLen, batch = golden.Batch, chunks = n / c;
        var input = golden.Input;
        foreach (var mode in Modes)
        {
            using var stream = model.CreateStream(batch);
            var all = new float[batch * n * h];
            var output = new float[stream.OutputLength(mode)];
            for (int k = 0; k < chunks; k++)
            {
                stream.Append(Chunk(input, batch, n, e, c, k), output, mode);
                if (mode == OutputMode.All)
                    for (int b = 0; b < batch; b++)
                        output.AsSpan(b * c * h, c * h).CopyTo(all.AsSpan((b * n + k * c) * h));
            }
            var result = mode == OutputMode.All ? all : output;
            AssertBitwise(model.Run(input, batch, n, mode), result, $"{name} {mode}: stream vs Run");
            int[] shape = mode == OutputMode.All ? [batch, n, h] : [batch, h];
            golden.AssertMatches(result, shape, GoldenCase.ModeKey(mode), $"{name} {mode} streamed");
        }
    }

    [Test]
    public void OnlyWholeChunksAndRightShapes()
    {
        using var model = Create(Small, 1);
        using var stream = model.CreateStream(batch: 2);
        int c = Small.ChunkSize, e = Small.EmbedDim, h = Small.HiddenSize;
        var output = new float[2 * h];
        foreach (int positions in new[] { c - 1, c + 1, 2 * c, 1 })
        {
            var ex = Assert.Throws<ArgumentException>(() => stream.Append(new float[2 * positions * e], output));
            Assert.That(ex!.Message, Does.Contain("whole chunks").And.Contain($"{positions} positions per sequence").And.Contain($"{c} per sequence"));
        }
        Assert.That(Assert.Throws<ArgumentException>(() => stream.Append(new float[2 * c * e + 1], output))!.Message, Does.Contain("not a whole number of positions"));
        Assert.That(Assert.Throws<ArgumentException>(() => stream.Append(new float[c * e], output))!.Message, Does.Contain("batch 2"), "one sequence's chunk for a batch of 2");
        Assert.That(Assert.Throws<ArgumentException>(() => stream.Append(new float[2 * c * e], new float[h]))!.Message, Does.Contain("needs 128"));
        Assert.That(Assert.Throws<ArgumentException>(() => stream.Append(new float[2 * c * e], new float[2 * h], OutputMode.All))!.Message, Does.Contain("OutputLength"));
        var nan = RandomWeights.Input(2 * c * e, 1);
        nan[c * e + 3 * e + 2] = float.NaN;
        Assert.That(Assert.Throws<ArgumentException>(() => stream.Append(nan, output))!.Message, Does.Contain("[batch 1, position 3, feature 2]"));
        Assert.That(stream.Length, Is.Zero, "failed appends change nothing");
        Assert.That(() => model.CreateStream(batch: 1, capacity: c + 1), Throws.ArgumentException.With.Message.Contains("multiple of the chunk size"));
        Assert.That(() => model.CreateStream(batch: 0), Throws.InstanceOf<ArgumentOutOfRangeException>());
    }

    [Test]
    public void FailedAppendLeavesTheStreamAsItWas()
    {
        using var model = Create(Small, 1);
        int c = Small.ChunkSize, e = Small.EmbedDim, n = 3 * c;
        var input = RandomWeights.Input(n * e, 5);
        using var stream = model.CreateStream();
        var output = new float[stream.OutputLength(OutputMode.MeanPool)];
        stream.Append(Chunk(input, 1, n, e, c, 0), output, OutputMode.MeanPool);
        using (var cts = new CancellationTokenSource())
        {
            cts.Cancel();
            Assert.That(() => stream.Append(Chunk(input, 1, n, e, c, 1), output, OutputMode.MeanPool, cts.Token), Throws.InstanceOf<OperationCanceledException>());
        }
        Assert.That(() => stream.Append(Chunk(input, 1, n, e, c, 1).AsSpan(1), output, OutputMode.MeanPool), Throws.ArgumentException);
        Assert.That(stream.Length, Is.EqualTo(c));
        stream.Append(Chunk(input, 1, n, e, c, 1), output, OutputMode.MeanPool);
        AssertBitwise(Expected(model, input, 1, n, 2, c, OutputMode.MeanPool), output, "after the failed appends");
    }

    [Test]
    public void MeanPoolAfterLastTimestepIsRefusedUntilReset()
    {
        using var model = Create(Small, 1);
        int c = Small.ChunkSize, e = Small.EmbedDim;
        var input = RandomWeights.Input(2 * c * e, 6);
        using var stream = model.CreateStream();
        var output = new float[Small.HiddenSize];
        stream.Append(Chunk(input, 1, 2 * c, e, c, 0), output, OutputMode.LastTimestep);
        Assert.That(stream.CanMeanPool, Is.False);
        Assert.That(() => stream.Append(Chunk(input, 1, 2 * c, e, c, 1), output, OutputMode.MeanPool),
            Throws.InvalidOperationException.With.Message.Contains("LastTimestep"));
        stream.Reset();
        Assert.That(stream.Length, Is.Zero);
        stream.Append(Chunk(input, 1, 2 * c, e, c, 0), output, OutputMode.MeanPool);
        AssertBitwise(Expected(model, input, 1, 2 * c, 1, c, OutputMode.MeanPool), output, "after Reset");
    }

    [Test]
    public void MaxSeqLenBoundsTheStream()
    {
        var tensors = RandomWeights.Create(Small, 7);
        int c = Small.ChunkSize, e = Small.EmbedDim;
        using var model = DualChunkModel.FromTensors(tensors, Small, new DualChunkModelOptions { MaxSeqLen = 2 * c, MaxBatch = 2 });
        Assert.That(() => model.CreateStream(batch: 3), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("MaxBatch"));
        using var stream = model.CreateStream();
        Assert.That(stream.Capacity, Is.EqualTo(2 * c), "the default capacity is capped by MaxSeqLen");
        var output = new float[Small.HiddenSize];
        var chunk = RandomWeights.Input(c * e, 8);
        stream.Append(chunk, output);
        stream.Append(chunk, output);
        Assert.That(() => stream.Append(chunk, output), Throws.InvalidOperationException.With.Message.Contains("MaxSeqLen"));
        Assert.That(() => stream.EnsureCapacity(3 * c), Throws.InstanceOf<ArgumentOutOfRangeException>());
    }

    [Test]
    public void StateBytesFollowTheFormula()
    {
        using var model = Create(Small, 1);
        int c = Small.ChunkSize, l = Small.NumLayers, h = Small.HiddenSize;
        using var stream = model.CreateStream(batch: 3, capacity: 5 * c);
        Assert.That(stream.StateBytes, Is.EqualTo((long)l * 3 * 5 * 2 * h * 4 + 3 * 2 * h * 8));
        Assert.That(DualChunkStream.StateBytesFor(Small, 3, 5 * c), Is.EqualTo(stream.StateBytes));
        long before = GC.GetAllocatedBytesForCurrentThread();
        stream.EnsureCapacity(105 * c);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        long stateGrowth = (long)l * 3 * 105 * 2 * h * 4;
        Assert.That(stream.StateBytes, Is.EqualTo(stateGrowth + 3 * 2 * h * 8));
        // The new state array plus the attention scratch for 105 chunks (2 rows of D, Qᵀ and V per chunk and worker).
        Assert.That(allocated, Is.InRange(stateGrowth, stateGrowth + 105 * 4 * (4 * Small.HeadDim + 32) + 4096));
    }

    [Test]
    public void AppendAllocatesNothingInSteadyState([Values(1, 2)] int threads)
    {
        using var splits = threads > 1 ? ForceSplits() : null;
        using var model = Create(Small, threads);
        int c = Small.ChunkSize, e = Small.EmbedDim;
        using var stream = model.CreateStream(batch: 2, capacity: 64 * c);
        var chunk = RandomWeights.Input(2 * c * e, 9);
        var all = new float[stream.OutputLength(OutputMode.All)];
        var one = new float[stream.OutputLength(OutputMode.MeanPool)];
        for (int i = 0; i < 3; i++) { stream.Append(chunk, all, OutputMode.All); stream.Append(chunk, one, OutputMode.MeanPool); }
        long helper = model.HelperAllocatedBytes, phases = model.HelperPhasesJoined;
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 20; i++)
        {
            stream.Append(chunk, all, OutputMode.All);
            stream.Append(chunk, one, OutputMode.MeanPool);
        }
        for (int i = 0; i < 10; i++) stream.Append(chunk, one, OutputMode.LastTimestep);
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.Zero, "caller thread bytes over 50 appends");
        Assert.That(model.HelperAllocatedBytes - helper, Is.Zero, "helper thread bytes");
        if (threads > 1) Assert.That(model.HelperPhasesJoined, Is.GreaterThan(phases), "the helper thread took part");
    }

    [Test]
    public void AnIdleStreamHoldsOnlyItsState([Values(1, 2)] int threads)
    {
        using var model = Create(Small, threads);
        int c = Small.ChunkSize, e = Small.EmbedDim;
        var chunk = RandomWeights.Input(c * e, 10);
        var output = new float[Small.HiddenSize];
        using var first = model.CreateStream(capacity: 4 * c);
        Assert.That(model.PooledWorkspaceBytes, Is.Zero, "creating a stream rents nothing");
        for (int i = 0; i < 4; i++) first.Append(chunk, output);
        long pooled = model.PooledWorkspaceBytes;
        Assert.That(pooled, Is.GreaterThan(0), "an append returns its workspace to the model's pool");
        var streams = new DualChunkStream[8];
        for (int s = 0; s < streams.Length; s++)
        {
            streams[s] = model.CreateStream(capacity: 4 * c);
            for (int i = 0; i < 4; i++) streams[s].Append(chunk, output);
        }
        Assert.That(model.PooledWorkspaceBytes, Is.EqualTo(pooled), "one pooled workspace served every stream; none stays with a stream");
        var expected = Expected(model, [.. Enumerable.Repeat(chunk, 4).SelectMany(x => x)], 1, 4 * c, 4, c, OutputMode.LastTimestep);
        AssertBitwise(expected, output, "the last stream's 4th append");
        foreach (var stream in streams) stream.Dispose();
    }

    [Test]
    public void SnapshotRestoresBitwise([Values(1, 2)] int threads)
    {
        var config = Shapes[0].Config;
        using var model = Create(config, threads, seed: 300);
        int c = config.ChunkSize, e = config.EmbedDim, batch = 2, chunks = 7, n = chunks * c;
        var input = RandomWeights.Input(batch * n * e, 11);
        using var original = model.CreateStream(batch);
        var output = new float[original.OutputLength(OutputMode.All)];
        for (int k = 0; k < 4; k++) original.Append(Chunk(input, batch, n, e, c, k), output, OutputMode.All);
        byte[] snapshot = original.Snapshot();
        Assert.That(snapshot, Has.Length.EqualTo(original.SnapshotLength));
        using var restored = model.CreateStream(batch, capacity: c); // smaller: restore grows it
        restored.Restore(snapshot);
        Assert.That(restored.Length, Is.EqualTo(4 * c));
        var again = new float[output.Length];
        for (int k = 4; k < chunks; k++)
        {
            var mode = Modes[k % 3] == OutputMode.LastTimestep ? OutputMode.All : Modes[k % 3];
            var a = new float[original.OutputLength(mode)];
            var b = new float[a.Length];
            original.Append(Chunk(input, batch, n, e, c, k), a, mode);
            restored.Append(Chunk(input, batch, n, e, c, k), b, mode);
            AssertBitwise(a, b, $"chunk {k} {mode} after restore");
            AssertBitwise(Expected(model, input, batch, n, k + 1, c, mode), b, $"chunk {k} {mode} vs Run");
        }
        Assert.That(restored.Snapshot(), Is.EqualTo(original.Snapshot()));
    }

    [Test]
    public void HostileSnapshotsAreRefusedByName()
    {
        var config = Shapes[0].Config;
        using var model = Create(config, 1, seed: 300);
        int c = config.ChunkSize, e = config.EmbedDim;
        using var stream = model.CreateStream(batch: 2);
        var output = new float[stream.OutputLength(OutputMode.All)];
        stream.Append(RandomWeights.Input(2 * c * e, 12), output, OutputMode.All);
        stream.Append(RandomWeights.Input(2 * c * e, 13), output, OutputMode.All);
        byte[] good = stream.Snapshot();
        using var target = model.CreateStream(batch: 2);

        void Refused(byte[] bytes, string what, string message)
        {
            var ex = Assert.Throws<StreamSnapshotException>(() => target.Restore(bytes), what);
            Assert.That(ex!.Message, Does.Contain(message), what);
            Assert.That(target.Length, Is.Zero, $"{what}: the stream is unchanged");
        }

        for (int cut = 0; cut < good.Length; cut += Math.Max(1, cut / 3))
            Assert.That(() => target.Restore(good.AsSpan(0, cut)), Throws.InstanceOf<StreamSnapshotException>(), $"truncated to {cut}");
        Refused([.. good, 0], "trailing byte", "trailing");
        Refused(Patched(good, 0, 0x58), "magic", "magic");
        Refused(Patched(good, 8, 3), "version", "version 3");
        Refused(Patched(good, 16, 99), "H", "hidden_size H = 99");
        Refused(Patched(good, 44, 3), "batch", "batch 3");
        Refused(Patched(good, 48, 0x7f), "huge length", "chunks"); // claims ~2^31 chunks: refused before allocating
        Refused(Patched(good, 52, 4), "flags", "flags");
        Refused(Patched(good, 100, (byte)(good[100] ^ 1)), "a flipped state bit", "checksum");

        using var other = Create(config, 1, seed: 301);
        using var foreign = other.CreateStream(batch: 2);
        Assert.That(Assert.Throws<StreamSnapshotException>(() => foreign.Restore(good))!.Message, Does.Contain("weights fingerprint")
            .And.Contain(model.Fingerprint.ToString("x16", CultureInfo.InvariantCulture)).And.Contain(other.Fingerprint.ToString("x16", CultureInfo.InvariantCulture)),
            "the message names both fingerprints (a server's 409 for a sequence saved by other weights)");
        using var smaller = Create(new ModelConfig(20, 24, 3, 1, 5, 96), 1);
        using var shallow = smaller.CreateStream(batch: 2);
        Assert.That(Assert.Throws<StreamSnapshotException>(() => shallow.Restore(good))!.Message, Does.Contain("num_layers L = 2"));
        using var single = model.CreateStream(batch: 1);
        Assert.That(Assert.Throws<StreamSnapshotException>(() => single.Restore(good))!.Message, Does.Contain("batch 2"));
        target.Restore(good);
        Assert.That(target.Length, Is.EqualTo(2 * c));
    }

    [Test]
    public void RestoreStreamTakesTheSnapshotsBatchAndLengthAndRefusesHostileBytes()
    {
        var config = Shapes[0].Config;
        using var model = Create(config, 1, seed: 300);
        int c = config.ChunkSize, e = config.EmbedDim, batch = 3, chunks = 5, n = chunks * c;
        var input = RandomWeights.Input(batch * n * e, 14);
        using var original = model.CreateStream(batch);
        var output = new float[original.OutputLength(OutputMode.All)];
        for (int k = 0; k < 3; k++) original.Append(Chunk(input, batch, n, e, c, k), output, OutputMode.All);
        byte[] good = original.Snapshot();

        using var restored = model.RestoreStream(good);
        Assert.That(restored.Batch, Is.EqualTo(batch));
        Assert.That(restored.Length, Is.EqualTo(3 * c));
        for (int k = 3; k < chunks; k++)
        {
            var a = new float[original.OutputLength(OutputMode.All)];
            var b = new float[a.Length];
            original.Append(Chunk(input, batch, n, e, c, k), a, OutputMode.All);
            restored.Append(Chunk(input, batch, n, e, c, k), b, OutputMode.All);
            AssertBitwise(a, b, $"chunk {k} after RestoreStream");
        }

        Assert.That(() => model.RestoreStream(good.AsSpan(0, 20)), Throws.InstanceOf<StreamSnapshotException>(), "truncated header");
        Assert.That(() => model.RestoreStream(Patched(good, 44, 0)), Throws.InstanceOf<StreamSnapshotException>().With.Message.Contains("batch 0"));
        var huge = Patched(Patched(good, 46, 0xff), 47, 0x3f); // claims batch ~2^30: refused before a workspace of that batch
        Assert.That(() => model.RestoreStream(huge), Throws.InstanceOf<StreamSnapshotException>().With.Message.Contains("batch"));
        using var other = Create(config, 1, seed: 301);
        Assert.That(() => other.RestoreStream(good), Throws.InstanceOf<StreamSnapshotException>().With.Message.Contains("weights fingerprint"));
    }

    [Test]
    public void DisposedStreamAndModelThrow()
    {
        var model = Create(Small, 1);
        var stream = model.CreateStream();
        var chunk = new float[Small.ChunkSize * Small.EmbedDim];
        var output = new float[Small.HiddenSize];
        model.Dispose();
        Assert.That(() => stream.Append(chunk, output), Throws.InstanceOf<ObjectDisposedException>());
        Assert.That(() => model.CreateStream(), Throws.InstanceOf<ObjectDisposedException>());
        stream.Dispose();
        Assert.That(() => stream.Append(chunk, output), Throws.InstanceOf<ObjectDisposedException>());
    }

    private static byte[] Patched(byte[] bytes, int at, byte value)
    {
        var copy = (byte[])bytes.Clone();
        copy[at] = value;
        if (at == 48) copy[51] = 0x7f;
        return copy;
    }

    /// <summary>Chunk k of every sequence of <paramref name="input"/> [B, N, E], as [B, C, E].</summary>
    internal static float[] Chunk(float[] input, int batch, int n, int e, int c, int k)
    {
        var chunk = new float[batch * c * e];
        for (int b = 0; b < batch; b++)
            input.AsSpan((b * n + k * c) * e, c * e).CopyTo(chunk.AsSpan(b * c * e));
        return chunk;
    }

    /// <summary>Run on the first <paramref name="chunks"/> chunks; for All only the last chunk's rows, as [B, C, H].</summary>
    private static float[] Expected(DualChunkModel model, float[] input, int batch, int n, int chunks, int c, OutputMode mode)
    {
        int e = model.Config.EmbedDim, h = model.Config.HiddenSize, len = chunks * c;
        var prefix = new float[batch * len * e];
        for (int b = 0; b < batch; b++)
            input.AsSpan(b * n * e, len * e).CopyTo(prefix.AsSpan(b * len * e));
        var full = model.Run(prefix, batch, len, mode);
        if (mode != OutputMode.All) return full;
        var rows = new float[batch * c * h];
        for (int b = 0; b < batch; b++)
            full.AsSpan((b * len + len - c) * h, c * h).CopyTo(rows.AsSpan(b * c * h));
        return rows;
    }
}
