using System.Diagnostics;

namespace DualChunk.Bench.Peers;

/// <summary>Median, p90 and managed bytes per call from a sorted sample of single-call times.</summary>
public sealed record TimingResult(double MedianMs, double P90Ms, double MinMs, int Samples, double AllocatedBytesPerCall);

/// <summary>
/// The custom timing loop the harness uses (not BenchmarkDotNet: one process must run every peer,
/// check its output first and write the docs, and BDN's per-benchmark child processes would
/// re-load the native peers and the weights each time). Warm-up (at least one call after the timed first call), then many single calls, each
/// timed with <see cref="Stopwatch"/>; median and p90 from the sorted sample. Managed bytes per
/// call come from <see cref="GC.GetTotalAllocatedBytes(bool)"/> over the whole sample (all
/// threads, so a multi-threaded engine is counted too); native allocations are not managed bytes.
/// </summary>
public static class Timing
{
    public static TimingResult Measure(Action call, double warmupSeconds, double budgetSeconds, int minSamples, int maxSamples)
    {
        ArgumentNullException.ThrowIfNull(call);
        var warm = Stopwatch.StartNew();
        int warmCalls = 0;
        while (warmCalls < 1 || (warm.Elapsed.TotalSeconds < warmupSeconds && warmCalls < maxSamples))
        {
            call();
            warmCalls++;
        }
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();

        var samples = new List<double>(Math.Min(maxSamples, 100_000));
        long allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        var total = Stopwatch.StartNew();
        while (samples.Count < minSamples || (total.Elapsed.TotalSeconds < budgetSeconds && samples.Count < maxSamples))
        {
            long t0 = Stopwatch.GetTimestamp();
            call();
            samples.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
        }
        long allocated = GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;
        samples.Sort();
        return new TimingResult(Percentile(samples, 0.5), Percentile(samples, 0.9), samples[0], samples.Count, (double)allocated / samples.Count);
    }

    /// <summary>Nearest-rank percentile of a sorted sample.</summary>
    public static double Percentile(IReadOnlyList<double> sorted, double p)
    {
        ArgumentNullException.ThrowIfNull(sorted);
        int rank = (int)Math.Ceiling(p * sorted.Count) - 1;
        return sorted[Math.Clamp(rank, 0, sorted.Count - 1)];
    }
}
