using System.Globalization;
using System.Text.Json;
using System.Threading.RateLimiting;
using DualChunk.Core;
using DualChunk.Extensions.Hosting;
using DualChunk.Server;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.RateLimiting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using OpenTelemetry.Metrics;

// The DualChunk inference server:
//   dotnet run -c Release --project src/DualChunk.Server -- --urls http://127.0.0.1:8000 --grpc-urls http://127.0.0.1:8001 \
//     --model <file> [--name <model>] [--chunk-size C] [--threads T]
// Every setting is also configuration (appsettings.json, DualChunk__Models__<name>__Path=... environment variables).
var builder = WebApplication.CreateBuilder(args);
// Per-request logs cost more than a small model's call; raise with Logging:LogLevel:Microsoft.AspNetCore=Information.
builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
ServerSetup.AddCommandLine(builder.Configuration, args);
ServerSetup.ConfigureListeners(builder);
var modelNames = ServerSetup.AddModels(builder.Services, builder.Configuration);

builder.Services.AddOptions<ServiceOptions>().BindConfiguration("Service").Validate(o =>
{
    o.Validate(); // throws naming the key and the fix
    return true;
});

builder.Services.AddProblemDetails();
builder.Services.AddOptions<KestrelServerOptions>().Configure<IOptions<ServiceOptions>>(
    (k, s) => k.Limits.MaxRequestBodySize = s.Value.MaxRequestBodyBytes + 1);

// Backpressure: MaxConcurrentCalls predict calls run, MaxQueuedCalls wait; the next one gets 503 + Retry-After at once.
builder.Services.AddRateLimiter(_ => { });
builder.Services.AddOptions<RateLimiterOptions>().Configure<IOptions<ServiceOptions>>((r, so) =>
{
    var s = so.Value;
    r.AddConcurrencyLimiter("predict", l =>
    {
        l.PermitLimit = s.MaxConcurrentCalls;
        l.QueueLimit = s.MaxQueuedCalls;
        l.QueueProcessingOrder = QueueProcessingOrder.OldestFirst;
    });
    r.RejectionStatusCode = StatusCodes.Status503ServiceUnavailable;
    r.OnRejected = async (ctx, ct) =>
    {
        var http = ctx.HttpContext;
        http.Response.Headers.RetryAfter = s.RetryAfterSeconds.ToString(CultureInfo.InvariantCulture);
        await PredictEndpoint.Problem(StatusCodes.Status503ServiceUnavailable, "Overloaded",
            $"{s.MaxConcurrentCalls} calls are running and {s.MaxQueuedCalls} waiting; retry after {s.RetryAfterSeconds} s.")
            .ExecuteAsync(http);
    };
});

builder.Services.AddOpenTelemetry().WithMetrics(m => m
    .AddMeter(DualChunkMetrics.MeterName, "Microsoft.AspNetCore.Hosting", "Microsoft.AspNetCore.Server.Kestrel")
    .AddPrometheusExporter());

var app = builder.Build();
app.UseRateLimiter();

app.MapPost("/v1/predict", PredictEndpoint.Handle).RequireRateLimiting("predict").DisableAntiforgery();
app.MapHealthChecks("/health/ready", new HealthCheckOptions
{
    Predicate = r => r.Tags.Contains(DualChunkServiceCollectionExtensions.ReadyTag),
    ResponseWriter = WriteHealth,
});
app.MapHealthChecks("/health/live", new HealthCheckOptions { Predicate = _ => false, ResponseWriter = WriteHealth });
app.MapPrometheusScrapingEndpoint("/metrics");

app.Run();

static Task WriteHealth(HttpContext context, HealthReport report)
{
    context.Response.ContentType = "application/json";
    using var stream = new MemoryStream();
    using (var w = new Utf8JsonWriter(stream))
    {
        w.WriteStartObject();
        w.WriteString("status", report.Status.ToString());
        w.WriteStartObject("models");
        foreach (var (name, entry) in report.Entries)
        {
            w.WriteStartObject(name);
            w.WriteString("status", entry.Status.ToString());
            w.WriteString("description", entry.Description);
            w.WriteEndObject();
        }
        w.WriteEndObject();
        w.WriteEndObject();
    }
    return context.Response.Body.WriteAsync(stream.ToArray()).AsTask();
}

/// <summary>The service's entry point (public for WebApplicationFactory in the tests).</summary>
public partial class Program;
