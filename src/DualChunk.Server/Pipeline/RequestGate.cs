using System.Diagnostics.Metrics;
using System.Threading.RateLimiting;
using Microsoft.Extensions.Options;
using static DualChunk.Server.Pipeline.InferenceException;

namespace DualChunk.Server.Pipeline;

/// <summary>
/// Backpressure for every protocol at once: <see cref="ServiceOptions.MaxConcurrentCalls"/> inference calls run,
/// <see cref="ServiceOptions.MaxQueuedCalls"/> wait (oldest first); the next is refused at once
/// (<see cref="InferenceErrorKind.Overloaded"/>), never queued without bound.
/// </summary>
internal sealed class RequestGate : IDisposable
{
    private readonly ConcurrencyLimiter _limiter;
    private readonly ServiceOptions _options;

    public RequestGate(IOptions<ServiceOptions> options, IMeterFactory meterFactory)
    {
        _options = options.Value;
        // Scale on the queue (docs/deploy.md): a replica whose queue grows needs help; a busy one with none does not.
        var meter = meterFactory.Create(ServerMetrics.MeterName);
        meter.CreateObservableUpDownCounter("dualchunk.server.requests.running", () => Current.Running, "{request}", "Inference calls running now (every protocol).");
        meter.CreateObservableUpDownCounter("dualchunk.server.requests.queued", () => Current.Queued, "{request}", "Inference calls waiting for a slot.");
        // A running call holds a thread-pool thread for the model's whole (synchronous, CPU-bound) pass. With
        // MaxConcurrentCalls of them held and the pool at its default minimum (one per core), Kestrel's next read or
        // write would wait for the pool to inject a thread (its starvation check, ~0.5 s apart): a latency spike
        // under load. Keep a thread per core free beside the calls.
        ThreadPool.GetMinThreads(out int workers, out int io);
        if (workers < _options.MaxConcurrentCalls + Environment.ProcessorCount)
            ThreadPool.SetMinThreads(_options.MaxConcurrentCalls + Environment.ProcessorCount, io);
        _limiter = new ConcurrencyLimiter(new ConcurrencyLimiterOptions
        {
            PermitLimit = _options.MaxConcurrentCalls,
            QueueLimit = _options.MaxQueuedCalls,
            QueueProcessingOrder = QueueProcessingOrder.OldestFirst,
        });
    }

    /// <summary>Calls running and waiting now (tests, metrics).</summary>
    public (long Running, long Queued) Current
    {
        get
        {
            var s = _limiter.GetStatistics()!;
            return (_options.MaxConcurrentCalls - s.CurrentAvailablePermits, s.CurrentQueuedCount);
        }
    }

    /// <summary>A slot for one call (dispose it when the call is done), or <see cref="InferenceErrorKind.Overloaded"/>.</summary>
    public async ValueTask<RateLimitLease> EnterAsync(CancellationToken cancellationToken)
    {
        var lease = _limiter.AttemptAcquire();
        if (!lease.IsAcquired)
        {
            lease.Dispose();
            lease = await _limiter.AcquireAsync(1, cancellationToken).ConfigureAwait(false);
        }
        if (lease.IsAcquired) return lease;
        lease.Dispose();
        throw new InferenceException(InferenceErrorKind.Overloaded,
            Inv($"{_options.MaxConcurrentCalls} calls are running and {_options.MaxQueuedCalls} waiting; retry after {_options.RetryAfterSeconds} s."));
    }

    public void Dispose() => _limiter.Dispose();
}
