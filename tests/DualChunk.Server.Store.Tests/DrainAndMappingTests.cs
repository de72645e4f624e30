using DualChunk.Server.Pipeline;
using DualChunk.Server.Sequences.Store;
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
