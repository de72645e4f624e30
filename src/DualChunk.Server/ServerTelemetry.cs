using DualChunk.Core;
using DualChunk.Server.Pipeline;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace DualChunk.Server;

/// <summary>Metrics (Prometheus at /metrics) and traces (OTLP, only when configured).</summary>
internal static class ServerTelemetry
{
    /// <summary>The library's ActivitySource (spans per Run and per stream Append).</summary>
    public const string LibrarySource = "DualChunk";

    /// <summary>
    /// Metrics: the library's meter, the server's (sequences), ASP.NET Core's and Kestrel's, scraped at /metrics.
    /// Traces: ASP.NET Core's server spans (REST and gRPC calls; a W3C <c>traceparent</c> from the client becomes their
    /// parent) and the library's model spans under them, exported by OTLP only when
    /// <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> (or <c>OpenTelemetry:Otlp:Endpoint</c>) is set: without it no tracer provider
    /// listens, and a span costs nothing.
    /// </summary>
    public static void Add(WebApplicationBuilder builder)
    {
        var otel = builder.Services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService("dualchunk-server", serviceVersion: Rest.OipRest.ServerInfo.Version))
            .WithMetrics(m => m
                .AddMeter(DualChunkMetrics.MeterName, ServerMetrics.MeterName, Sequences.Store.SequenceStoreMetrics.MeterName, "Microsoft.AspNetCore.Hosting", "Microsoft.AspNetCore.Server.Kestrel")
                .AddPrometheusExporter());
        string? standard = builder.Configuration["OTEL_EXPORTER_OTLP_ENDPOINT"], own = builder.Configuration["OpenTelemetry:Otlp:Endpoint"];
        if (string.IsNullOrWhiteSpace(standard) && string.IsNullOrWhiteSpace(own)) return;
        otel.WithTracing(t => t
            .AddSource(LibrarySource)
            .AddAspNetCoreInstrumentation(o => o.Filter = c => !c.Request.Path.StartsWithSegments("/metrics") && !c.Request.Path.StartsWithSegments("/health"))
            // The OTEL_EXPORTER_OTLP_* settings (endpoint, protocol, headers) are the exporter's own: it reads them and,
            // for http/protobuf, appends /v1/traces to the endpoint. Setting Endpoint in code would turn that off.
            .AddOtlpExporter(o =>
            {
                if (string.IsNullOrWhiteSpace(standard)) o.Endpoint = new Uri(own!);
            }));
    }
}
