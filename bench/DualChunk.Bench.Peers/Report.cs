using System.Diagnostics;
using System.Globalization;
using System.Text;
using ScottPlot;

namespace DualChunk.Bench.Peers;

/// <summary>Writes the generated sections of docs/benchmarks.md and the PNG plots.</summary>
public static class Report
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static string PeersMarkdown(IReadOnlyList<PeerRow> rows, string header)
    {
        ArgumentNullException.ThrowIfNull(rows);
        var sb = new StringBuilder(header);
        sb.AppendLine("| config | engine | threads | status | first call (ms) | median (ms) | median per round (ms) | p90 (ms) | managed B/call | " +
            "process CPU / wall | OS threads | median vs DualChunk.NET (same threads) | max\\|Δ\\| / max\\|ours\\| |");
        sb.AppendLine("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var group in rows.GroupBy(r => r.Config))
        {
            foreach (var r in group)
            {
                // Each row against DualChunk.NET on the same thread count.
                var ours = group.FirstOrDefault(o => o.Peer == "DualChunk.NET" && o.Threads == r.Threads && o.Timed);
                string ratio = r.Timing is { } t && ours?.Timing is { } o ? (t.MedianMs / o.MedianMs).ToString("F2", Inv) + "×" : "—";
                string perRound = string.Join(" / ", r.Rounds.Where(x => x.Timing is not null).Select(x => Format.Ms(x.Timing!.MedianMs)));
                sb.AppendLine(Inv, $"| {r.Config} | {r.Peer} | {r.Threads} | {r.Status} | {(double.IsNaN(r.FirstCallMs) ? "—" : Format.Ms(r.FirstCallMs))} | " +
                    $"{(r.Timing is { } a ? Format.Ms(a.MedianMs) : "—")} | {(perRound.Length > 0 ? perRound : "—")} | {(r.Timing is { } b ? Format.Ms(b.P90Ms) : "—")} | " +
                    $"{(r.Timing is { } c ? c.AllocatedBytesPerCall.ToString("N0", Inv) : "—")} | {(r.Timing is { } d ? d.CpuPerWall.ToString("F2", Inv) : "—")} | " +
                    $"{(r.Rounds.Max(x => x.OsThreads) is > 0 and var n ? n.ToString(Inv) : "—")} | {ratio} | " +
                    $"{(double.IsNaN(r.MaxAbsDiff) ? "—" : (r.MaxAbsDiff / r.MaxAbsOurs).ToString("G2", Inv))} |");
            }
        }
        return sb.ToString();
    }

    /// <summary>Least-squares slope of log y against log N over the given points (NaN with fewer than 2).</summary>
    public static double Slope(IEnumerable<(double N, double Y)> points)
    {
        var p = points.Where(q => q.Y > 0).Select(q => (X: Math.Log(q.N), Y: Math.Log(q.Y))).ToList();
        if (p.Count < 2) return double.NaN;
        double mx = p.Average(q => q.X), my = p.Average(q => q.Y);
        return p.Sum(q => (q.X - mx) * (q.Y - my)) / p.Sum(q => (q.X - mx) * (q.X - mx));
    }

    private static string SlopeText(double s) => double.IsNaN(s) ? "n/a" : s.ToString("F2", Inv);

    public static string MemoryMarkdown(IReadOnlyList<SweepPoint> points, string header)
    {
        ArgumentNullException.ThrowIfNull(points);
        var sb = new StringBuilder(header);
        var methods = AttentionMethod.All;
        sb.AppendLine("![attention memory against N, C = 64](bench-memory.png)");
        sb.AppendLine();
        sb.AppendLine("![attention time against N, C = 64](bench-time.png)");
        sb.AppendLine();
        sb.AppendLine("![DCA memory against N for every chunk size](bench-memory-by-c.png)");
        sb.AppendLine();
        sb.AppendLine("**Fitted log-log slopes at C = 64** (bytes or seconds ∝ N^slope over the measured points; planned bytes over the whole sweep):");
        sb.AppendLine();
        sb.AppendLine("| method | planned bytes | measured peak | time |");
        sb.AppendLine("|---|---:|---:|---:|");
        foreach (var m in methods)
        {
            var pts = Points(points, m, 64);
            sb.AppendLine(Inv, $"| {m.Label} | {SlopeText(Slope(pts.Select(p => ((double)p.N, (double)p.PlannedBytes))))} | " +
                $"{SlopeText(Slope(pts.Where(p => p.PeakBytes.HasValue).Select(p => ((double)p.N, (double)p.PeakBytes!.Value))))} | " +
                $"{SlopeText(Slope(pts.Where(p => p.Seconds.HasValue).Select(p => ((double)p.N, p.Seconds!.Value))))} |");
        }
        sb.AppendLine();
        sb.AppendLine(CrossoverText());
        sb.AppendLine();
        sb.AppendLine("**C = 64** (planned bytes / measured peak / time of one attention forward):");
        sb.AppendLine();
        AppendTable(sb, points, 64);
        sb.AppendLine("<details><summary>Every chunk size (dense and tiled do not depend on C and are repeated from the C = 64 run)</summary>");
        sb.AppendLine();
        foreach (int c in MemorySweep.Cs.Where(c => c != 64))
        {
            sb.AppendLine(Inv, $"**C = {c}**");
            sb.AppendLine();
            AppendTable(sb, points, c);
        }
        sb.AppendLine("</details>");
        sb.AppendLine();
        return sb.ToString();
    }

    public static string GflopsMarkdown(IReadOnlyList<GflopsRow> rows)
    {
        ArgumentNullException.ThrowIfNull(rows);
        var sb = new StringBuilder();
        sb.AppendLine("**Attention GFLOP/s, one thread** (B = 1, NH = 8, D = 32; FLOPs = causal QKᵀ and P·V, 2·D per unmasked pair: " +
            "N(N+1)/2 pairs per head for the dense methods, whatever they compute; N/C·C(C+1)/2 intra + NC(NC+1)/2 inter pairs for DCA; " +
            "median of repeated forwards, wall and this thread's CPU time from /proc/thread-self/schedstat):");
        sb.AppendLine();
        sb.AppendLine("| N | method | GFLOP counted | median (wall) | GFLOP/s (wall) | median (CPU) | GFLOP/s (CPU) | calls |");
        sb.AppendLine("|---:|---|---:|---:|---:|---:|---:|---:|");
        foreach (var r in rows)
            sb.AppendLine(Inv, $"| {r.N:N0} | {r.Label} | {r.Flops / 1e9:F3} | {Format.Seconds(r.MedianSeconds)} | {r.GflopsWall:F1} | " +
                $"{Format.Seconds(r.CpuSeconds)} | {r.GflopsCpu:F1} | {r.Calls} |");
        sb.AppendLine();
        return sb.ToString();
    }

    public static string CrossoverText()
        => "Where DCA stops being O(N·C): Edifice's materialised form holds NH·N·C intra scores and NH·(N/C)² inter scores; " +
           "the two are equal at N = C³, so the N²/C² term takes over at N ≈ C³: 32,768 for C = 32 (inside the sweep: visible as the " +
           "upturn of the C = 32 curve in the per-C plot), 262,144 for C = 64, 2,097,152 for C = 128 and 16,777,216 for C = 256 " +
           "(beyond it: those curves stay O(N·C) throughout). DualChunk.NET's fused form never materialises either score tensor " +
           "(one row of max(C, N/C) floats at a time): its attention memory is the chunk summaries, O(N·H/C), at every N.";

    private static List<SweepPoint> Points(IReadOnlyList<SweepPoint> points, AttentionMethod m, int c)
        => points.Where(p => p.Method == m.Key && (m.UsesChunks ? p.C == c : true)).OrderBy(p => p.N).ToList();

    private static void AppendTable(StringBuilder sb, IReadOnlyList<SweepPoint> points, int c)
    {
        sb.Append("| N |");
        foreach (var m in AttentionMethod.All) sb.Append(Inv, $" {m.Label} |");
        sb.AppendLine();
        sb.Append("|---:|");
        foreach (var _ in AttentionMethod.All) sb.Append("---|");
        sb.AppendLine();
        foreach (int n in MemorySweep.Ns)
        {
            sb.Append(Inv, $"| {n:N0} |");
            foreach (var m in AttentionMethod.All)
            {
                var p = Points(points, m, c).FirstOrDefault(q => q.N == n);
                sb.Append(p is null ? " — |" : p.Measured
                    ? $" {Format.Bytes(p.PlannedBytes)} / {Format.Bytes(p.PeakBytes ?? 0)} / {Format.Seconds(p.Seconds!.Value)} |"
                    : $" {Format.Bytes(p.PlannedBytes)} / {p.Status} |");
            }
            sb.AppendLine();
        }
        sb.AppendLine();
    }

    private static readonly Color[] Colors = [Colors4.Red, Colors4.Orange, Colors4.Blue, Colors4.Green];

    private static class Colors4
    {
        public static readonly Color Red = Color.FromHex("#d62728"), Orange = Color.FromHex("#ff7f0e"), Blue = Color.FromHex("#1f77b4"), Green = Color.FromHex("#2ca02c");
    }

    /// <summary>docs/bench-memory.png, docs/bench-time.png, docs/bench-memory-by-c.png.</summary>
    public static void Plots(IReadOnlyList<SweepPoint> points, string docs)
    {
        ArgumentNullException.ThrowIfNull(points);
        var methods = AttentionMethod.All;
        // Memory vs N at C = 64: planned bytes (lines, the whole sweep) and measured peak (markers).
        {
            var plt = NewLogLog("Attention memory of one layer vs N (C = 64, NH = 8, D = 32)", "bytes");
            for (int i = 0; i < methods.Count; i++)
            {
                var pts = Points(points, methods[i], 64);
                var planned = pts.Select(p => ((double)p.N, (double)p.PlannedBytes)).ToList();
                AddCurve(plt, planned, Colors[i], $"{methods[i].Label}: planned, slope {SlopeText(Slope(planned))}", LinePattern.Solid, 0);
                var peak = pts.Where(p => p.PeakBytes > 0).Select(p => ((double)p.N, (double)p.PeakBytes!.Value)).ToList();
                AddCurve(plt, peak, Colors[i], $"{methods[i].Label}: measured peak, slope {SlopeText(Slope(peak))}", LinePattern.Dotted, 7);
            }
            YBytes(plt);
            Finish(plt, Path.Combine(docs, "bench-memory.png"));
        }
        // Time vs N at C = 64.
        {
            var plt = NewLogLog("One attention forward vs N (C = 64, 1 thread)", "seconds");
            for (int i = 0; i < methods.Count; i++)
            {
                var t = Points(points, methods[i], 64).Where(p => p.Seconds.HasValue).Select(p => ((double)p.N, p.Seconds!.Value)).ToList();
                AddCurve(plt, t, Colors[i], $"{methods[i].Label}, slope {SlopeText(Slope(t))}", LinePattern.Solid, 7);
            }
            YTicks(plt, v => Format.Seconds(v));
            Finish(plt, Path.Combine(docs, "bench-time.png"));
        }
        // DCA planned memory for every C, with N = C³ marked where it is inside the sweep.
        {
            var plt = NewLogLog("DCA attention memory vs N for each chunk size (planned)", "bytes");
            var shades = new[] { "#08306b", "#2171b5", "#6baed6", "#9ecae1" };
            for (int ci = 0; ci < MemorySweep.Cs.Length; ci++)
            {
                int c = MemorySweep.Cs[ci];
                var ed = Points(points, methods[2], c).Select(p => ((double)p.N, (double)p.PlannedBytes)).ToList();
                var fu = Points(points, methods[3], c).Select(p => ((double)p.N, (double)p.PlannedBytes)).ToList();
                AddCurve(plt, ed, Color.FromHex(shades[ci]), $"Edifice-materialised, C = {c}: slope {SlopeText(Slope(ed))}", LinePattern.Solid, 5);
                AddCurve(plt, fu, Color.FromHex(shades[ci]), $"DualChunk.NET fused, C = {c}: slope {SlopeText(Slope(fu))}", LinePattern.Dashed, 0);
                double cube = Math.Pow(c, 3);
                if (cube <= MemorySweep.Ns[^1])
                {
                    var line = plt.Add.VerticalLine(Math.Log10(cube));
                    line.Color = Color.FromHex(shades[ci]);
                    line.LinePattern = LinePattern.Dotted;
                    line.LegendText = $"N = C³ = {cube:N0} (C = {c}): N²/C² overtakes N·C";
                }
            }
            YBytes(plt);
            Finish(plt, Path.Combine(docs, "bench-memory-by-c.png"));
        }
    }

    private static Plot NewLogLog(string title, string yLabel)
    {
        var plt = new Plot();
        plt.Title(title);
        plt.XLabel("N (positions, log scale)");
        plt.YLabel(yLabel + " (log scale)");
        var x = new ScottPlot.TickGenerators.NumericManual();
        foreach (int n in MemorySweep.Ns) x.AddMajor(Math.Log10(n), n >= 1024 ? $"{n / 1024}K" : n.ToString(CultureInfo.InvariantCulture));
        plt.Axes.Bottom.TickGenerator = x;
        return plt;
    }

    private static void AddCurve(Plot plt, List<(double N, double Y)> pts, Color color, string label, LinePattern pattern, float marker)
    {
        pts = pts.Where(p => p.Y > 0).ToList();
        if (pts.Count == 0) return;
        var s = plt.Add.Scatter(pts.Select(p => Math.Log10(p.N)).ToArray(), pts.Select(p => Math.Log10(p.Y)).ToArray());
        s.Color = color;
        s.LineWidth = 2;
        s.LinePattern = pattern;
        s.MarkerSize = marker;
        s.LegendText = label;
    }

    private static void YBytes(Plot plt) => YTicks(plt, v => Format.Bytes(v));

    private static void YTicks(Plot plt, Func<double, string> label)
    {
        plt.Axes.AutoScale();
        var limits = plt.Axes.GetLimits();
        var y = new ScottPlot.TickGenerators.NumericManual();
        for (int e = (int)Math.Floor(limits.Bottom); e <= (int)Math.Ceiling(limits.Top); e++)
            y.AddMajor(e, label(Math.Pow(10, e)));
        plt.Axes.Left.TickGenerator = y;
    }

    private static void Finish(Plot plt, string path)
    {
        plt.ShowLegend(Alignment.UpperLeft);
        plt.Legend.FontSize = 11;
        plt.SavePng(path, 1100, 750);
    }

    /// <summary>Machine, commit, command, date, for the head of each generated section.</summary>
    public static string Provenance(string command, BenchMode mode)
    {
        ArgumentNullException.ThrowIfNull(mode);
        string model = Run("lscpu").Split('\n').Select(l => l.Trim()).FirstOrDefault(l => l.StartsWith("Model name:", StringComparison.Ordinal))?["Model name:".Length..].Trim() ?? "unknown CPU";
        string flagsLine = File.Exists("/proc/cpuinfo") ? File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("flags", StringComparison.Ordinal)) ?? "" : "";
        var flags = flagsLine.Split([' ', '\t', ':'], StringSplitOptions.RemoveEmptyEntries).ToHashSet(StringComparer.Ordinal);
        string isa = string.Join(", ", IsaFlags.Select(f => $"{f} {(flags.Contains(f) ? "yes" : "no")}"));
        string commit = Run("git rev-parse --short HEAD").Trim();
        if (Run("git status --porcelain -- src bench").Trim().Length > 0) commit += " (+ uncommitted changes in src/ or bench/)";
        return string.Create(Inv,
            $"_Generated by `{command}` ({mode.Name} mode) on {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, commit `{commit}`. " +
            $"Machine: {model}; {isa}; {Environment.ProcessorCount} logical cores; {DualChunk.Kernels.KernelSelection.Isa} kernels; .NET {Environment.Version}._\n\n");
    }

    private static readonly string[] IsaFlags = ["avx512f", "avx2", "fma"];

    private static string Run(string command)
    {
        try
        {
            string[] parts = command.Split(' ');
            var psi = new ProcessStartInfo(parts[0]) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (string a in parts[1..]) psi.ArgumentList.Add(a);
            using var p = Process.Start(psi);
            if (p is null) return "";
            string o = p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            return p.ExitCode == 0 ? o : "";
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return "";
        }
    }
}
