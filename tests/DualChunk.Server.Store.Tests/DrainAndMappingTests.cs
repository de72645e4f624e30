using DualChunk.Server.Pipeline;
using DualChunk.Server.Sequences.Store;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;

namespace DualChunk.Server.Store.Tests;

/// <summary>Readiness from the moment shutdown begins, and how the handover's answers map to HTTP and gRPC.</summary>
[TestFixture]
public sealed class DrainAndMappingTests
{
    /// <summary>The host's lifetime as the host drives it: StopApplication fires ApplicationStopping.</summary>
    private sealed class Lifetime : IHostApplicationLifetime, IDisposable
    {
        private readonly CancellationTokenSource _started = new(), _stopping = new(), _stopped = new();

        public CancellationToken ApplicationStarted => _started.Token;

        public CancellationToken ApplicationStopping => _stopping.Token;

        public CancellationToken ApplicationStopped => _stopped.Token;

        public void StopApplication() => _stopping.Cancel();

        public void Dispose()
        {
            _started.Dispose();
            _stopping.Dispose();
            _stopped.Dispose();
        }
    }

    [Test]
    public async Task ReadinessTurnsUnhealthyTheMomentShutdownBegins()
    {
        using var lifetime = new Lifetime();
        var drain = new ShutdownDrainState(lifetime);
        var check = new DrainingHealthCheck(drain);
        var context = new HealthCheckContext();
        Assert.That((await check.CheckHealthAsync(context)).Status, Is.EqualTo(HealthStatus.Healthy));
        lifetime.StopApplication();
        Assert.That(drain.IsDraining);
        var result = await check.CheckHealthAsync(context);
        Assert.That(result.Status, Is.EqualTo(HealthStatus.Unhealthy));
        Assert.That(result.Description, Does.Contain("shutting down"));
    }

    [TestCase(null, 0.0)]
    [TestCase("0", 0.0)]
    [TestCase("2.5", 2.5)]
    [TestCase("300", 300.0)]
    public void ShutdownDelayIsReadInSeconds(string? value, double seconds)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { [ShutdownDelay.Key] = value }).Build();
        Assert.That(ShutdownDelay.Read(configuration), Is.EqualTo(TimeSpan.FromSeconds(seconds)));
    }

    [TestCase("-1")]
    [TestCase("301")]
    [TestCase("soon")]
    [TestCase("NaN")]
    public void ShutdownDelayOutOfRangeIsRefusedNamingTheSetting(string value)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { [ShutdownDelay.Key] = value }).Build();
        var ex = Assert.Throws<InvalidOperationException>(() => ShutdownDelay.Read(configuration));
        Assert.That(ex!.Message, Does.Contain("Server:ShutdownDelaySeconds").And.Contain($"'{value}'").And.Contain("0 to 300"));
    }

    [Test]
    public void HandoverAnswersMapToTheDocumentedStatuses()
    {
        Assert.Multiple(() =>
        {
            Assert.That(ErrorMapping.HttpStatus(InferenceErrorKind.ActiveElsewhere), Is.EqualTo(409));
            Assert.That(ErrorMapping.GrpcStatus(InferenceErrorKind.ActiveElsewhere), Is.EqualTo(global::Grpc.Core.StatusCode.Aborted));
            Assert.That(ErrorMapping.IsRetryable(InferenceErrorKind.ActiveElsewhere), "active elsewhere is retryable (Retry-After)");
            Assert.That(ErrorMapping.HttpStatus(InferenceErrorKind.Conflict), Is.EqualTo(409));
            Assert.That(ErrorMapping.GrpcStatus(InferenceErrorKind.Conflict), Is.EqualTo(global::Grpc.Core.StatusCode.FailedPrecondition));
            Assert.That(ErrorMapping.IsRetryable(InferenceErrorKind.Conflict), Is.False, "a length or fingerprint mismatch is not retried as is");
        });
    }
}
