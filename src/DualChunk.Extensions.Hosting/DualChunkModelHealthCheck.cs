using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace DualChunk.Extensions.Hosting;

/// <summary>
/// Readiness of one model: healthy once it is loaded (and warmed, when configured) and no later reload failed;
/// otherwise the registration's failure status with the reason (loading, the load error, or the reload error while
/// the previous model still serves).
/// </summary>
public sealed class DualChunkModelHealthCheck : IHealthCheck
{
    private readonly DualChunkModelProvider _models;
    private readonly string _name;

    /// <summary>A health check for the model <paramref name="name"/> of <paramref name="models"/>.</summary>
    public DualChunkModelHealthCheck(DualChunkModelProvider models, string name)
    {
        ArgumentNullException.ThrowIfNull(models);
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        _models = models;
        _name = name;
    }

    /// <inheritdoc/>
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(context);
        var s = _models.GetStatus(_name);
        var data = new Dictionary<string, object>
        {
            ["state"] = s.State.ToString(),
            ["generation"] = s.Generation,
        };
        if (s.Path is not null) data["path"] = s.Path;
        if (s.Config is not null) data["config"] = s.Config.ToString();
        if (s.LoadedAt is { } at) data["loaded_at"] = at.ToString("O", System.Globalization.CultureInfo.InvariantCulture);
        if (s.State == DualChunkModelState.Ready && s.Error is null)
            return Task.FromResult(HealthCheckResult.Healthy($"Model '{_name}' is serving (generation {s.Generation}).", data));
        string reason = s.State switch
        {
            DualChunkModelState.Loading => $"Model '{_name}' is loading.",
            DualChunkModelState.Failed => $"Model '{_name}' failed to load: {s.Error}",
            _ => $"Model '{_name}': reloading {s.Path} failed: {s.Error} The model of generation {s.Generation} still serves; fix or replace the file.",
        };
        return Task.FromResult(new HealthCheckResult(context.Registration.FailureStatus, reason, data: data));
    }
}
