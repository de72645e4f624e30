using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using Grpc.Core;
using static DualChunk.Server.Tests.ServerHarness;

namespace DualChunk.Server.Tests;

/// <summary>A W3C traceparent from the client becomes the parent of the server's span, and of the model's spans under it.</summary>
[TestFixture]
public sealed class TraceTests
{
    [Test]
    public async Task TraceparentParentsTheServerAndModelSpansOverRestAndGrpc()
    {
        var stopped = new ConcurrentBag<Activity>();
        using var listener = new ActivityListener
        {
            ShouldListenTo = s => s.Name is "Microsoft.AspNetCore" or "DualChunk",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = stopped.Add,
        };
        ActivitySource.AddActivityListener(listener);
        using var factory = Start();
        using var client = await RestClient(factory);
        var grpc = await GrpcClient(factory);

        var restTrace = ActivityTraceId.CreateRandom();
        var restParent = ActivitySpanId.CreateRandom();
        using (var request = new HttpRequestMessage(HttpMethod.Post, "/v2/models/dualchunk/infer")
        {
            Content = new StringContent(OipRestTests.InferJson(Input(4 * E, 1), [1, 4, E]), Encoding.UTF8, "application/json"),
        })
        {
            request.Headers.Add("traceparent", $"00-{restTrace}-{restParent}-01");
            using var response = await client.SendAsync(request);
            Assert.That(response.IsSuccessStatusCode, Is.True);
        }
        var grpcTrace = ActivityTraceId.CreateRandom();
        var grpcParent = ActivitySpanId.CreateRandom();
        await grpc.ModelInferAsync(GrpcTests.Request(Input(4 * E, 2), [1, 4, E]), new Metadata { { "traceparent", $"00-{grpcTrace}-{grpcParent}-01" } });

        foreach (var (trace, parent, what) in new[] { (restTrace, restParent, "REST"), (grpcTrace, grpcParent, "gRPC") })
        {
            var deadline = DateTime.UtcNow + Bound;
            Activity? server = null;
            while (server is null && DateTime.UtcNow < deadline)
            {
                server = stopped.FirstOrDefault(a => a.Source.Name == "Microsoft.AspNetCore" && a.TraceId == trace);
                if (server is null) await Task.Delay(10);
            }
            Assert.That(server, Is.Not.Null, $"{what}: the server's span carries the client's trace id");
            Assert.That(server!.ParentSpanId, Is.EqualTo(parent), $"{what}: the client's span is the server span's parent");
            // The model's spans (the library's ActivitySource "DualChunk") nest under the server's span.
            foreach (var model in stopped.Where(a => a.Source.Name == "DualChunk" && a.TraceId == trace))
                Assert.That(model.ParentSpanId, Is.EqualTo(server.SpanId), $"{what}: a model span's parent is the server span");
        }
    }
}
