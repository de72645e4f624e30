using System.Diagnostics.Metrics;
using System.Threading.RateLimiting;
using Microsoft.Extensions.Options;
using static DualChunk.Server.Pipeline.InferenceException;

namespace DualChunk.Server.Pipeline;

/// <summary>
/// Backpressure for every protocol at once: at most <see cref="ServiceOptions.MaxConcurrentCalls"/> +
/// <see cref="ServiceOptions.MaxQueuedCalls"/> requests are admitted (<see cref="Admit"/>; the next is refused at once,
/// <see cref="InferenceErrorKind.Overloaded"/>, never queued without bound); an admitted request reads and decodes
/// its body, then takes one of the <see cref="ServiceOptions.MaxConcurrentCalls"/> model slots
/// (<see cref="EnterAsync"/>, oldest first) only for the model call.
/// </summary>
/// <remarks>
/// A request refused while it is read or decoded (most bad requests) never holds a model slot, so it cannot make a
/// good request wait for one; the admission bound keeps the bodies in memory at once bounded as before.
/// </remarks>
internal sealed class RequestGate : IDisposable
{
    private readonly ConcurrencyLimiter _admission;
    private readonly ConcurrencyLimiter _slots;
    private readonly ServiceOptions _options;

    public RequestGate(IOptions<ServiceOptions> options, IMeterFactory meterFactory)
    {
        _options = options.Value;
        // Scale on the queue (docs/deploy.md): a replica whose queue grows needs help; a busy one with none does not.
        var meter = meterFactory.Create(ServerMetrics.MeterName);
        meter.CreateObservableUpDownCounter("dualchunk.server.requests.running", () => Current.Running, "{request}", "Inference calls running now (every protocol).");
        meter.CreateObservableUpDownCounter("dualchunk.server.requests.queued", () => Current.Queued, "{request}", "Inference requests admitted and not running: being read and decoded, or waiting for a slot.");
        // A running call holds a thread-pool thread for the model's whole (synchronous, CPU-bound) pass. With
        // MaxConcurrentCalls of them held and the pool at its default minimum (one per core), Kestrel's next read or
        // write would wait for the pool to inject a thread (its starvation check, ~0.5 s apart): a latency spike
        // under load. Keep a thread per core free beside the calls.
        ThreadPool.GetMinThreads(out int workers, out int io);
        if (workers < _options.MaxConcurrentCalls + Environment.ProcessorCount)
            ThreadPool.SetMinThreads(_options.MaxConcurrentCalls + Environment.ProcessorCount, io);
        int admitted = _options.MaxConcurrentCalls + _options.MaxQueuedCalls;
        _admission = new ConcurrencyLimiter(new ConcurrencyLimiterOptions { PermitLimit = admitted, QueueLimit = 0 });
        _slots = new ConcurrencyLimiter(new ConcurrencyLimiterOptions
        {
            PermitLimit = _options.MaxConcurrentCalls,
            QueueLimit = admitted, // never reached: only admitted requests ask for a slot
            QueueProcessingOrder = QueueProcessingOrder.OldestFirst,
        });
    }

    /// <summary>Model calls running, and admitted requests not running one (tests, metrics).</summary>
    public (long Running, long Queued) Current
    {
        get
        {
            long running = _options.MaxConcurrentCalls - _slots.GetStatistics()!.CurrentAvailablePermits;
            long admitted = _options.MaxConcurrentCalls + _options.MaxQueuedCalls - _admission.GetStatistics()!.CurrentAvailablePermits;
            return (running, Math.Max(0, admitted - running));
        }
    }

    /// <summary>Admits a request before its body is read (dispose it at the end), or <see cref="InferenceErrorKind.Overloaded"/> at once.</summary>
    public RateLimitLease Admit()
    {
        var lease = _admission.AttemptAcquire();
        if (lease.IsAcquired) return lease;
        lease.Dispose();
        throw Overloaded();
    }

    /// <summary>A model slot for one call of an admitted request (dispose it when the call is done).</summary>
    public async ValueTask<RateLimitLease> EnterAsync(CancellationToken cancellationToken)
    {
        var lease = _slots.AttemptAcquire();
        if (!lease.IsAcquired)
        {
            lease.Dispose();
            lease = await _slots.AcquireAsync(1, cancellationToken).ConfigureAwait(false);
        }
        if (lease.IsAcquired) return lease;
        lease.Dispose();
        throw Overloaded();
    }

    private InferenceException Overloaded() => new(InferenceErrorKind.Overloaded,
        Inv($"{_options.MaxConcurrentCalls} calls are running and {_options.MaxQueuedCalls} waiting; retry after {_options.RetryAfterSeconds} s."));

    public void Dispose()
    {
        _admission.Dispose();
        _slots.Dispose();
    }
}
