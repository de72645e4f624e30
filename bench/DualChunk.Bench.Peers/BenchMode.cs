namespace DualChunk.Bench.Peers;

/// <summary>How long to measure: --short for development (under 10 minutes here), --full for the published numbers.</summary>
public sealed record BenchMode(string Name, double WarmupSeconds, double BudgetSeconds, int MinSamples, int MaxSamples,
    int MaxSweepN, double SweepTimeCapSeconds, double SweepRepeatSeconds, long MaxSweepBytes)
{
    public static BenchMode Quick { get; } = new("short", 0.3, 1.5, 3, 2000, 65536, 15, 0.3, 6L << 30);

    public static BenchMode Full { get; } = new("full", 2, 10, 30, 20000, 65536, 600, 2, 20L << 30);
}
