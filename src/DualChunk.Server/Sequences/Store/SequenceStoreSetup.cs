using DualChunk.Extensions.Hosting;
using DualChunk.Server.Sequences;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;

namespace DualChunk.Server.Sequences.Store;

/// <summary>Registers the sequence store (when <c>Sequences:Store:Redis</c> is set), its metrics and its readiness entries.</summary>
internal static class SequenceStoreSetup
{
    /// <summary>
    /// Binds <see cref="SequenceStoreOptions"/>; with a connection string registers <see cref="ISequenceStore"/>
    /// (<see cref="RedisSequenceStore"/>, connecting in the background); always registers the metrics, the drain
    /// state and the readiness checks ("draining": 503 from the moment shutdown begins; "sequence-store": Degraded,
    /// still 200, while the store is unreachable).
    /// </summary>
    public static void AddSequenceStore(IServiceCollection services, IConfiguration configuration)
    {
        var options = new SequenceStoreOptions();
        configuration.GetSection(SequenceStoreOptions.Section).Bind(options);
        if (options.IsConfigured) options.Validate(); // fail at startup naming the setting, not on the first request
        services.AddSingleton(Options.Create(options));
        services.AddSingleton<SequenceStoreMetrics>();
        services.AddSingleton<ShutdownDrainState>();
        if (options.IsConfigured)
        {
            services.AddSingleton<ISequenceStore>(sp => new RedisSequenceStore(options, sp.GetService<TimeProvider>()));
            services.AddHostedService<SequenceDrainService>();
        }
        var health = services.AddHealthChecks()
            .AddCheck<DrainingHealthCheck>("draining", tags: [DualChunkServiceCollectionExtensions.ReadyTag]);
        if (options.IsConfigured)
            health.AddCheck<SequenceStoreHealthCheck>("sequence-store", failureStatus: HealthStatus.Degraded, tags: [DualChunkServiceCollectionExtensions.ReadyTag]);
    }
}

/// <summary>
/// Drain on shutdown: stops after the web server (WebApplication starts user hosted services before the server and
/// stops them after it), so the requests in flight have finished; then every open sequence is written to the store,
/// within the host's shutdown timeout (<c>HostOptions:ShutdownTimeout</c>, default 30 s).
/// </summary>
internal sealed class SequenceDrainService(SequenceTable table) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => table.DrainAsync(cancellationToken);
}

/// <summary>Set when shutdown begins (SIGTERM): readiness turns 503 at once and new sequence requests are refused.</summary>
internal sealed class ShutdownDrainState
{
    private volatile bool _draining;

    public ShutdownDrainState(IHostApplicationLifetime lifetime) => lifetime.ApplicationStopping.Register(() => _draining = true);

    /// <summary>True from the moment the host began stopping.</summary>
    public bool IsDraining => _draining;
}

/// <summary>Readiness: Unhealthy (503) while the replica drains, so the balancer moves traffic away at once.</summary>
internal sealed class DrainingHealthCheck(ShutdownDrainState drain) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
        => Task.FromResult(drain.IsDraining
            ? HealthCheckResult.Unhealthy("shutting down: open sequences are being written to the store; send new requests to another replica")
            : HealthCheckResult.Healthy("serving"));
}

/// <summary>
/// Readiness entry of the store: Healthy when it answers PING, Degraded (readiness stays 200: sequences in memory and
/// the stateless endpoints keep serving) when it does not.
/// </summary>
internal sealed class SequenceStoreHealthCheck(ISequenceStore store, SequenceStoreMetrics metrics) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var ping = await store.PingAsync(cancellationToken).ConfigureAwait(false);
        if (ping.IsOk) return HealthCheckResult.Healthy(store.Description);
        metrics.Error("ping");
        return HealthCheckResult.Degraded($"sequence store degraded: {ping.Message} Sequences in memory keep serving; spills, drains and handovers fail until it is back.");
    }
}
