namespace DualChunk.Core;

/// <summary>Work split into independent items; <see cref="Execute"/> runs one item on worker slot <c>worker</c>.</summary>
internal interface IParallelWork
{
    void Execute(int item, int worker);
}

/// <summary>
/// The intra-op threads of one model: <c>Workers − 1</c> dedicated background threads (the calling thread is
/// worker 0 and does its share). Between phases every helper thread blocks on its own
/// <see cref="AutoResetEvent"/>, a kernel wait: no spinning, no .NET thread-pool threads, no allocation per phase.
/// </summary>
/// <remarks>
/// One forward pass at a time owns the group (<see cref="TryAcquire"/>); a concurrent call that finds it busy runs
/// on its own thread alone, so a model never has more than <c>Workers</c> threads computing on behalf of callers
/// beyond the callers themselves. Items are claimed dynamically (an interlocked counter), but each item is computed
/// by the same code on the same data whoever claims it, so results do not depend on the schedule.
/// </remarks>
internal sealed class WorkerGroup : IDisposable
{
    private readonly Thread[] _threads;        // helper i + 1 (slot 0 is the calling thread)
    private readonly AutoResetEvent[] _wake;   // one per helper
    private readonly AutoResetEvent _finished = new(false);
    private readonly long[] _allocated;        // each helper's GC.GetAllocatedBytesForCurrentThread after its last phase
    private readonly long[] _helperPhases;     // phases each helper has joined (tests: proof the helpers ran)
    private IParallelWork? _work;
    private int _items, _next, _pending, _busy;
    private volatile bool _stopping;
    private Exception? _error;

    public WorkerGroup(int workers)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(workers, 2);
        Workers = workers;
        _threads = new Thread[workers - 1];
        _wake = new AutoResetEvent[workers - 1];
        _allocated = new long[workers - 1];
        _helperPhases = new long[workers - 1];
        for (int i = 0; i < _threads.Length; i++)
        {
            _wake[i] = new AutoResetEvent(false);
            int slot = i + 1;
            _threads[i] = new Thread(() => Loop(slot)) { IsBackground = true, Name = $"DualChunk worker {slot}" };
            _threads[i].Start();
        }
    }

    /// <summary>Threads a phase uses, the caller included.</summary>
    public int Workers { get; }

    /// <summary>Bytes the helper threads have allocated in their lifetime, as of their last phase (tests).</summary>
    internal long HelperAllocatedBytes
    {
        get
        {
            long sum = 0;
            foreach (ref readonly long a in _allocated.AsSpan()) sum += Volatile.Read(in a);
            return sum;
        }
    }

    /// <summary>
    /// Phases the helper threads have joined in their lifetime (tests). Counted per phase, not per item: the caller
    /// may claim every item of a small phase before a helper wakes, but a helper joins every phase it is woken for.
    /// </summary>
    internal long HelperPhases
    {
        get
        {
            long sum = 0;
            foreach (ref readonly long n in _helperPhases.AsSpan()) sum += Volatile.Read(in n);
            return sum;
        }
    }

    /// <summary>Claims the group for one forward pass; false when another call holds it.</summary>
    public bool TryAcquire() => !_stopping && Interlocked.CompareExchange(ref _busy, 1, 0) == 0;

    /// <summary>Gives the group back after <see cref="TryAcquire"/> returned true.</summary>
    public void Release() => Volatile.Write(ref _busy, 0);

    /// <summary>
    /// Runs items 0..<paramref name="items"/>-1 of <paramref name="work"/> on the caller (slot 0) and helpers
    /// (slots 1..<paramref name="maxWorkers"/>-1), and returns when all are done. Only the holder of the group may call this.
    /// </summary>
    public void Run(IParallelWork work, int items, int maxWorkers)
    {
        int helpers = Math.Min(Math.Min(_threads.Length, maxWorkers - 1), items - 1);
        if (helpers <= 0)
        {
            for (int i = 0; i < items; i++) work.Execute(i, 0);
            return;
        }
        _work = work;
        _items = items;
        _next = 0;
        _error = null;
        Volatile.Write(ref _pending, helpers);
        for (int i = 0; i < helpers; i++) _wake[i].Set(); // Set is a full fence: the fields above are visible
        try
        {
            Claim(work, 0);
        }
        finally
        {
            _finished.WaitOne(); // helpers never touch this call's buffers after the phase: wait even on failure
            _work = null;
        }
        if (_error is { } error)
            throw new AggregateException("A DualChunk worker thread failed.", error);
    }

    private void Claim(IParallelWork work, int slot)
    {
        int item;
        while ((item = Interlocked.Increment(ref _next) - 1) < _items)
            work.Execute(item, slot);
    }

    private void Loop(int slot)
    {
        var wake = _wake[slot - 1];
        while (true)
        {
            wake.WaitOne();
            if (_stopping) return;
            try
            {
                Claim(_work!, slot);
            }
#pragma warning disable CA1031 // reported to the caller, which rethrows
            catch (Exception ex)
#pragma warning restore CA1031
            {
                Interlocked.CompareExchange(ref _error, ex, null);
                Volatile.Write(ref _next, int.MaxValue / 2); // stop claiming
            }
            Volatile.Write(ref _allocated[slot - 1], GC.GetAllocatedBytesForCurrentThread());
            Volatile.Write(ref _helperPhases[slot - 1], _helperPhases[slot - 1] + 1); // only this thread writes its slot
            if (Interlocked.Decrement(ref _pending) == 0)
                _finished.Set();
        }
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
    }
}
