using System.Diagnostics.Metrics;
using System.Numerics.Tensors;
using NTensor = System.Numerics.Tensors.Tensor;
using DualChunk.Core;
using DualChunk.Tests.Loading;
using static DualChunk.Tests.Serving.ServingTestSupport;

namespace DualChunk.Tests.Serving;

/// <summary>Cancellation, Dispose racing with calls, memory-mapped loading, metrics and the tensor overloads.</summary>
[TestFixture]
public sealed class LifecycleTests
{
    [TestCase(1)]
    [TestCase(2)]
    public void CancelledBeforeCallThrowsAndModelStaysUsable(int threads)
    {
        using var model = Create(Small, threads);
        var input = RandomWeights.Input(2 * 16 * Small.EmbedDim, 1);
        var expected = Run(model, input, 2, 16, OutputMode.All);
        long pooled = model.PooledWorkspaceBytes;
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        var output = new float[expected.Length];
        Assert.Throws<OperationCanceledException>(() => model.Run(input, 2, 16, output, OutputMode.All, cts.Token));
        Assert.That(model.PooledWorkspaceBytes, Is.EqualTo(pooled), "the workspace went back to the pool");
        AssertBitwise(expected, Run(model, input, 2, 16, OutputMode.All), "after cancellation");
    }

    [TestCase(1)]
    [TestCase(2)]
    public void CancelledDuringCallThrowsAndModelStaysUsable(int threads)
    {
        // The token is cancelled from inside the call (the test hook runs after the entry checks, before the forward
        // pass): no timing, the call is always mid-flight when it sees the cancellation.
        var config = new ModelConfig(32, 64, 4, 3, 16, 256);
        using var model = Create(config, threads);
        using var splits = threads > 1 ? ForceSplits() : null;
        int batch = 2, n = 64;
        var input = RandomWeights.Input(batch * n * config.EmbedDim, 2);
        var expected = Run(model, input, batch, n, OutputMode.LastTimestep);
        long pooled = model.PooledWorkspaceBytes;
        using var cts = new CancellationTokenSource();
        int hooked = 0;
        DualChunkModel.TestHookCallStarting = m =>
        {
            if (m != model) return;
            Interlocked.Increment(ref hooked);
            cts.Cancel();
        };
        try
        {
            var ex = Assert.Throws<OperationCanceledException>(() => model.Run(input, batch, n, new float[expected.Length], OutputMode.LastTimestep, cts.Token));
            Assert.That(ex!.CancellationToken, Is.EqualTo(cts.Token));
        }
        finally
        {
            DualChunkModel.TestHookCallStarting = null;
        }
        Assert.That(hooked, Is.EqualTo(1), "the call got past its entry checks before it was cancelled");
        Assert.That(model.PooledWorkspaceBytes, Is.EqualTo(pooled), "the workspace went back to the pool");
        long helperPhases = model.HelperPhasesJoined;
        var after = Poisoned(expected.Length);
        model.Run(input, batch, n, after, OutputMode.LastTimestep);
        AssertBitwise(expected, after, "after cancellation");
        if (threads > 1) Assert.That(model.HelperPhasesJoined, Is.GreaterThan(helperPhases), "the worker group was released: the next call used it");
    }

    [TestCase(1)]
    [TestCase(2)]
    public void DisposeRacingWithCallsNeverCrashes(int threads)
    {
        // Eight callers loop on a memory-mapped model. One call is held inside Run (test hook, before the forward pass)
        // while the model is disposed: the other callers must end with ObjectDisposedException, and the held call,
        // released after Dispose has returned, must still compute the right bits on the still-mapped weights (and, with
        // 2 threads, on the still-running worker threads: splits forced, helper items counted).
        var config = Small;
        using var dir = new TempDir();
        string path = dir.File("m.dcw");
        DcwFile.Write(path, config, RandomWeights.Create(config, 5));
        var input = RandomWeights.Input(2 * 32 * config.EmbedDim, 3);
        using var splits = threads > 1 ? ForceSplits() : null;
        const int callers = 8;
        for (int round = 0; round < 3; round++)
        {
            var model = DualChunkModel.Load(path, new DualChunkModelOptions { MaxDegreeOfParallelism = threads, MemoryMap = true });
            Assert.That(model.IsMemoryMapped, Is.True);
            var expected = Run(model, input, 2, 32, OutputMode.All);
            int completed = 0, disposedSeen = 0, hold = 0, heldThread = -1;
            float[]? heldOutput = null;
            long helperPhasesBeforeRelease = 0;
            var failures = new System.Collections.Concurrent.ConcurrentQueue<string>();
            using var warm = new ManualResetEventSlim();
            using var inside = new ManualResetEventSlim();
            using var release = new ManualResetEventSlim();
            using var othersOut = new CountdownEvent(callers - 1);
            DualChunkModel.TestHookCallStarting = m =>
            {
                if (m != model || Interlocked.CompareExchange(ref hold, 2, 1) != 1) return;
                Volatile.Write(ref heldThread, Environment.CurrentManagedThreadId);
                inside.Set();
                if (!release.Wait(WaitBound)) failures.Enqueue("the held call was never released");
            };
            try
            {
                RunThreads(callers, t =>
                {
                    var output = Poisoned(expected.Length);
                    while (true)
                    {
                        try
                        {
                            model.Run(input, 2, 32, output, OutputMode.All);
                            if (!BitEqual(output, expected)) failures.Enqueue($"thread {t}: wrong result");
                            if (Environment.CurrentManagedThreadId == Volatile.Read(ref heldThread) && heldOutput is null)
                                heldOutput = (float[])output.Clone(); // the held call, finished after Dispose
                            output.AsSpan().Fill(float.NaN);
                            if (Interlocked.Increment(ref completed) == 4 * callers) warm.Set();
                        }
                        catch (ObjectDisposedException)
                        {
                            Interlocked.Increment(ref disposedSeen);
                            if (Environment.CurrentManagedThreadId != Volatile.Read(ref heldThread)) othersOut.Signal();
                            return;
                        }
                    }
                }, whileRunning: () =>
                {
                    try
                    {
                        Await(warm, "the callers' first calls");
                        Volatile.Write(ref hold, 1);                  // the next call to start is held
                        Await(inside, "a call held inside Run");
                        model.Dispose();
                        if (!othersOut.Wait(WaitBound)) Assert.Fail("the other callers did not all see ObjectDisposedException");
                        helperPhasesBeforeRelease = model.HelperPhasesJoined;
                    }
                    finally
                    {
                        release.Set();
                    }
                });
            }
            finally
            {
                DualChunkModel.TestHookCallStarting = null;
            }
            Assert.Multiple(() =>
            {
                Assert.That(failures, Is.Empty);
                Assert.That(disposedSeen, Is.EqualTo(callers), "every caller ends with ObjectDisposedException");
                Assert.That(completed, Is.GreaterThanOrEqualTo(4 * callers));
                Assert.That(heldOutput, Is.Not.Null, "the held call completed after Dispose");
                if (threads > 1)
                    Assert.That(model.HelperPhasesJoined, Is.GreaterThan(helperPhasesBeforeRelease), "the held call ran on the worker threads after Dispose");
            });
            Assert.Throws<ObjectDisposedException>(() => model.Run(input, 2, 32, new float[expected.Length], OutputMode.All));
            model.Dispose(); // idempotent
        }
    }

    [Test]
    public void MemoryMappedDcwMatchesSafetensorsBitwise()
    {
        var config = new ModelConfig(30, 64, 4, 2, 8, 160);
        var tensors = RandomWeights.Create(config, 9);
        using var dir = new TempDir();
        string st = dir.File("m.safetensors"), dcw = dir.File("m.dcw");
        File.WriteAllBytes(st, LoadingTestData.SafetensorsOf(tensors, config));
        DcwFile.Write(dcw, config, tensors);
        using var fromSt = DualChunkModel.Load(st, chunkSize: 8);
        using var mapped1 = DualChunkModel.Load(dcw, new DualChunkModelOptions { MemoryMap = true });
        using var mapped2 = DualChunkModel.Load(dcw, new DualChunkModelOptions { MaxDegreeOfParallelism = 2, MemoryMap = true }); // same file, mapped again
        using var copied = DualChunkModel.Load(dcw);
        Assert.Multiple(() =>
        {
            Assert.That(fromSt.IsMemoryMapped, Is.False);
            Assert.That(mapped1.IsMemoryMapped, Is.True);
            Assert.That(mapped2.IsMemoryMapped, Is.True);
            Assert.That(copied.IsMemoryMapped, Is.False);
        });
        var input = RandomWeights.Input(3 * 24 * config.EmbedDim, 4);
        foreach (var mode in Modes)
        {
            var expected = Run(fromSt, input, 3, 24, mode);
            AssertBitwise(expected, Run(mapped1, input, 3, 24, mode), $"mapped {mode}");
            AssertBitwise(expected, Run(mapped2, input, 3, 24, mode), $"mapped again, 2 threads, {mode}");
            AssertBitwise(expected, Run(copied, input, 3, 24, mode), $"read into arrays {mode}");
        }
    }

    [Test]
    public void MetricsReportCallsLatencyAndWorkspaceBytes()
    {
        long calls = 0, durations = 0, workspaceBytes = 0;
        string? lastMode = null;
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Name == DualChunkMetrics.MeterName) l.EnableMeasurementEvents(instrument);
            },
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            if (instrument.Name == DualChunkMetrics.CallsInstrument)
            {
                Interlocked.Add(ref calls, value);
                foreach (var tag in tags)
                    if (tag.Key == DualChunkMetrics.OutputModeTag) lastMode = (string?)tag.Value;
            }
            else if (instrument.Name == DualChunkMetrics.WorkspaceBytesInstrument)
            {
                Interlocked.Exchange(ref workspaceBytes, value);
            }
        });
        listener.SetMeasurementEventCallback<double>((instrument, value, _, _) =>
        {
            if (instrument.Name == DualChunkMetrics.DurationInstrument && value > 0) Interlocked.Increment(ref durations);
        });
        listener.Start();

        using var model = Create(Small, 1);
        var input = RandomWeights.Input(16 * Small.EmbedDim, 1);
        Run(model, input, 1, 16, OutputMode.LastTimestep);
        Run(model, input, 1, 16, OutputMode.MeanPool);
        listener.RecordObservableInstruments();
        Assert.Multiple(() =>
        {
            Assert.That(Interlocked.Read(ref calls), Is.GreaterThanOrEqualTo(2));
            Assert.That(Interlocked.Read(ref durations), Is.GreaterThanOrEqualTo(2));
            Assert.That(lastMode, Is.EqualTo("mean"));
            Assert.That(Interlocked.Read(ref workspaceBytes), Is.GreaterThanOrEqualTo(model.PooledWorkspaceBytes).And.GreaterThan(0));
        });
    }

    [Test]
    public void TensorOverloadsMatchTheSpanOverload()
    {
        var config = Small;
        using var model = Create(config, 1);
        int batch = 2, n = 16;
        var input = RandomWeights.Input(batch * n * config.EmbedDim, 6);
        foreach (var mode in Modes)
        {
            var expected = Run(model, input, batch, n, mode);
            var tensor = NTensor.Create(input, [batch, n, config.EmbedDim]);
            var result = model.Run(tensor, mode);
            nint[] shape = mode == OutputMode.All ? [batch, n, config.HiddenSize] : [batch, config.HiddenSize];
            Assert.That(result.Lengths.ToArray(), Is.EqualTo(shape));
            var flat = Poisoned(expected.Length);
            result.FlattenTo(flat);
            AssertBitwise(expected, flat, $"Tensor<float> {mode}");

            var output = Poisoned(expected.Length);
            model.Run(new ReadOnlyTensorSpan<float>(input, [batch, n, config.EmbedDim]), new TensorSpan<float>(output, shape), mode);
            AssertBitwise(expected, output, $"TensorSpan {mode}");
        }

        // One sequence without a batch dimension: [N, E] -> [H].
        var first = input.AsSpan(0, n * config.EmbedDim).ToArray();
        var single = model.Run(NTensor.Create(first, [n, config.EmbedDim]));
        Assert.That(single.Lengths.ToArray(), Is.EqualTo(new nint[] { config.HiddenSize }));
        var singleFlat = Poisoned(config.HiddenSize);
        single.FlattenTo(singleFlat);
        AssertBitwise(Run(model, first, 1, n, OutputMode.LastTimestep), singleFlat, "Tensor<float> [N, E]");

        var wrongE = NTensor.Create(new float[n * (config.EmbedDim + 1)], [n, config.EmbedDim + 1]);
        Assert.Throws<ArgumentException>(() => model.Run(wrongE));
        var wrongOut = new float[batch * config.HiddenSize + 1];
        Assert.Throws<ArgumentException>(() => model.Run(new ReadOnlyTensorSpan<float>(input, [batch, n, config.EmbedDim]),
            new TensorSpan<float>(wrongOut, [batch * config.HiddenSize + 1]), OutputMode.LastTimestep));
    }
}
