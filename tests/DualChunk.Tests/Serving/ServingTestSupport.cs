using DualChunk.Core;

namespace DualChunk.Tests.Serving;

/// <summary>Small random models and helpers for the serving tests.</summary>
internal static class ServingTestSupport
{
    public static readonly OutputMode[] Modes = [OutputMode.LastTimestep, OutputMode.All, OutputMode.MeanPool];

    /// <summary>A small model: E=20, H=64, NH=4, L=2, C=8, F=128 (fast enough for thousands of calls).</summary>
    public static ModelConfig Small { get; } = new(20, 64, 4, 2, 8, 128);

    public static DualChunkModel Create(ModelConfig config, int threads, int seed = 7, bool allowSpinning = true)
        => DualChunkModel.FromTensors(RandomWeights.Create(config, seed), config,
            new DualChunkModelOptions { MaxDegreeOfParallelism = threads, AllowSpinning = allowSpinning });

    public static float[] Run(DualChunkModel model, float[] input, int batch, int seqLen, OutputMode mode)
    {
        var output = new float[model.OutputLength(batch, seqLen, mode)];
        model.Run(input, batch, seqLen, output, mode);
        return output;
    }

    public static void AssertBitwise(float[] expected, float[] actual, string what)
    {
        Assert.That(actual, Has.Length.EqualTo(expected.Length), what);
        for (int i = 0; i < expected.Length; i++)
        {
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
                Assert.Fail($"{what}: element {i} is {actual[i]:R}, expected {expected[i]:R} (bitwise).");
        }
    }

    public static bool BitEqual(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
        => System.Runtime.InteropServices.MemoryMarshal.AsBytes(a).SequenceEqual(System.Runtime.InteropServices.MemoryMarshal.AsBytes(b));

    /// <summary>The bound on every wait in these tests: generous for a loaded 2-core machine, but never unbounded.</summary>
    public static readonly TimeSpan WaitBound = TimeSpan.FromMinutes(2);

    /// <summary>A NaN-filled buffer: a call that writes nothing (or part) cannot pass for a correct one.</summary>
    public static float[] Poisoned(int length)
    {
        var a = new float[length];
        Array.Fill(a, float.NaN);
        return a;
    }

    /// <summary>
    /// Runs <paramref name="body"/>(i) on <paramref name="count"/> raw threads and joins them within
    /// <see cref="WaitBound"/>. An exception on a thread is captured and fails the test here (on a raw thread it would
    /// kill the test host); a thread still running at the bound fails it too.
    /// </summary>
    public static void RunThreads(int count, Action<int> body, Action? whileRunning = null)
    {
        var errors = new System.Collections.Concurrent.ConcurrentQueue<Exception>();
        var threads = Enumerable.Range(0, count).Select(i => new Thread(() =>
        {
            try
            {
                body(i);
            }
#pragma warning disable CA1031 // captured and reported by the test
            catch (Exception ex)
#pragma warning restore CA1031
            {
                errors.Enqueue(ex);
            }
        }) { IsBackground = true, Name = $"test caller {i}" }).ToList();
        threads.ForEach(t => t.Start());
        try
        {
            whileRunning?.Invoke();
        }
        finally
        {
            var deadline = DateTime.UtcNow + WaitBound;
            foreach (var t in threads)
            {
                var left = deadline - DateTime.UtcNow;
                if (!t.Join(left > TimeSpan.Zero ? left : TimeSpan.Zero))
                    errors.Enqueue(new TimeoutException($"{t.Name} still running after {WaitBound}."));
            }
        }
        if (!errors.IsEmpty) throw new AggregateException("test threads failed", errors);
    }

    /// <summary>Waits for <paramref name="signal"/> within <see cref="WaitBound"/>, else fails naming <paramref name="what"/>.</summary>
    public static void Await(ManualResetEventSlim signal, string what)
    {
        if (!signal.Wait(WaitBound)) Assert.Fail($"timed out after {WaitBound} waiting for {what}");
    }

    /// <summary>
    /// The outputs at 2, 3 and 4 threads, with and without forced splits, equal 1 thread's bit for bit in every mode, for
    /// the call [<paramref name="batch"/>, <paramref name="n"/>] and a smaller one (B = 1, N = C) on the same pooled workspace.
    /// </summary>
    public static void AssertThreadCountsBitwise(Dictionary<string, CheckpointTensor> tensors, ModelConfig config, float[] input, int batch, int n)
    {
        using var serial = DualChunkModel.FromTensors(tensors, config);
        foreach (bool forced in new[] { false, true })
        {
            using var splits = forced ? ForceSplits() : null;
            for (int threads = 2; threads <= 4; threads++)
            {
                using var parallel = DualChunkModel.FromTensors(tensors, config, new DualChunkModelOptions { MaxDegreeOfParallelism = threads });
                foreach (var mode in Modes)
                {
                    // Also a smaller call on the same (pooled, larger) workspace.
                    foreach (var (b, len) in new[] { (batch, n), (1, config.ChunkSize) })
                    {
                        var x = input.AsSpan(0, b * len * config.EmbedDim).ToArray();
                        AssertBitwise(Run(serial, x, b, len, mode), Run(parallel, x, b, len, mode),
                            $"threads {threads}, forced splits {forced}, {mode}, B={b}, N={len}");
                    }
                }
            }
        }
    }

    /// <summary>Makes every operation split over the workers, however small (restored on dispose).</summary>
    public static IDisposable ForceSplits() => new Thresholds();

    private sealed class Thresholds : IDisposable
    {
        private readonly long _macs = Scheduler.MinParallelMacs, _floats = Scheduler.MinParallelFloats;

        public Thresholds()
        {
            Scheduler.MinParallelMacs = 0;
            Scheduler.MinParallelFloats = 0;
        }

        public void Dispose()
        {
            Scheduler.MinParallelMacs = _macs;
            Scheduler.MinParallelFloats = _floats;
        }
    }
}
