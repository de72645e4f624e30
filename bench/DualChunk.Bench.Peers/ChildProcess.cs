using System.Diagnostics;

namespace DualChunk.Bench.Peers;

/// <summary>What a child run of this program printed, and how it ended.</summary>
public sealed record ChildResult(int ExitCode, string StdOut, string StdErr, bool TimedOut)
{
    /// <summary>The last stdout line starting with <paramref name="prefix"/>, without it; null when there is none.</summary>
    public string? Line(string prefix)
        => StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries).LastOrDefault(l => l.StartsWith(prefix, StringComparison.Ordinal))?[prefix.Length..];

    /// <summary>Why the child failed, in one line, for the table.</summary>
    public string Failure => TimedOut ? "timed out (killed)" : $"exit {ExitCode}: {StdErr.Split('\n', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault() ?? "no output"}";
}

/// <summary>
/// Runs this program again in a fresh process (the apphost, or `dotnet this.dll`) and waits for it, with a bound:
/// a child past its time limit is killed with its process tree and reported as timed out.
/// </summary>
public static class ChildProcess
{
    public static ChildResult Run(IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment, TimeSpan limit)
    {
        ArgumentNullException.ThrowIfNull(args);
        string process = Environment.ProcessPath ?? "dotnet";
        var psi = new ProcessStartInfo(process) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(process).Equals("dotnet", StringComparison.OrdinalIgnoreCase))
            psi.ArgumentList.Add(typeof(ChildProcess).Assembly.Location);
        foreach (string a in args) psi.ArgumentList.Add(a);
        foreach (var (name, value) in environment ?? new Dictionary<string, string>()) psi.Environment[name] = value;
        using var p = Process.Start(psi) ?? throw new InvalidOperationException("could not start the child process");
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        bool exited = p.WaitForExit(limit);
        if (!exited)
        {
            p.Kill(entireProcessTree: true);
            p.WaitForExit(TimeSpan.FromSeconds(30));
        }
        return new ChildResult(exited ? p.ExitCode : -1, stdout.Result, stderr.Result, !exited);
    }
}
