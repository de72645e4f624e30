using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace DualChunk.Core;

/// <summary>
/// Where a pass goes box by box: every dense layer (keyed by rows × in × out and epilogue), norm, chunk-means and
/// attention call is timed at the layer when the environment variable <c>DUALCHUNK_BOX_TRACE=1</c> is set at start
/// (read once; when off each layer pays one test of a static readonly the JIT folds away). Every model call closes a
/// pass (<see cref="EndCall"/>); <see cref="DualChunkModel.TakeBoxTrace"/> hands out the table over the passes since
/// the last take and starts a new one. <c>dualchunk bench</c> prints it on stderr: per box the calls, the median µs and
/// the FLOPs per pass over the timed calls;
/// <c>DUALCHUNK_PEAK_GFLOPS</c> adds the share of that peak (bench/box-table.sh measures the peak and sets it).
/// </summary>
/// <remarks>
/// Meant for <c>--threads 1</c>: with helper threads, calls of different threads overlap and are summed. FLOPs are
/// nominal: 2·rows·in·out per dense call, 2·T²·D per causal attention head (half the square: the keys a row sees),
/// 4·T·D for one row. Each timed call costs two timestamps (~50 ns) and a lock.
/// </remarks>
internal static class BoxTrace
{
    public static readonly bool On = Environment.GetEnvironmentVariable("DUALCHUNK_BOX_TRACE") == "1";

    private const int MaxBoxes = 64, MaxCalls = 4096;
    private static readonly object Gate = new();
    private static readonly string[] Kinds = new string[MaxBoxes];
    private static readonly int[] Rows = new int[MaxBoxes], In = new int[MaxBoxes], Out = new int[MaxBoxes];
    private static readonly long[] Ticks = new long[MaxBoxes], Count = new long[MaxBoxes], Flops = new long[MaxBoxes];
    private static readonly long[] TotalCount = new long[MaxBoxes], TotalFlops = new long[MaxBoxes];
    private static long[]? _perCall; // [call, box] ticks
    private static int _boxes, _calls;

    /// <summary>A start timestamp when tracing is on (else 0, and <see cref="End"/> does nothing).</summary>
    public static long Start() => On ? Stopwatch.GetTimestamp() : 0;

    /// <summary>Adds the time since <paramref name="start"/> to box (kind, rows, in, out).</summary>
    public static void End(long start, string kind, int rows, int @in, int @out, long flops)
    {
        if (!On) return;
        long ticks = Stopwatch.GetTimestamp() - start;
        lock (Gate)
        {
            int i = 0;
            while (i < _boxes && !(ReferenceEquals(Kinds[i], kind) && Rows[i] == rows && In[i] == @in && Out[i] == @out)) i++;
            if (i == _boxes)
            {
                if (_boxes == MaxBoxes) return;
                (Kinds[i], Rows[i], In[i], Out[i]) = (kind, rows, @in, @out);
                _boxes++;
            }
            Ticks[i] += ticks;
            Count[i]++;
            Flops[i] += flops;
        }
    }

    /// <summary>Closes one call (the model, at the end of each Run and Append): its per-box times go into the medians.</summary>
    public static void EndCall()
    {
        if (!On) return;
        lock (Gate)
        {
            if (_perCall is not null && _calls < MaxCalls)
            {
                Array.Copy(Ticks, 0, _perCall, _calls * MaxBoxes, MaxBoxes);
                for (int i = 0; i < _boxes; i++) { TotalCount[i] += Count[i]; TotalFlops[i] += Flops[i]; }
                _calls++;
            }
            Array.Clear(Ticks);
            Array.Clear(Count);
            Array.Clear(Flops);
        }
    }

    /// <summary>The table over the calls closed since the last take (<see cref="Report"/>), then a new table begins.</summary>
    public static string? Take()
    {
        if (!On) return null;
        lock (Gate)
        {
            string report = Report()!;
            Reset();
            return report;
        }
    }

    /// <summary>Forgets everything recorded; sizes the per-call table, so the calls after it allocate nothing.</summary>
    private static void Reset()
    {
        if (!On) return;
        lock (Gate)
        {
            Array.Clear(Ticks);
            Array.Clear(Count);
            Array.Clear(Flops);
            Array.Clear(TotalCount);
            Array.Clear(TotalFlops);
            _perCall ??= new long[MaxCalls * MaxBoxes]; // before the timed calls: they allocate nothing
            _calls = 0;
        }
    }

    /// <summary>The table (markdown) over the calls closed since the last <see cref="Reset"/>, or null when tracing is off.</summary>
    private static string? Report()
    {
        if (!On) return null;
        lock (Gate)
        {
            if (_calls == 0 || _perCall is null) return "box trace: no timed calls";
            var inv = CultureInfo.InvariantCulture;
            double peak = double.TryParse(Environment.GetEnvironmentVariable("DUALCHUNK_PEAK_GFLOPS"), NumberStyles.Float, inv, out double p) ? p : 0;
            double us = 1e6 / Stopwatch.Frequency;
            var s = new StringBuilder();
            s.AppendLine(inv, $"box trace over {_calls} calls, per pass (median µs over the calls){(peak > 0 ? $", peak {peak} GFLOP/s" : "")}:");
            s.AppendLine("| box | rows × in × out | calls | µs | MFLOP | GFLOP/s | % of peak |");
            s.AppendLine("|---|---|---:|---:|---:|---:|---:|");
            var column = new long[_calls];
            var perCallTotal = new long[_calls];
            for (int i = 0; i < _boxes; i++)
            {
                for (int c = 0; c < _calls; c++) { column[c] = _perCall[c * MaxBoxes + i]; perCallTotal[c] += column[c]; }
                Array.Sort(column);
                double median = column[_calls / 2] * us, mflop = TotalFlops[i] / 1e6 / _calls;
                double gflops = median > 0 ? 1e3 * mflop / median : 0; // MFLOP per µs is TFLOP/s
                s.AppendLine(inv, $"| {Kinds[i]} | {Rows[i]} × {In[i]} × {Out[i]} | {(double)TotalCount[i] / _calls:0.##} | {median:F1} | {mflop:F3} | " +
                    $"{(mflop > 0 ? gflops.ToString("F1", inv) : "")} | {(mflop > 0 && peak > 0 ? (100 * gflops / peak).ToString("F0", inv) : "")} |");
            }
            Array.Sort(perCallTotal);
            s.Append(inv, $"all boxes: {perCallTotal[_calls / 2] * us:F1} µs per pass (median of the per-pass sums)");
            return s.ToString();
        }
    }
}
