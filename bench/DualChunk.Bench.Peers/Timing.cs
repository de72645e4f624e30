using System.Diagnostics;

namespace DualChunk.Bench.Peers;

/// <summary>
/// Median, p90 and managed bytes per call from a sorted sample of single-call times; and over the timed loop, its wall
/// time and the CPU time of the whole process (every thread, spinning ones included).
/// </summary>
public sealed record TimingResult(double MedianMs, double P90Ms, double MinMs, int Samples, double AllocatedBytesPerCall,
    double LoopWallSeconds = double.NaN, double LoopProcessCpuSeconds = double.NaN)
{
    /// <summary>Cores the process kept busy while timed: process CPU time / wall time of the loop.</summary>
    public double CpuPerWall => LoopProcessCpuSeconds / LoopWallSeconds;
}

/// <summary>
/// The custom timing loop the harness uses in each engine's child process (not BenchmarkDotNet: the child checks
/// its output first and reports one JSON line the parent turns into the docs). Warm-up (at least one call after the timed first call), then many single calls, each
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
        TimeSpan cpuBefore = ProcessCpu();
        long allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        var total = Stopwatch.StartNew();
        while (samples.Count < minSamples || (total.Elapsed.TotalSeconds < budgetSeconds && samples.Count < maxSamples))
        {
            long t0 = Stopwatch.GetTimestamp();
            call();
            samples.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
        }
        long allocated = GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;
        double wall = total.Elapsed.TotalSeconds, cpu = (ProcessCpu() - cpuBefore).TotalSeconds;
        samples.Sort();
        return new TimingResult(Percentile(samples, 0.5), Percentile(samples, 0.9), samples[0], samples.Count, (double)allocated / samples.Count, wall, cpu);
    }

    private static TimeSpan ProcessCpu()
    {
        using var self = Process.GetCurrentProcess();
        return self.TotalProcessorTime;
    }

    /// <summary>Nearest-rank percentile of a sorted sample.</summary>
    public static double Percentile(IReadOnlyList<double> sorted, double p)
    {
        ArgumentNullException.ThrowIfNull(sorted);
        int rank = (int)Math.Ceiling(p * sorted.Count) - 1;
        return sorted[Math.Clamp(rank, 0, sorted.Count - 1)];
    }
}
