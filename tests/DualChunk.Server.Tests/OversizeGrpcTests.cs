using System.Net;
using DualChunk.Extensions.Hosting;
using DualChunk.Server.Grpc;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using static DualChunk.Server.Tests.ServerHarness;

namespace DualChunk.Server.Tests;

/// <summary>
/// gRPC messages over <c>Service:MaxRequestBodyBytes</c> through real Kestrel on a loopback port (HTTP/2 flow control,
/// RST_STREAM: the test server has neither): every one must end in RESOURCE_EXHAUSTED naming the limit, never in
/// UNAVAILABLE because the client saw the stream reset before the status.
/// </summary>
[TestFixture]
public sealed class OversizeGrpcTests
{
    private const int Limit = 65536;

    [TestCase(Limit + 16, 200)]
    [TestCase(1 << 20, 200)]
    public async Task EveryOversizeMessageGetsResourceExhausted(int rawBytes, int count)
    {
        using var factory = Start(("Service:MaxRequestBodyBytes", Limit.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        var (client, channel) = await KestrelClient(factory);
        using var _ = channel;
        var request = Oversize(rawBytes);
        var statuses = new Dictionary<string, int>();
        string? detail = null;
        // 4 callers at once, as the load test's bad mode and any busy client do.
        await Task.WhenAll(Enumerable.Range(0, 4).Select(async _1 =>
        {
            for (int i = 0; i < count / 4; i++)
            {
                string status;
                try
                {
                    await client.ModelInferAsync(request, deadline: DateTime.UtcNow.AddSeconds(30));
                    status = "OK";
                }
                catch (RpcException ex)
                {
                    status = ex.StatusCode.ToString();
                    if (ex.StatusCode == StatusCode.ResourceExhausted) detail = ex.Status.Detail;
                    else status += ": " + ex.Status.Detail;
                }
                lock (statuses) statuses[status] = statuses.GetValueOrDefault(status) + 1;
            }
        }));
        string summary = string.Join("; ", statuses.Select(s => $"{s.Key} x{s.Value}"));
        TestContext.Out.WriteLine(summary);
        Assert.That(statuses.GetValueOrDefault(nameof(StatusCode.ResourceExhausted)), Is.EqualTo(count), summary);
        Assert.That(detail, Does.Contain("Service:MaxRequestBodyBytes"), "the status names the limit and how to raise it");

        // The connection still serves a good request.
        var good = await client.ModelInferAsync(GrpcTests.Request(new float[4 * E], [1, 4, E]));
        Assert.That(good.RawOutputContents[0].Length, Is.EqualTo(H * 4));
    }

    [Test]
    public async Task AMessageOverTheDrainCapIsAnsweredAtOnce()
    {
        // The server reads at most OversizeDrainBytes of a message it refuses: past that it answers without reading
        // (the client may then see the reset instead of the status), and the connection keeps serving.
        using var factory = Start(("Service:MaxRequestBodyBytes", "65536"), ("Service:OversizeDrainBytes", "100000"));
        var (client, channel) = await KestrelClient(factory);
        using var _ = channel;
        for (int i = 0; i < 10; i++)
        {
            var ex = await GrpcTests.Throws(async () => await client.ModelInferAsync(Oversize(4 << 20), deadline: DateTime.UtcNow.AddSeconds(20)));
            Assert.That(ex.StatusCode, Is.AnyOf(StatusCode.ResourceExhausted, StatusCode.Unavailable, StatusCode.Internal, StatusCode.Unknown), ex.Status.ToString());
        }
        var good = await client.ModelInferAsync(GrpcTests.Request(new float[4 * E], [1, 4, E]));
        Assert.That(good.RawOutputContents[0].Length, Is.EqualTo(H * 4));
    }

    private static ModelInferRequest Oversize(int rawBytes)
    {
        var request = new ModelInferRequest { ModelName = "dualchunk" };
        request.Inputs.Add(new ModelInferRequest.Types.InferInputTensor { Name = "input", Datatype = "FP32", Shape = { 1, rawBytes / (4 * E), E } });
        request.RawInputContents.Add(ByteString.CopyFrom(new byte[rawBytes]));
        return request;
    }

    /// <summary>The server on real Kestrel (HTTP/2 cleartext on a loopback port) and a plain Grpc.Net.Client channel to it.</summary>
    private static async Task<(GRPCInferenceService.GRPCInferenceServiceClient, GrpcChannel)> KestrelClient(Microsoft.AspNetCore.Mvc.Testing.WebApplicationFactory<Program> factory)
    {
        factory.UseKestrel(k => k.Listen(IPAddress.Loopback, 0, l => l.Protocols = HttpProtocols.Http2));
        factory.StartServer();
        await factory.Services.GetRequiredService<DualChunkModelProvider>().Loaded.WaitAsync(Bound);
        string address = factory.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        var channel = GrpcChannel.ForAddress(address, new GrpcChannelOptions { MaxSendMessageSize = null });
        return (new GRPCInferenceService.GRPCInferenceServiceClient(channel), channel);
    }
}
