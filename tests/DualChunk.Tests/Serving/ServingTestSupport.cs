using DualChunk.Core;

namespace DualChunk.Tests.Serving;

/// <summary>Small random models and helpers for the serving tests.</summary>
internal static class ServingTestSupport
{
    public static readonly OutputMode[] Modes = [OutputMode.LastTimestep, OutputMode.All, OutputMode.MeanPool];

    /// <summary>A small model: E=20, H=64, NH=4, L=2, C=8, F=128 (fast enough for thousands of calls).</summary>
    public static ModelConfig Small { get; } = new(20, 64, 4, 2, 8, 128);

    public static DualChunkModel Create(ModelConfig config, int threads, int seed = 7)
        => DualChunkModel.FromTensors(RandomWeights.Create(config, seed), config, new DualChunkModelOptions { MaxDegreeOfParallelism = threads });

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
