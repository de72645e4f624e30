using DualChunk.Server.Grpc;
using Google.Protobuf;
using Grpc.Core;
using static DualChunk.Server.Tests.ServerHarness;

namespace DualChunk.Server.Tests;

/// <summary>inference.GRPCInferenceService with a client generated from the server's proto, against `dualchunk run`.</summary>
[TestFixture]
public sealed class GrpcTests
{
    internal static ModelInferRequest Request(float[] data, long[] shape, string? mode = null, bool raw = true, string datatype = "FP32")
    {
        var request = new ModelInferRequest { ModelName = "dualchunk", Id = "g1" };
        var input = new ModelInferRequest.Types.InferInputTensor { Name = "input", Datatype = datatype };
        input.Shape.AddRange(shape);
        if (raw) request.RawInputContents.Add(ByteString.CopyFrom(Bytes(data)));
        else if (datatype == "FP64") input.Contents = new InferTensorContents { Fp64Contents = { data.Select(v => (double)v) } };
        else input.Contents = new InferTensorContents { Fp32Contents = { data } };
        request.Inputs.Add(input);
        if (mode is not null) request.Parameters["output_mode"] = new InferParameter { StringParam = mode };
        return request;
    }

    [TestCase("last")]
    [TestCase("all")]
    [TestCase("mean")]
    public async Task OutputsAreDualchunkRunsBitwise(string mode)
    {
        using var factory = Start();
        var client = await GrpcClient(factory);
        var input = Input(2 * 8 * E, 21);
        float[] expected = CliOutput("run", input, [2, 8, E], mode);
        foreach (var (raw, datatype) in new[] { (true, "FP32"), (false, "FP32"), (false, "FP64") })
        {
            var response = await client.ModelInferAsync(Request(input, [2, 8, E], mode, raw, datatype));
            Assert.Multiple(() =>
            {
                Assert.That(response.ModelName, Is.EqualTo("dualchunk"));
                Assert.That(response.ModelVersion, Is.EqualTo("1"));
                Assert.That(response.Id, Is.EqualTo("g1"));
                Assert.That(response.Outputs[0].Name, Is.EqualTo("output"));
                Assert.That(response.Outputs[0].Datatype, Is.EqualTo("FP32"));
                Assert.That(response.Outputs[0].Shape, Is.EqualTo(mode == "all" ? new long[] { 2, 8, H } : new long[] { 2, H }));
                Assert.That(response.RawOutputContents[0].ToByteArray(), Is.EqualTo(Bytes(expected)), $"raw_output_contents bitwise dualchunk run's ({(raw ? "raw" : datatype + " contents")})");
            });
        }
    }

    /// <summary>A unary method of the service that sends bytes as they are: the generated client cannot send a malformed message.</summary>
    internal static Method<byte[], byte[]> RawMethod(string name)
    {
        var bytes = Marshallers.Create((byte[] b) => b, b => b);
        return new Method<byte[], byte[]>(MethodType.Unary, "inference.GRPCInferenceService", name, bytes, bytes);
    }

    internal static async Task<RpcException> Throws(Func<Task> call)
    {
        try
        {
            await call();
        }
        catch (RpcException ex)
        {
            return ex;
        }
        Assert.Fail("expected an RpcException");
        throw new InvalidOperationException();
    }

    [Test]
    public async Task HealthAndMetadata()
    {
        using var factory = Start();
        var client = await GrpcClient(factory);
        Assert.That((await client.ServerLiveAsync(new ServerLiveRequest())).Live, Is.True);
        Assert.That((await client.ServerReadyAsync(new ServerReadyRequest())).Ready, Is.True);
        Assert.That((await client.ModelReadyAsync(new ModelReadyRequest { Name = "dualchunk" })).Ready, Is.True);
        var server = await client.ServerMetadataAsync(new ServerMetadataRequest());
        Assert.That(server.Extensions, Does.Contain("binary_tensor_data").And.Contain("sequence"));
        var model = await client.ModelMetadataAsync(new ModelMetadataRequest { Name = "dualchunk", Version = "1" });
        Assert.Multiple(() =>
        {
            Assert.That(model.Inputs[0].Shape, Is.EqualTo(new long[] { -1, -1, E }));
            Assert.That(model.Outputs[0].Shape, Is.EqualTo(new long[] { -1, -1, H }));
            Assert.That(model.Properties["chunk_size"], Is.EqualTo("4"));
            Assert.That(model.Versions, Is.EqualTo(new[] { "1" }));
        });
        var notFound = await Throws(async () => await client.ModelMetadataAsync(new ModelMetadataRequest { Name = "other" }));
        Assert.That(notFound.StatusCode, Is.EqualTo(StatusCode.NotFound));
    }

    private static IEnumerable<TestCaseData> BadRequests()
    {
        var ok = new float[4 * E];
        TestCaseData T(Func<ModelInferRequest> make, StatusCode code, string message, string name) => new TestCaseData(make, code, message).SetName("grpc: " + name);
        yield return T(() => { var r = Request(ok, [1, 4, E]); r.ModelName = "other"; return r; }, StatusCode.NotFound, "No model is named 'other'", "unknown model");
        yield return T(() => { var r = Request(ok, [1, 4, E]); r.ModelVersion = "7"; return r; }, StatusCode.NotFound, "no version '7'", "unknown version");
        yield return T(() => { var r = Request(ok, [1, 4, E]); r.Inputs.Clear(); return r; }, StatusCode.InvalidArgument, "has 0 inputs", "no input");
        yield return T(() => { var r = Request(ok, [1, 4, E]); r.Inputs[0].Name = "x"; return r; }, StatusCode.InvalidArgument, "Unknown input \"x\"", "wrong name");
        yield return T(() => { var r = Request(ok, [1, 4, E]); r.Inputs[0].Datatype = "BYTES"; return r; }, StatusCode.InvalidArgument, "datatype \"BYTES\"", "wrong datatype");
        yield return T(() => Request(new float[4 * 31], [1, 4, 31]), StatusCode.InvalidArgument, "embed size E is 32", "wrong E");
        yield return T(() => Request(new float[6 * E], [1, 6, E]), StatusCode.InvalidArgument, "chunk size C = 4", "N not a multiple of C");
        yield return T(() => Request(new float[4 * E - 1], [1, 4, E]), StatusCode.InvalidArgument, "raw_input_contents[0] has 508 bytes", "raw data shorter than the shape");
        yield return T(() => Request(new float[4 * E + 1], [1, 4, E], raw: false), StatusCode.InvalidArgument, "has 129 values in contents.fp32_contents", "contents longer than the shape");
        yield return T(() => Request([float.NaN, .. new float[4 * E - 1]], [1, 4, E]), StatusCode.InvalidArgument, "NaN at [0, 0, 0]", "NaN");
        yield return T(() => Request(ok, [1, 4, E], "sum"), StatusCode.InvalidArgument, "Unknown output mode 'sum'", "unknown output mode");
        yield return T(() => Request(ok, [3, 4, E]), StatusCode.InvalidArgument, "MaxBatch", "batch over the limit");
        yield return T(() => Request(ok, [1000000000, 1000000000, E]), StatusCode.InvalidArgument, "MaxBatch", "huge claimed shape");
        yield return T(() => { var r = Request(ok, [1, 4, E]); r.Parameters["sequence_end"] = new InferParameter { BoolParam = true }; return r; }, StatusCode.InvalidArgument, "need a sequence_id", "sequence without an id");
        yield return T(() => { var r = Request(ok, [1, 4, E]); r.Parameters["sequence_id"] = new InferParameter { Uint64Param = 99 }; return r; }, StatusCode.InvalidArgument, "Sequence 99 is not open", "unknown sequence");
        yield return T(() => Request(new float[1200 * E], [1, 1200, E]), StatusCode.ResourceExhausted, "Service:MaxRequestBodyBytes", "message over the size limit");
    }

    [TestCaseSource(nameof(BadRequests))]
    public async Task BadRequestsGetAStatusNamingWhatIsWrong(Func<ModelInferRequest> make, StatusCode code, string message)
    {
        using var factory = Start(("DualChunk:Models:dualchunk:MaxBatch", "2"), ("DualChunk:Models:dualchunk:MaxSeqLen", "8"), ("Service:MaxRequestBodyBytes", "65536"));
        var client = await GrpcClient(factory);
        var ex = await Throws(async () => await client.ModelInferAsync(make()));
        Assert.That(ex.StatusCode, Is.EqualTo(code), ex.Status.Detail);
        Assert.That(ex.Status.Detail, Does.Contain(message));
        var good = await client.ModelInferAsync(Request(new float[4 * E], [1, 4, E]));
        Assert.That(good.RawOutputContents[0].Length, Is.EqualTo(H * 4), "the server still serves good requests");
    }

    [TestCase("ModelInfer", "3A050102", "ModelInferRequest message: a field claims 5 bytes")]          // raw_input_contents cut short
    [TestCase("ModelInfer", "0AFFFFFFFF0F", "ModelInferRequest message: a field claims 4294967295 bytes")]
    [TestCase("ModelInfer", "0B", "ModelInferRequest message: the message ends inside group 1")]
    [TestCase("ModelInfer", "2A020000", "ModelInferRequest message: Protocol message contained an invalid tag")] // protobuf's own refusal,
    [TestCase("ModelInfer", "3A01012A020000", "ModelInferRequest message: Protocol message contained an invalid tag")] // also beside raw contents
    [TestCase("ModelMetadata", "0A05", "ModelMetadataRequest message:")]
    [TestCase("ServerLive", "FFFFFFFFFFFFFFFFFFFFFF", "ServerLiveRequest message:")]
    public async Task BytesThatAreNotTheRequestMessageGetInvalidArgument(string method, string hex, string message)
    {
        using var factory = Start();
        var client = await GrpcClient(factory);
        var call = RawMethod(method);
        using var channel = global::Grpc.Net.Client.GrpcChannel.ForAddress(factory.Server.BaseAddress, new global::Grpc.Net.Client.GrpcChannelOptions { HttpHandler = factory.Server.CreateHandler() });
        var ex = await Throws(async () => await channel.CreateCallInvoker().AsyncUnaryCall(call, null, new CallOptions(), Convert.FromHexString(hex)));
        Assert.That(ex.StatusCode, Is.EqualTo(StatusCode.InvalidArgument), ex.Status.Detail);
        Assert.That(ex.Status.Detail, Does.Contain("is not a valid inference." + message.Split(' ')[0]).And.Contain(message));
        var good = await client.ModelInferAsync(Request(new float[4 * E], [1, 4, E]));
        Assert.That(good.RawOutputContents[0].Length, Is.EqualTo(H * 4), "the server still serves good requests");
    }
}
