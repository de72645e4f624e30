using System.Globalization;
using System.Text.Json;
using DualChunk.Core;
using DualChunk.Extensions.Hosting;
using DualChunk.Server;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using DualChunk.Server.Grpc;
using DualChunk.Server.Pipeline;
using DualChunk.Server.Rest;
using DualChunk.Server.Sequences;
using Grpc.AspNetCore.Server;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;

// The DualChunk inference server:
//   dotnet run -c Release --project src/DualChunk.Server -- --urls http://127.0.0.1:8000 --grpc-urls http://127.0.0.1:8001 \
//     --model <file> [--name <model>] [--chunk-size C] [--threads T]
// Every setting is also configuration (appsettings.json, DualChunk__Models__<name>__Path=... environment variables).
var builder = WebApplication.CreateBuilder(args);
// Per-request logs cost more than a small model's call; raise with Logging:LogLevel:Microsoft.AspNetCore=Information.
builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
builder.Logging.AddFilter("Grpc", LogLevel.Warning);
ServerSetup.AddCommandLine(builder.Configuration, args);
ServerSetup.ConfigureListeners(builder);
ServerSetup.AddModels(builder.Services, builder.Configuration);

builder.Services.AddOptions<ServiceOptions>().BindConfiguration("Service").Validate(o =>
{
    o.Validate(); // throws naming the key and the fix
    return true;
});
builder.Services.AddOptions<SequenceOptions>().BindConfiguration("Server:Sequences").Validate(o =>
{
    o.Validate();
    return true;
});
builder.Services.AddSingleton<RequestGate>();
builder.Services.AddSingleton<SequenceTable>();
DualChunk.Server.Sequences.Store.SequenceStoreSetup.AddSequenceStore(builder.Services, builder.Configuration); // Sequences:Store (issue 22)
builder.Services.AddSingleton<InferencePipeline>();
builder.Services.AddProblemDetails();
builder.Services.AddOptions<KestrelServerOptions>().Configure<IOptions<ServiceOptions>>(
    (k, s) => k.Limits.MaxRequestBodySize = s.Value.MaxRequestBodyBytes + 1);
builder.Services.AddGrpc();
builder.Services.AddOptions<GrpcServiceOptions>().Configure<IOptions<ServiceOptions>>((g, s) =>
{
    // A larger message is refused with RESOURCE_EXHAUSTED before it is read into memory.
    g.MaxReceiveMessageSize = (int)Math.Min(s.Value.MaxRequestBodyBytes, int.MaxValue);
    g.MaxSendMessageSize = null;
});
ServerTelemetry.Add(builder);

var app = builder.Build();
app.UseMiddleware<GrpcMessageLimit>(); // over-size gRPC messages: RESOURCE_EXHAUSTED for every client (see the class)

app.MapPost("/v1/predict", PredictEndpoint.Handle).DisableAntiforgery();
app.MapHealthChecks("/health/ready", new HealthCheckOptions
{
    Predicate = r => r.Tags.Contains(DualChunkServiceCollectionExtensions.ReadyTag),
    ResponseWriter = WriteHealth,
});
app.MapHealthChecks("/health/live", new HealthCheckOptions { Predicate = _ => false, ResponseWriter = WriteHealth });
app.MapPrometheusScrapingEndpoint("/metrics");
OipRest.Map(app);
app.MapGrpcService<OipGrpcService>();

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
