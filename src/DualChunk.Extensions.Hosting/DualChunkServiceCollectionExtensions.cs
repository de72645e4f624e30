using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace DualChunk.Extensions.Hosting;

/// <summary>Registers DualChunk models with a host (<see cref="IServiceCollection"/>).</summary>
public static class DualChunkServiceCollectionExtensions
{
    /// <summary>The configuration section holding one subsection per model: <c>DualChunk:Models</c>.</summary>
    public const string ConfigurationSection = "DualChunk:Models";

    /// <summary>Tag of the models' health checks, for a readiness endpoint's predicate: <c>ready</c>.</summary>
    public const string ReadyTag = "ready";

    /// <summary>Prefix of each model's health check name: <c>dualchunk:&lt;name&gt;</c>.</summary>
    public const string HealthCheckPrefix = "dualchunk:";

    /// <summary>
    /// Adds the model <paramref name="name"/>: its options are bound from <c>DualChunk:Models:&lt;name&gt;</c> of the
    /// host's <see cref="IConfiguration"/> (see <see cref="DualChunkHostedModelOptions"/> for the keys), then
    /// <paramref name="configure"/> runs; the result is checked when the host starts, and an invalid value fails the
    /// start with an <see cref="OptionsValidationException"/> naming the key. Also adds (once) the
    /// <see cref="DualChunkModelProvider"/> singleton callers rent models from, the hosted service that loads and warms
    /// every model at start (in the background, so the server can answer "not ready" meanwhile), and a health check
    /// <c>dualchunk:&lt;name&gt;</c> tagged <see cref="ReadyTag"/> that is healthy once the model serves.
    /// </summary>
    /// <example>
    /// <code>
    /// builder.Services.AddDualChunkModel("default", o => o.Path ??= "model.dcw");
    /// // later, per request:
    /// using var lease = models.Acquire("default");
    /// lease.Model.Run(input, batch, seqLen, output, OutputMode.LastTimestep, cancellationToken);
    /// </code>
    /// </example>
    /// <exception cref="ArgumentException"><paramref name="name"/> is empty, has a ':' or was added before.</exception>
    public static IServiceCollection AddDualChunkModel(this IServiceCollection services, string name, Action<DualChunkHostedModelOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        if (name.Contains(':', StringComparison.Ordinal))
            throw new ArgumentException($"Model name '{name}' contains ':', which configuration keys use as separator; choose another name.", nameof(name));
        foreach (var descriptor in services)
        {
            if (descriptor.ServiceType == typeof(DualChunkModelRegistration)
                && descriptor.ImplementationInstance is DualChunkModelRegistration r
                && string.Equals(r.Name, name, StringComparison.OrdinalIgnoreCase))
                throw new ArgumentException($"A DualChunk model named '{name}' is already registered; model names are unique (case-insensitive).", nameof(name));
        }

        services.AddSingleton(new DualChunkModelRegistration(name));
        // One flat section: the hosting keys bind to the options, the library's keys (ChunkSize, MaxBatch,
        // MaxWorkspaceBytes, …) to its Model, so every DualChunkModelOptions setting is configuration without a mirror.
        string section = $"{ConfigurationSection}:{name}";
        var options = services.AddOptions<DualChunkHostedModelOptions>(name)
            .BindConfiguration(section)
            .Configure<IConfiguration>((o, configuration) => configuration.GetSection(section).Bind(o.Model));
        if (configure is not null)
            options.Configure(configure);
        options.ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<DualChunkHostedModelOptions>, DualChunkHostedModelOptionsValidator>());

        services.TryAddSingleton(sp => new DualChunkModelProvider(
            sp.GetServices<DualChunkModelRegistration>(),
            sp.GetRequiredService<IOptionsMonitor<DualChunkHostedModelOptions>>(),
            sp.GetService<System.Diagnostics.Metrics.IMeterFactory>(),
            sp.GetService<Microsoft.Extensions.Logging.ILogger<DualChunkModelProvider>>()));
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, DualChunkModelLoader>());
        services.AddHealthChecks().Add(new HealthCheckRegistration(
            HealthCheckPrefix + name,
            sp => new DualChunkModelHealthCheck(sp.GetRequiredService<DualChunkModelProvider>(), name),
            failureStatus: null,
            tags: [ReadyTag, "dualchunk"]));
        return services;
    }
}

/// <summary>The name of one registered model (one singleton per <c>AddDualChunkModel</c> call).</summary>
internal sealed record DualChunkModelRegistration(string Name);

/// <summary>Starts loading every model when the host starts; disposes them when it stops.</summary>
internal sealed class DualChunkModelLoader(DualChunkModelProvider models) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        models.StartLoading();
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => models.StopAsync(cancellationToken);
}
