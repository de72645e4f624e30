using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Text;
using Google.Protobuf;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using static DualChunk.Server.Tests.ServerHarness;

namespace DualChunk.Server.Tests;

/// <summary>
/// The OTLP exporter, on when OTEL_EXPORTER_OTLP_ENDPOINT is set: the real exporter sends to a real loopback socket,
/// where a minimal OTLP/HTTP protobuf trace receiver (below) decodes what arrives.
/// </summary>
[TestFixture]
public sealed class OtlpExportTests
{
    [Test]
    public async Task ServerAndModelSpansArriveAtTheCollectorUnderTheClientsTraceparent()
    {
        using var receiver = new OtlpTraceReceiver();
        var trace = ActivityTraceId.CreateRandom();
        var parent = ActivitySpanId.CreateRandom();
        using (var factory = Start(
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.Endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"))) // the batch goes out every 100 ms, not every 5 s
        {
            using var client = await RestClient(factory);
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v2/models/dualchunk/infer")
            {
                Content = new StringContent(OipRestTests.InferJson(Input(4 * E, 1), [1, 4, E]), Encoding.UTF8, "application/json"),
            };
            request.Headers.Add("traceparent", $"00-{trace}-{parent}-01");
            using var response = await client.SendAsync(request);
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            // The exporter sends on its own schedule: wait for the server span and the model's to arrive.
            var deadline = DateTime.UtcNow + Bound;
            while (DateTime.UtcNow < deadline && !(receiver.Spans.Any(s => s.TraceId == trace.ToHexString() && s.Scope == "Microsoft.AspNetCore")
                                                  && receiver.Spans.Any(s => s.TraceId == trace.ToHexString() && s.Scope == "DualChunk")))
                await Task.Delay(20);
        }

        var spans = receiver.Spans.Where(s => s.TraceId == trace.ToHexString()).ToList();
        var server = spans.SingleOrDefault(s => s.Scope == "Microsoft.AspNetCore");
        Assert.That(server, Is.Not.Null, $"the server span reached the collector; received: {string.Join(", ", receiver.Spans.Select(s => $"{s.Scope}/{s.Name}/{s.TraceId}"))} at {string.Join(", ", receiver.Paths)}");
        Assert.Multiple(() =>
        {
            Assert.That(receiver.Paths, Is.All.EqualTo("/v1/traces"), "OTLP/HTTP posts traces to <endpoint>/v1/traces");
            Assert.That(server!.ParentSpanId, Is.EqualTo(parent.ToHexString()), "the client's span is the server span's parent");
            var model = spans.Where(s => s.Scope == "DualChunk").ToList();
            Assert.That(model, Is.Not.Empty, "the model's span reached the collector");
            Assert.That(model.Select(s => s.ParentSpanId), Is.All.EqualTo(server.SpanId), "the model span's parent is the server span");
        });
    }

    private sealed record Span(string Scope, string Name, string TraceId, string SpanId, string ParentSpanId);

    /// <summary>
    /// OTLP/HTTP with protobuf bodies, traces only: ExportTraceServiceRequest { ResourceSpans resource_spans = 1 }
    /// { ScopeSpans scope_spans = 2 } { InstrumentationScope scope = 1 (name = 1); Span spans = 2 } { trace_id = 1,
    /// span_id = 2, parent_span_id = 4, name = 5 } (opentelemetry-proto), read with protobuf's wire reader.
    /// </summary>
    private sealed class OtlpTraceReceiver : IDisposable
    {
        private readonly WebApplication _app;

        public OtlpTraceReceiver()
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.WebHost.UseKestrel(k => k.Listen(IPAddress.Loopback, 0));
            builder.Logging.ClearProviders();
            _app = builder.Build();
            _app.MapPost("/{**path}", async (HttpContext context) =>
            {
                using var body = new MemoryStream();
                await context.Request.Body.CopyToAsync(body);
                Paths.Add(context.Request.Path.Value ?? "");

                foreach (var resource in Fields(body.ToArray(), 1))
                    foreach (var scopeSpans in Fields(resource, 2))
                    {
                        string scope = Fields(scopeSpans, 1).Select(s => Encoding.UTF8.GetString(Fields(s, 1).FirstOrDefault() ?? [])).FirstOrDefault() ?? "";
                        foreach (var span in Fields(scopeSpans, 2))
                            Spans.Add(new Span(scope, Encoding.UTF8.GetString(Fields(span, 5).FirstOrDefault() ?? []),
                                Hex(Fields(span, 1)), Hex(Fields(span, 2)), Hex(Fields(span, 4))));
                    }
                context.Response.ContentType = "application/x-protobuf";
                return Results.Ok(); // an empty ExportTraceServiceResponse
            });
            _app.StartAsync().Wait(Bound);
            Endpoint = _app.Urls.First();
        }

        public string Endpoint { get; }

        public ConcurrentBag<Span> Spans { get; } = [];

        public ConcurrentBag<string> Paths { get; } = [];

        private static string Hex(List<byte[]> values) => values.Count == 0 ? "" : Convert.ToHexStringLower(values[0]);

        /// <summary>The length-delimited values of field <paramref name="number"/> of a message; other fields skipped.</summary>
        private static List<byte[]> Fields(byte[] message, int number)
        {
            var result = new List<byte[]>();
            var input = new CodedInputStream(message);
            for (uint tag = input.ReadTag(); tag != 0; tag = input.ReadTag())
            {
                if (WireFormat.GetTagFieldNumber(tag) == number && WireFormat.GetTagWireType(tag) == WireFormat.WireType.LengthDelimited)
                    result.Add(input.ReadBytes().ToByteArray());
                else
                    input.SkipLastField();
            }
            return result;
        }

        public void Dispose() => _app.DisposeAsync().AsTask().Wait(Bound);
    }
}
