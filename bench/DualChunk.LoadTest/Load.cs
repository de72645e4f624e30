using System.Diagnostics;
using System.Globalization;

namespace DualChunk.LoadTest;

/// <summary>Closed-loop clients: each sends its next request when the last one is answered.</summary>
internal static class Load
{
    /// <summary><paramref name="clients"/> clients for <paramref name="seconds"/> (and at most <paramref name="maxRequests"/> if above 0).</summary>
    public static async Task<(List<(string Status, double Ms)> Samples, double WallSeconds)> Run(Send send, int clients, double seconds, long maxRequests)
    {
        long sent = 0;
        long start = Stopwatch.GetTimestamp();
        long deadline = start + (long)(seconds * Stopwatch.Frequency);
        var results = new List<(string, double)>[clients];
        var workers = Enumerable.Range(0, clients).Select(c => Task.Run(async () =>
        {
            var mine = results[c] = new List<(string, double)>(1024);
            while (Stopwatch.GetTimestamp() < deadline && (maxRequests <= 0 || Interlocked.Increment(ref sent) <= maxRequests))
            {
                long t0 = Stopwatch.GetTimestamp();
                string status = await Outcome(send, c).ConfigureAwait(false);
                mine.Add((status, Stopwatch.GetElapsedTime(t0).TotalMilliseconds));
            }
        })).ToArray();
        await Task.WhenAll(workers).ConfigureAwait(false);
        double wall = Stopwatch.GetElapsedTime(start).TotalSeconds;
        return ([.. results.SelectMany(r => r)], wall);
    }

    /// <summary><paramref name="count"/> requests over <paramref name="parallel"/> clients: the statuses counted.</summary>
    public static async Task<Dictionary<string, int>> Count(Send send, int parallel, int count)
    {
        int next = -1;
        var statuses = new Dictionary<string, int>[parallel];
        await Task.WhenAll(Enumerable.Range(0, parallel).Select(c => Task.Run(async () =>
        {
            var mine = statuses[c] = new Dictionary<string, int>(StringComparer.Ordinal);
            while (Interlocked.Increment(ref next) < count)
            {
                string s = await Outcome(send, c).ConfigureAwait(false);
                mine[s] = mine.GetValueOrDefault(s) + 1;
            }
        }))).ConfigureAwait(false);
        return statuses.SelectMany(d => d).GroupBy(kv => kv.Key, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.Sum(kv => kv.Value), StringComparer.Ordinal);
    }

    /// <summary>The status, or what went wrong on the way (a reset connection, a timeout) as an error of its own.</summary>
    private static async Task<string> Outcome(Send send, int client)
    {
        try
        {
            return await send(client, CancellationToken.None).ConfigureAwait(false);
        }
        catch (HttpRequestException ex)
        {
            return "connection-error:" + (ex.HttpRequestError.ToString());
        }
        catch (TaskCanceledException)
        {
            return "client-timeout";
        }
    }
}

internal static class Stats
{
    /// <summary>Nearest rank on a sorted sample (NaN when empty).</summary>
    public static double P(double[] sorted, double q) => sorted.Length == 0 ? double.NaN : sorted[Math.Clamp((int)Math.Ceiling(q * sorted.Length) - 1, 0, sorted.Length - 1)];

    public static double Max(double[] sorted) => sorted.Length == 0 ? double.NaN : sorted[^1];

    public static double Median(IEnumerable<double> values)
    {
        var v = values.Order().ToArray();
        return v.Length == 0 ? double.NaN : v.Length % 2 == 1 ? v[v.Length / 2] : (v[v.Length / 2 - 1] + v[v.Length / 2]) / 2;
    }

    public static void AddPercentiles(Dictionary<string, object?> report, string prefix, double[] sorted)
    {
        report[prefix + "p50_ms"] = Math.Round(P(sorted, .5), 3);
        report[prefix + "p90_ms"] = Math.Round(P(sorted, .9), 3);
        report[prefix + "p99_ms"] = Math.Round(P(sorted, .99), 3);
        report[prefix + "max_ms"] = Math.Round(Max(sorted), 3);
    }
}

/// <summary>The server's resident set and its peak (VmRSS, VmHWM of /proc/PID/status), in MB; NaN without a PID.</summary>
internal static class ServerMemory
{
    public static (double Rss, double Hwm) Read(int? pid)
    {
        if (pid is null) return (double.NaN, double.NaN);
        double rss = double.NaN, hwm = double.NaN;
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal)) rss = Kb(line) / 1024.0;
            else if (line.StartsWith("VmHWM:", StringComparison.Ordinal)) hwm = Kb(line) / 1024.0;
        }
        return (Math.Round(rss, 1), Math.Round(hwm, 1));
    }

    private static long Kb(string line) => long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
}

/// <summary>
/// CPU seconds used so far: the server's (utime + stime of /proc/PID/stat; NaN without a PID) and this process's own.
/// </summary>
internal static class Cpu
{
    public static double Server(int? pid)
    {
        if (pid is null) return double.NaN;
        string stat = File.ReadAllText($"/proc/{pid}/stat");
        // Fields after the command (which may hold spaces) in parentheses: state is field 3, utime 14, stime 15.
        var f = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return (long.Parse(f[11], CultureInfo.InvariantCulture) + long.Parse(f[12], CultureInfo.InvariantCulture)) / TicksPerSecond;
    }

    public static double Own() => Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds;

    private const double TicksPerSecond = 100; // USER_HZ on Linux
}
