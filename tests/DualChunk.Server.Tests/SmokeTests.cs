using DualChunk.Server.Grpc;
using Grpc.Core;
using Grpc.Net.Client;
using static DualChunk.Server.Tests.ServerHarness;

namespace DualChunk.Server.Tests;

/// <summary>
/// The CI smoke's gRPC part (.ci/service-smoke): a client generated from the server's proto against the real
/// server process at <c>DUALCHUNK_SMOKE_GRPC</c> (e.g. http://127.0.0.1:8001), the JIT build or the NativeAOT one
/// (.ci/server-aot-check). Skipped when that is not set.
/// </summary>
[TestFixture]
[Category("Smoke")]
public sealed class SmokeTests
{
    [Test]
    public async Task GrpcAgainstTheRunningServer()
    {
        string? address = Environment.GetEnvironmentVariable("DUALCHUNK_SMOKE_GRPC");
        if (string.IsNullOrEmpty(address)) Assert.Ignore("DUALCHUNK_SMOKE_GRPC is not set (the CI smoke sets it).");
        using var channel = GrpcChannel.ForAddress(address);
        var client = new GRPCInferenceService.GRPCInferenceServiceClient(channel);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        Assert.That((await client.ServerReadyAsync(new ServerReadyRequest(), deadline: deadline)).Ready, Is.True);
        var metadata = await client.ModelMetadataAsync(new ModelMetadataRequest { Name = "dualchunk" }, deadline: deadline);
        Assert.That(metadata.Inputs[0].Shape, Is.EqualTo(new long[] { -1, -1, E }));

        var input = Input(2 * 8 * E, 77);
        var response = await client.ModelInferAsync(GrpcTests.Request(input, [2, 8, E], "last"), deadline: deadline);
        Assert.That(response.RawOutputContents[0].ToByteArray(), Is.EqualTo(Bytes(CliOutput("run", input, [2, 8, E], "last"))), "bitwise dualchunk run's");

        // One sequence of three appends.
        var expected = CliOutput("stream", input[..(12 * E)], [1, 12, E], "all");
        var outputs = new List<byte>();
        for (int k = 0; k < 3; k++)
        {
            var request = GrpcTests.Request(input.AsSpan(k * C * E, C * E).ToArray(), [1, C, E], "all");
            request.Parameters["sequence_id"] = new InferParameter { Uint64Param = 12345 };
            request.Parameters["sequence_start"] = new InferParameter { BoolParam = k == 0 };
            request.Parameters["sequence_end"] = new InferParameter { BoolParam = k == 2 };
            outputs.AddRange((await client.ModelInferAsync(request, deadline: deadline)).RawOutputContents[0].ToByteArray());
        }
        Assert.That(outputs, Is.EqualTo(Bytes(expected)), "the sequence's outputs are dualchunk stream's");

        var bad = await GrpcTests.Throws(async () => await client.ModelInferAsync(GrpcTests.Request(new float[6 * E], [1, 6, E]), deadline: deadline));
        Assert.That(bad.StatusCode, Is.EqualTo(StatusCode.InvalidArgument));
        Assert.That(bad.Status.Detail, Does.Contain("chunk size C = 4"));
        var unknown = await GrpcTests.Throws(async () => await client.ModelInferAsync(new ModelInferRequest { ModelName = "nope" }, deadline: deadline));
        Assert.That(unknown.StatusCode, Is.EqualTo(StatusCode.NotFound));
        var ended = await GrpcTests.Throws(async () =>
        {
            var r = GrpcTests.Request(new float[C * E], [1, C, E]);
            r.Parameters["sequence_id"] = new InferParameter { Uint64Param = 12345 };
            await client.ModelInferAsync(r, deadline: deadline);
        });
        Assert.That(ended.Status.Detail, Does.Contain("ended by a request with sequence_end"));

        // Bytes that are not a ModelInferRequest (raw_input_contents cut short), sent as they are.
        var garbled = await GrpcTests.Throws(async () =>
            await channel.CreateCallInvoker().AsyncUnaryCall(GrpcTests.RawMethod("ModelInfer"), null, new CallOptions(deadline: deadline), [0x3A, 0x05, 1, 2]));
        Assert.That(garbled.StatusCode, Is.EqualTo(StatusCode.InvalidArgument), garbled.Status.Detail);
        Assert.That(garbled.Status.Detail, Does.Contain("not a valid inference.ModelInferRequest message"));
    }
}
