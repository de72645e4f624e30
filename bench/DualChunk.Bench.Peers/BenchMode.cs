namespace DualChunk.Bench.Peers;

/// <summary>
/// How long to measure: --short for development (under 10 minutes here), --full for the published numbers. Rounds:
/// how many times each engine's child runs per config (A B A B). <c>--rounds K</c> and <c>--budget SECONDS</c> override
/// the rounds and each child's timing budget; <c>--sweep-cap SECONDS</c> the sweep's time cap per point,
/// <c>--max-n N</c> its largest N.
/// </summary>
public sealed record BenchMode(string Name, double WarmupSeconds, double BudgetSeconds, int MinSamples, int MaxSamples,
    int MaxSweepN, double SweepTimeCapSeconds, double SweepRepeatSeconds, long MaxSweepBytes, int Rounds)
{
    public static BenchMode Quick { get; } = new("short", 0.3, 1.5, 3, 2000, 65536, 15, 0.3, 6L << 30, 2);

    public static BenchMode Full { get; } = new("full", 2, 10, 30, 20000, 65536, 600, 2, 20L << 30, 2);

    /// <summary>The mode the arguments name (--full, else short), with the overrides they give.</summary>
    public static BenchMode FromArgs(IReadOnlyList<string> args)
    {
        ArgumentNullException.ThrowIfNull(args);
        var mode = args.Contains("--full") || Value(args, "--mode") == "full" ? Full : Quick;
        if (Value(args, "--rounds") is { } r) mode = mode with { Rounds = Positive(r, "--rounds") };
        if (Value(args, "--budget") is { } b) mode = mode with { BudgetSeconds = Positive(b, "--budget"), WarmupSeconds = Math.Min(mode.WarmupSeconds, Positive(b, "--budget")) };
        if (Value(args, "--sweep-cap") is { } s) mode = mode with { SweepTimeCapSeconds = Positive(s, "--sweep-cap") };
        if (Value(args, "--max-n") is { } n) mode = mode with { MaxSweepN = Positive(n, "--max-n") };
        return mode;
    }

    public static string? Value(IReadOnlyList<string> args, string name)
    {
        ArgumentNullException.ThrowIfNull(args);
        for (int i = 0; i + 1 < args.Count; i++)
            if (args[i] == name) return args[i + 1];
        return null;
    }

    private static int Positive(string text, string name)
        => int.TryParse(text, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out int v) && v > 0
            ? v : throw new ArgumentException($"{name} needs a positive whole number, got '{text}'.");
}
