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
        services.AddSingleton(new ShutdownDelay(ShutdownDelay.Read(configuration)));
        services.AddHostedService<ShutdownDelayService>();
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

/// <summary>How long the listeners stay open after SIGTERM, answering readiness 503 (<c>Server:ShutdownDelaySeconds</c>).</summary>
internal sealed record ShutdownDelay(TimeSpan Value)
{
    /// <summary>The setting's key.</summary>
    public const string Key = "Server:ShutdownDelaySeconds";

    /// <summary>Reads the setting (default 0: the listeners close at once), refusing a bad value naming the key.</summary>
    public static TimeSpan Read(IConfiguration configuration)
    {
        string? text = configuration[Key];
        if (string.IsNullOrEmpty(text)) return TimeSpan.Zero;
        if (!double.TryParse(text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double seconds)
            || !(seconds >= 0 && seconds <= 300))
            throw new InvalidOperationException($"{Key} is '{text}'; it must be a number of seconds from 0 to 300 (the time readiness answers 503 before the listeners close).");
        return TimeSpan.FromSeconds(seconds);
    }
}

/// <summary>
/// The first step of shutdown: with <c>Server:ShutdownDelaySeconds</c> &gt; 0 the listeners stay open that long after
/// SIGTERM, answering readiness 503 (and new sequence requests 503 + Retry-After), so a balancer that polls readiness
/// or waits for the endpoint's removal moves traffic away before connections are refused. Then the web server stops
/// (requests in flight finish) and the drain writes the open sequences. The delay counts against the host's
/// shutdown timeout. (IHostedLifecycleService.StoppingAsync runs after ApplicationStopping, before any StopAsync.)
/// </summary>
internal sealed partial class ShutdownDelayService(ShutdownDelay delay, ILogger<ShutdownDelayService> logger) : IHostedLifecycleService
{
    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public async Task StoppingAsync(CancellationToken cancellationToken)
    {
        if (delay.Value <= TimeSpan.Zero) return;
        LogDelay(logger, delay.Value.TotalSeconds);
        try
        {
            await Task.Delay(delay.Value, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // the shutdown timeout passed: stop now
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    [LoggerMessage(Level = LogLevel.Information, Message = "Shutting down: readiness answers 503 for {Seconds} s (Server:ShutdownDelaySeconds) before the listeners close.")]
    private static partial void LogDelay(ILogger logger, double seconds);
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
