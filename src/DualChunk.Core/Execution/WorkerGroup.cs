using System.Diagnostics;
using System.Runtime.ExceptionServices;

namespace DualChunk.Core;

/// <summary>Work split into independent items; <see cref="Execute"/> runs one item on worker slot <c>worker</c>.</summary>
internal interface IParallelWork
{
    void Execute(int item, int worker);
}

/// <summary>
/// The intra-op threads of one model: <c>Workers − 1</c> dedicated background threads (the calling thread is
/// worker 0 and does its share). A phase is one barrier: the caller publishes it, every slot claims the next
/// unclaimed item until none is left, and the caller waits until every helper is done.
/// </summary>
/// <remarks>
/// Inside a call (between <see cref="TryAcquire"/> and <see cref="Release"/>) the helpers wait for the next phase, and
/// the caller for a phase's end, by spinning for at most <see cref="SpinBudget"/> and then blocking on an event;
/// between calls the helpers block at once, so an idle model burns no CPU. With spinning off every wait blocks.
/// One forward pass at a time owns the group; a concurrent call that finds it busy runs on its own thread alone.
/// Each item is computed by the same code on the same data whichever slot runs it, so results do not depend on the
/// number of threads.
/// </remarks>
internal sealed class WorkerGroup : IDisposable
{
    /// <summary>How long a waiting thread spins before it blocks (about 50 µs: several phases of a small call).</summary>
    internal static readonly long SpinBudget = Stopwatch.Frequency / 20_000;

    private readonly Thread[] _threads;        // helper i + 1 (slot 0 is the calling thread)
    private readonly AutoResetEvent[] _wake;   // one per helper, set only when that helper is asleep
    private readonly int[] _asleep;            // 1 while helper i is (about to be) blocked on _wake[i]
    private readonly AutoResetEvent _finished = new(false);
    private readonly long[] _allocated;        // each helper's GC.GetAllocatedBytesForCurrentThread after its last phase
    private readonly long[] _helperPhases;     // phases each helper has joined (tests: proof the helpers ran)
    private readonly bool _spin;
    private readonly PhaseTrace? _trace = PhaseTrace.FromEnvironment();
    private readonly long[] _helperStart, _helperEnd; // the trace's timestamps of the helpers' last share
    private IParallelWork? _work;
    private int _items, _participants, _busy, _callerAsleep;
    private PaddedCounter _nextItem;           // the next item of the current phase to claim
    private int _phase;                        // generation: incremented to start a phase
    private int _pending;                      // helpers not yet done with the current phase
    private long _phasesRun;                   // phases (barriers) run in the group's lifetime
    private volatile bool _inCall, _stopping;
    private ExceptionDispatchInfo? _error;

    // The wait machinery allocates a little on a thread's first wait (and the process's first): each helper waits
    // once before the constructor returns, and each calling thread on its first phase, so no steady-state call does.
    private readonly CountdownEvent _started;
    [ThreadStatic] private static bool s_callerWaitPrimed;

    public WorkerGroup(int workers, bool allowSpinning = true)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(workers, 2);
        Workers = workers;
        _spin = allowSpinning;
        _threads = new Thread[workers - 1];
        _wake = new AutoResetEvent[workers - 1];
        _asleep = new int[workers - 1];
        _allocated = new long[workers - 1];
        _helperPhases = new long[workers - 1];
        _helperStart = new long[_trace is null ? 0 : workers - 1];
        _helperEnd = new long[_helperStart.Length];
        _started = new CountdownEvent(workers - 1);
        for (int i = 0; i < _threads.Length; i++)
        {
            _wake[i] = new AutoResetEvent(false);
            int slot = i + 1;
            _threads[i] = new Thread(() => Loop(slot)) { IsBackground = true, Name = $"DualChunk worker {slot}" };
            _threads[i].Start();
        }
        _started.Wait(TimeSpan.FromSeconds(10)); // bounded: a slow start only moves that allocation into a call
    }

    /// <summary>Threads a phase uses, the caller included.</summary>
    public int Workers { get; }

    /// <summary>Bytes the helper threads have allocated in their lifetime, as of their last phase (tests).</summary>
    internal long HelperAllocatedBytes => Sum(_allocated);

    /// <summary>Phases the helper threads have joined in their lifetime, summed over the helpers (tests).</summary>
    internal long HelperPhases => Sum(_helperPhases);

    /// <summary>Phases (one barrier each) run on the group in its lifetime (tests and the bench: phases per call).</summary>
    internal long PhasesRun => Volatile.Read(ref _phasesRun);

    /// <summary>The phase trace's table (<see cref="PhaseTrace"/>), or null when tracing is off.</summary>
    internal string? PhaseTraceReport => _trace?.Report();

    /// <summary>Claims the group for one forward pass; false when another call holds it. Wakes the helpers to spin.</summary>
    public bool TryAcquire()
    {
        if (_stopping || Interlocked.CompareExchange(ref _busy, 1, 0) != 0) return false;
        _trace?.CallStarted();
        if (_spin)
        {
            _inCall = true;
            WakeSleepers(); // they spin while the caller prepares, so the first phase finds them awake
        }
        return true;
    }

    /// <summary>Gives the group back after <see cref="TryAcquire"/> returned true; spinning helpers go to sleep.</summary>
    public void Release()
    {
        _inCall = false;
        _trace?.CallEnded();
        Volatile.Write(ref _busy, 0);
    }

    /// <summary>
    /// Runs items 0..<paramref name="items"/>-1 of <paramref name="work"/> on the caller (slot 0) and helpers
    /// (slots 1..<paramref name="maxWorkers"/>-1), and returns when all are done. Only the holder of the group may call this.
    /// </summary>
    public void Run(IParallelWork work, int items, int maxWorkers)
    {
        int participants = Math.Min(Workers, maxWorkers);
        if (participants <= 1 || items <= 1)
        {
            for (int i = 0; i < items; i++) work.Execute(i, 0);
            return;
        }
        if (!s_callerWaitPrimed)
        {
            _finished.WaitOne(0); // may consume a stale signal: harmless, WaitForHelpers re-checks _pending
            s_callerWaitPrimed = true;
        }
        _work = work;
        _items = items;
        _participants = participants;
        _error = null;
        _nextItem.Value = 0;
        long start = _trace is null ? 0 : Stopwatch.GetTimestamp(), callerDone = 0;
        Volatile.Write(ref _pending, _threads.Length);
        // The increment is a full fence: a helper that sees the new phase sees the fields above. A helper that set its
        // asleep flag before this increment is woken; one that sets it after re-reads the phase and does not block.
        Interlocked.Increment(ref _phase);
        WakeSleepers();
        Volatile.Write(ref _phasesRun, _phasesRun + 1); // only the holder writes it
        try
        {
            RunShare(work, 0);
            if (_trace is not null) callerDone = Stopwatch.GetTimestamp();
        }
        finally
        {
            WaitForHelpers(); // helpers never touch this call's buffers after the phase: wait even on failure
            _work = null;
        }
        _trace?.Phase(work, start, callerDone, Stopwatch.GetTimestamp(), _helperStart, _helperEnd);
        // The helper's exception as itself, with its stack: a caller sees the same exception type at any thread count.
        _error?.Throw();
    }

    private void RunShare(IParallelWork work, int slot)
    {
        // Each slot claims the next unclaimed item until none is left: a slot the OS (or a noisy neighbour) delays, at
        // the start of a phase or inside it, leaves its items to the others. One atomic per item.
        for (int item; (item = Interlocked.Increment(ref _nextItem.Value) - 1) < _items;)
            work.Execute(item, slot);
    }

    /// <summary>An int alone on its cache line: claiming items does not disturb the fields the waits read.</summary>
    [System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Explicit, Size = 128)]
    private struct PaddedCounter
    {
        [System.Runtime.InteropServices.FieldOffset(64)] public int Value;
    }

    private void WakeSleepers()
    {
        for (int i = 0; i < _wake.Length; i++)
            if (Volatile.Read(ref _asleep[i]) != 0) _wake[i].Set();
    }

    private void WaitForHelpers()
    {
        var spinner = new Spinner(_spin);
        while (Volatile.Read(ref _pending) != 0)
        {
            if (spinner.Spin()) continue;
            Interlocked.Exchange(ref _callerAsleep, 1); // a fence, paired with the helpers' decrement
            if (Volatile.Read(ref _pending) != 0) _finished.WaitOne();
            Volatile.Write(ref _callerAsleep, 0);
        }
    }

    private void Loop(int slot)
    {
        int helper = slot - 1, seen = 0;
        var wake = _wake[helper];
        wake.WaitOne(0);
        _started.Signal();
        while (true)
        {
            var spinner = new Spinner(_spin);
            while (Volatile.Read(ref _phase) == seen && !_stopping)
            {
                if (_inCall && spinner.Spin()) continue;
                Interlocked.Exchange(ref _asleep[helper], 1); // a fence, paired with the caller's phase increment
                if (Volatile.Read(ref _phase) == seen && !_stopping) wake.WaitOne();
                Volatile.Write(ref _asleep[helper], 0);
                spinner = new Spinner(_spin); // woken at the start of a call, or for a phase
            }
            if (_stopping) return;
            seen = Volatile.Read(ref _phase);
            if (slot < _participants)
            {
                if (_trace is not null) _helperStart[helper] = Stopwatch.GetTimestamp();
                try
                {
                    RunShare(_work!, slot);
                }
#pragma warning disable CA1031 // reported to the caller, which rethrows
                catch (Exception ex)
#pragma warning restore CA1031
                {
                    Interlocked.CompareExchange(ref _error, ExceptionDispatchInfo.Capture(ex), null);
                }
                if (_trace is not null) _helperEnd[helper] = Stopwatch.GetTimestamp();
                Volatile.Write(ref _allocated[helper], GC.GetAllocatedBytesForCurrentThread());
                Volatile.Write(ref _helperPhases[helper], _helperPhases[helper] + 1); // only this thread writes its slot
            }
            if (Interlocked.Decrement(ref _pending) == 0 && Volatile.Read(ref _callerAsleep) != 0)
                _finished.Set();
        }
    }

    /// <summary>A bounded spin: <see cref="Spin"/> pauses and returns true until <see cref="SpinBudget"/> has passed.</summary>
    private struct Spinner(bool enabled)
    {
        private long _deadline;
        private int _count;
        private bool _expired;

        public bool Spin()
        {
            if (!enabled || _expired) return false;
            if ((++_count & 31) == 0)
            {
                long now = Stopwatch.GetTimestamp();
                if (_deadline == 0) _deadline = now + SpinBudget;
                else if (_expired = now > _deadline) return false;
            }
            Thread.SpinWait(1);
            return true;
        }
    }

    private static long Sum(long[] values)
    {
        long sum = 0;
        foreach (ref readonly long v in values.AsSpan()) sum += Volatile.Read(in v);
        return sum;
    }

    /// <summary>Stops the helper threads; call only when no forward pass holds the group.</summary>
    public void Dispose()
    {
        if (_stopping) return;
        _stopping = true;
        foreach (var w in _wake) w.Set();
        foreach (var t in _threads)
        {
            if (t != Thread.CurrentThread) t.Join();
        }
        foreach (var w in _wake) w.Dispose();
        _finished.Dispose();
        _started.Dispose();
    }
}
