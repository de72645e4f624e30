using System.Diagnostics;
using System.Globalization;

namespace DualChunk.Bench.Peers;

/// <summary>One point of the sweep. Null measurements mean "skipped" (see <see cref="Status"/>).</summary>
public sealed record SweepPoint(string Method, int N, int C, long PlannedBytes, long? PeakBytes, long? AllocatedBytes,
    double? Seconds, string Status)
{
    public bool Measured => Seconds.HasValue;
}

/// <summary>
/// N ∈ {512, …, 65536} × C ∈ {32, 64, 128, 256} for each attention method. Every measured point
/// runs in a fresh child process (this program with <c>--point method N C</c>): it allocates the
/// inputs, warms the method up on a tiny problem (JIT), resets the kernel's peak-RSS counter
/// (<c>echo 5 &gt; /proc/self/clear_refs</c>), reads VmRSS, runs one forward, and reports
/// VmHWM − VmRSS-before (the peak resident bytes the forward added) together with the managed bytes
/// it allocated and its time. Dense and tiled do not depend on C: they run once per N.
/// </summary>
public static class MemorySweep
{
    public static readonly int[] Ns = [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536];
    public static readonly int[] Cs = [32, 64, 128, 256];

    public static List<SweepPoint> Run(BenchMode mode, TextWriter log)
    {
        ArgumentNullException.ThrowIfNull(mode);
        ArgumentNullException.ThrowIfNull(log);
        var points = new List<SweepPoint>();
        foreach (var method in AttentionMethod.All)
        {
            foreach (int c in method.UsesChunks ? Cs : [64])
            {
                SweepPoint? last = null;
                foreach (int n in Ns.Where(n => n <= mode.MaxSweepN && n % c == 0))
                {
                    long planned = method.PlannedBytes(n, c);
                    long inputs = 4L * n * 4 * AttentionMethod.Hidden;        // qkv [N, 3H] + output [N, H]
                    long budget = Math.Min(mode.MaxSweepBytes, (long)(0.75 * AvailableBytes()));
                    string? skip = null;
                    if (planned + inputs > budget)
                        skip = string.Create(CultureInfo.InvariantCulture, $"skipped, needs {(planned + inputs) / (double)(1L << 30):F1} GiB");
                    else if (last?.Seconds is double prev)
                    {
                        double est = prev * method.Work(n, c) / method.Work(last.N, c);
                        if (est > mode.SweepTimeCapSeconds)
                            skip = string.Create(CultureInfo.InvariantCulture, $"skipped, est. {est:F0} s");
                    }
                    SweepPoint point = skip is null ? RunChild(method, n, c, planned) : new SweepPoint(method.Key, n, c, planned, null, null, null, skip);
                    if (point.Measured) last = point;
                    points.Add(point);
                    log.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"[memory] {method.Key,-12} N={n,6} C={(method.UsesChunks ? c.ToString(CultureInfo.InvariantCulture) : "-"),4} planned {Format.Bytes(planned),10}  " +
                        $"peak {(point.PeakBytes is long pk ? Format.Bytes(pk) : "-"),10}  time {(point.Seconds is double s ? Format.Seconds(s) : "-"),9}  {point.Status}"));
                }
            }
        }
        return points;
    }

    private static SweepPoint RunChild(AttentionMethod method, int n, int c, long planned)
    {
        // Fully optimised code from the first call: the child times one forward, with no tier-0 warm-up to hide.
        var child = ChildProcess.Run(["--point", method.Key, n.ToString(CultureInfo.InvariantCulture), c.ToString(CultureInfo.InvariantCulture)],
            new Dictionary<string, string> { ["DOTNET_TieredCompilation"] = "0" }, TimeSpan.FromHours(1));
        string? line = child.Line("POINT ");
        if (child.ExitCode != 0 || line is null)
            return new SweepPoint(method.Key, n, c, planned, null, null, null, $"failed ({child.Failure})");
        var f = line.Split(' ');
        return new SweepPoint(method.Key, n, c, planned, long.Parse(f[0], CultureInfo.InvariantCulture), long.Parse(f[1], CultureInfo.InvariantCulture),
            double.Parse(f[2], CultureInfo.InvariantCulture), "ok");
    }

    /// <summary>The child: one method at one point; prints "POINT peakBytes allocatedBytes seconds".</summary>
    public static int RunPoint(string key, int n, int c, double repeatSeconds)
    {
        var method = AttentionMethod.ByKey(key);
        var qkv = Inputs(n, seed: 3);
        var output = new float[n * AttentionMethod.Hidden];
        Array.Fill(output, 1f);   // touch the output's pages now: they are the caller's, not the method's
        // Warm up (JIT, tiered compilation) on a tiny problem, then forget that peak.
        int small = Math.Max(2 * c, 128);
        var qkvSmall = Inputs(small, seed: 4);
        var outSmall = new float[small * AttentionMethod.Hidden];
        for (int i = 0; i < 3; i++) method.Run(qkvSmall, small, c, outSmall);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        bool reset = ResetPeak();
        long rssBefore = Status("VmRSS:");
        long allocBefore = GC.GetTotalAllocatedBytes(precise: true);
        long t0 = Stopwatch.GetTimestamp();
        method.Run(qkv, n, c, output);
        double seconds = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        long allocated = GC.GetTotalAllocatedBytes(precise: true) - allocBefore;
        long peak = Status("VmHWM:") - (reset ? rssBefore : Status("VmHWM:"));
        // Short forwards are repeated for a steadier time: the median of up to 7 runs.
        if (seconds < repeatSeconds)
        {
            var times = new List<double> { seconds };
            var total = Stopwatch.StartNew();
            while (times.Count < 7 && total.Elapsed.TotalSeconds < repeatSeconds)
            {
                long t = Stopwatch.GetTimestamp();
                method.Run(qkv, n, c, output);
                times.Add(Stopwatch.GetElapsedTime(t).TotalSeconds);
            }
            times.Sort();
            seconds = times[times.Count / 2];
        }
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"POINT {Math.Max(0, peak)} {allocated} {seconds:R}"));
        return 0;
    }

    /// <summary>Standard-normal qkv [N, 3H].</summary>
    public static float[] Inputs(int n, int seed) => DualChunk.Core.RandomWeights.Input(n * 3 * AttentionMethod.Hidden, seed);

    private static bool ResetPeak()
    {
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
            return true;
        }
        catch (IOException)
        {
            return false;
        }
        catch (UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>A "kB" field of /proc/self/status, in bytes.</summary>
    private static long Status(string field)
    {
        foreach (string line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith(field, StringComparison.Ordinal))
                return long.Parse(line[field.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
        return 0;
    }

    private static long AvailableBytes()
    {
        foreach (string line in File.ReadLines("/proc/meminfo"))
            if (line.StartsWith("MemAvailable:", StringComparison.Ordinal))
                return long.Parse(line["MemAvailable:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
        return 8L << 30;
    }
}

/// <summary>Number formatting shared by the log and the tables.</summary>
public static class Format
{
    public static string Bytes(double b) => b switch
    {
        >= 1L << 30 => string.Create(CultureInfo.InvariantCulture, $"{b / (1L << 30):F2} GiB"),
        >= 1L << 20 => string.Create(CultureInfo.InvariantCulture, $"{b / (1L << 20):F1} MiB"),
        >= 1L << 10 => string.Create(CultureInfo.InvariantCulture, $"{b / (1L << 10):F1} KiB"),
        _ => string.Create(CultureInfo.InvariantCulture, $"{b:F0} B"),
    };

    public static string Seconds(double s) => s switch
    {
        >= 1 => string.Create(CultureInfo.InvariantCulture, $"{s:F2} s"),
        >= 1e-3 => string.Create(CultureInfo.InvariantCulture, $"{s * 1e3:F2} ms"),
        _ => string.Create(CultureInfo.InvariantCulture, $"{s * 1e6:F0} µs"),
    };

    public static string Ms(double ms) => ms >= 100 ? ms.ToString("F0", CultureInfo.InvariantCulture)
        : ms >= 10 ? ms.ToString("F1", CultureInfo.InvariantCulture) : ms.ToString("F2", CultureInfo.InvariantCulture);
}
