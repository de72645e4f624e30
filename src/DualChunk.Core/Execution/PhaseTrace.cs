using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace DualChunk.Core;

/// <summary>
/// Where a multi-threaded call's time goes, phase by phase: the caller's share, its wait for the helpers, the
/// helpers' start delay and share. Off unless the environment variable <c>DUALCHUNK_PHASE_TRACE=1</c> is set when
/// the model is built (then <c>dualchunk bench</c> prints the table on stderr); when off the group holds no trace
/// and pays one null check per phase.
/// </summary>
/// <remarks>Written by the group's holder only (one call at a time), read after the calls.</remarks>
internal sealed class PhaseTrace
{
    private const int MaxPhases = 128;

    private readonly string?[] _names = new string?[MaxPhases];
    private readonly long[] _callerWork = new long[MaxPhases], _callerWait = new long[MaxPhases];
    private readonly long[] _helperDelay = new long[MaxPhases], _helperWork = new long[MaxPhases];
    private long _calls, _callTicks, _callStart;
    private int _phase;

    /// <summary>A new trace when the environment asks for one, else null.</summary>
    public static PhaseTrace? FromEnvironment()
        => Environment.GetEnvironmentVariable("DUALCHUNK_PHASE_TRACE") == "1" ? new PhaseTrace() : null;

    public void CallStarted()
    {
        _phase = 0;
        _callStart = Stopwatch.GetTimestamp();
    }

    public void CallEnded()
    {
        _calls++;
        _callTicks += Stopwatch.GetTimestamp() - _callStart;
    }

    /// <summary>One phase: published at <paramref name="start"/>, the caller's share done at <paramref name="callerDone"/>, all done at <paramref name="end"/>; the helpers' start and end times.</summary>
    public void Phase(IParallelWork work, long start, long callerDone, long end, ReadOnlySpan<long> helperStart, ReadOnlySpan<long> helperEnd)
    {
        int k = Math.Min(_phase++, MaxPhases - 1);
        _names[k] ??= work.GetType().Name;
        _callerWork[k] += callerDone - start;
        _callerWait[k] += end - callerDone;
        long delay = 0, busy = 0;
        for (int i = 0; i < helperStart.Length; i++)
        {
            delay = Math.Max(delay, helperStart[i] - start);
            busy = Math.Max(busy, helperEnd[i] - helperStart[i]);
        }
        _helperDelay[k] += delay;
        _helperWork[k] += busy;
    }

    /// <summary>The per-call averages since the last report, one line per phase of the pass, in µs; starts a new count.</summary>
    public string Report()
    {
        try
        {
            return Format();
        }
        finally
        {
            Array.Clear(_names);
            Array.Clear(_callerWork);
            Array.Clear(_callerWait);
            Array.Clear(_helperDelay);
            Array.Clear(_helperWork);
            _calls = _callTicks = 0;
        }
    }

    private string Format()
    {
        if (_calls == 0) return "phase trace: no calls on the worker group";
        double us = 1e6 / Stopwatch.Frequency / _calls;
        var s = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        double phases = 0;
        s.AppendLine(inv, $"phase trace over {_calls} calls (µs per call): phase, work item, caller share, caller wait, helper start delay, helper share");
        for (int k = 0; k < MaxPhases && _names[k] is { } name; k++)
        {
            s.AppendLine(inv, $"{k,3} {name,-18} {_callerWork[k] * us,9:F1} {_callerWait[k] * us,9:F1} {_helperDelay[k] * us,9:F1} {_helperWork[k] * us,9:F1}");
            phases += (_callerWork[k] + _callerWait[k]) * us;
        }
        double call = _callTicks * us;
        s.Append(inv, $"call {call:F1} µs: {phases:F1} in phases, {call - phases:F1} on the caller alone between them");
        return s.ToString();
    }
}
