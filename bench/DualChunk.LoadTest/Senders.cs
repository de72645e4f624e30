using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using DualChunk.Core;
using DualChunk.Server.Grpc;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;

namespace DualChunk.LoadTest;

/// <summary>
/// One request of a kind, sent: its outcome is the HTTP status ("200", "400") or the gRPC status ("OK",
/// "InvalidArgument"); the caller times it. Senders are shared by the clients of a run and are thread-safe.
/// </summary>
internal delegate Task<string> Send(int client, CancellationToken cancellationToken);

/// <summary>The server under test: its REST and gRPC endpoints, the model's name and shape, and the input rows.</summary>
internal sealed class Target : IDisposable
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public Target(Uri rest, Uri? grpc, string model, int embed, int seq, int batch)
    {
        Http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 256 }) { BaseAddress = rest, Timeout = TimeSpan.FromSeconds(60) };
        if (grpc is not null)
        {
            Channel = GrpcChannel.ForAddress(grpc, new GrpcChannelOptions
            {
                HttpHandler = new SocketsHttpHandler { EnableMultipleHttp2Connections = true },
                MaxReceiveMessageSize = null,
                MaxSendMessageSize = null,
            });
            Grpc = new GRPCInferenceService.GRPCInferenceServiceClient(Channel);
        }
        Model = model;
        Embed = embed;
        Seq = seq;
        Batch = batch;
        Input = RandomWeights.Input(batch * seq * embed, 3);
        InputBytes = new byte[Input.Length * 4];
        for (int i = 0; i < Input.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(InputBytes.AsSpan(i * 4), Input[i]);
        Infer = new Uri($"/v2/models/{model}/infer", UriKind.Relative);
    }

    public HttpClient Http { get; }

    public GrpcChannel? Channel { get; }

    public GRPCInferenceService.GRPCInferenceServiceClient? Grpc { get; }

    public string Model { get; }

    public int Embed { get; }

    public int Seq { get; }

    public int Batch { get; }

    public float[] Input { get; }

    public byte[] InputBytes { get; }

    public Uri Infer { get; }

    public GRPCInferenceService.GRPCInferenceServiceClient GrpcClient
        => Grpc ?? throw new InvalidOperationException("this mode needs --grpc-url http://127.0.0.1:P");

    public string Shape => $"[{Batch},{Seq},{Embed}]";

    public void Dispose()
    {
        Http.Dispose();
        Channel?.Dispose();
    }

    /// <summary>The OIP JSON body of the input, with <paramref name="parameters"/> (JSON members) at request level.</summary>
    public byte[] JsonBody(string parameters = "")
    {
        var sb = new StringBuilder("{\"parameters\": {").Append(parameters).Append("}, \"inputs\": [{\"name\": \"input\", \"datatype\": \"FP32\", \"shape\": ")
            .Append(Shape).Append(", \"data\": [");
        for (int i = 0; i < Input.Length; i++)
        {
            if (i > 0) sb.Append(',');
            sb.Append(Input[i].ToString("R", Inv));
        }
        return Encoding.UTF8.GetBytes(sb.Append("]}]}").ToString());
    }

    /// <summary>The JSON header of a binary request for the input (binary output asked for).</summary>
    public string BinaryHeader(string parameters = "", string? shape = null, long? size = null)
        => $"{{\"parameters\": {{\"binary_data_output\": true{(parameters.Length > 0 ? ", " + parameters : "")}}}, \"inputs\": [{{\"name\": \"input\", \"datatype\": \"FP32\", \"shape\": {shape ?? Shape}, \"parameters\": {{\"binary_data_size\": {size ?? InputBytes.Length}}}}}]}}";

    public static HttpContent Json(byte[] body)
    {
        var c = new ByteArrayContent(body);
        c.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        return c;
    }

    /// <summary>Triton's binary tensor data: the JSON header, then the raw bytes; the header's length in its header.</summary>
    public static HttpContent Binary(string header, ReadOnlyMemory<byte> binary, string? headerLength = null)
        => Binary(Encoding.UTF8.GetBytes(header), binary, headerLength);

    /// <summary>As <see cref="Binary(string, ReadOnlyMemory{byte}, string?)"/> with the header already encoded.</summary>
    public static HttpContent Binary(byte[] header, ReadOnlyMemory<byte> binary, string? headerLength = null)
    {
        var c = new TwoPartContent(header, binary);
        c.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        c.Headers.TryAddWithoutValidation("Inference-Header-Content-Length", headerLength ?? header.Length.ToString(Inv));
        return c;
    }

    /// <summary>
    /// A body written from two buffers (the header, then the tensor bytes) without joining them: a client that copies
    /// every 73 KB input into a new array per request measures itself (its CPU shares the server's cores).
    /// </summary>
    private sealed class TwoPartContent(ReadOnlyMemory<byte> first, ReadOnlyMemory<byte> second) : HttpContent
    {
        protected override async Task SerializeToStreamAsync(Stream stream, System.Net.TransportContext? context, CancellationToken cancellationToken)
        {
            await stream.WriteAsync(first, cancellationToken).ConfigureAwait(false);
            await stream.WriteAsync(second, cancellationToken).ConfigureAwait(false);
        }

        protected override Task SerializeToStreamAsync(Stream stream, System.Net.TransportContext? context)
            => SerializeToStreamAsync(stream, context, CancellationToken.None);

        protected override bool TryComputeLength(out long length)
        {
            length = first.Length + second.Length;
            return true;
        }
    }

    /// <param name="expectContinue">Send the body only after the server's 100 Continue (a large body the server may
    /// refuse from its Content-Length: without it the server's early 413 can race the client's writing).</param>
    public async Task<string> Post(Uri path, HttpContent content, CancellationToken cancellationToken, bool expectContinue = false)
    {
        using var message = new HttpRequestMessage(HttpMethod.Post, path) { Content = content };
        if (expectContinue) message.Headers.ExpectContinue = true;
        using (content)
        using (var r = await Http.SendAsync(message, cancellationToken).ConfigureAwait(false))
        {
            await r.Content.ReadAsByteArrayAsync(cancellationToken).ConfigureAwait(false); // the whole answer, as a client reads it
            return ((int)r.StatusCode).ToString(Inv);
        }
    }

    public ModelInferRequest GrpcRequest(ByteString raw, string? shapeOverride = null, string datatype = "FP32", string model = "")
    {
        var request = new ModelInferRequest { ModelName = model.Length > 0 ? model : Model };
        var input = new ModelInferRequest.Types.InferInputTensor { Name = "input", Datatype = datatype };
        input.Shape.AddRange((shapeOverride ?? Shape).Trim('[', ']').Split(',').Select(x => long.Parse(x, Inv)));
        request.Inputs.Add(input);
        request.RawInputContents.Add(raw);
        return request;
    }

    /// <summary>The good ModelInferRequest (the input as raw_input_contents), serialized.</summary>
    public byte[] GrpcMessage() => GrpcRequest(ByteString.CopyFrom(InputBytes)).ToByteArray();

    public async Task<string> GrpcInfer(ModelInferRequest request, CancellationToken cancellationToken)
    {
        try
        {
            var response = await GrpcClient.ModelInferAsync(request, cancellationToken: cancellationToken).ConfigureAwait(false);
            return response.RawOutputContents.Count == 1 && response.RawOutputContents[0].Length > 0 ? "OK" : "OK-but-no-output";
        }
        catch (RpcException ex)
        {
            return ex.StatusCode.ToString();
        }
    }

    /// <summary>
    /// ModelInfer with the request already serialized (<see cref="SerializedRequest"/>): the good load modes send one
    /// input over and over, and re-encoding its 73 KB for every call is client CPU taken from the server's cores.
    /// </summary>
    private static readonly Method<SerializedRequest, ModelInferResponse> SerializedInfer = new(
        MethodType.Unary, "inference.GRPCInferenceService", "ModelInfer",
        Marshallers.Create<SerializedRequest>(
            (request, context) =>
            {
                if (request.Tail is not { } tail)
                {
                    context.Complete(request.Body);
                    return;
                }
                context.SetPayloadLength(request.Length);
                var writer = context.GetBufferWriter();
                writer.Write(request.Body);
                writer.Write(tail);
                context.Complete();
            },
            _ => throw new NotSupportedException("the load test only sends these")),
        Marshallers.Create(
            (ModelInferResponse response, SerializationContext context) => context.Complete(response.ToByteArray()),
            context => ModelInferResponse.Parser.ParseFrom(context.PayloadAsReadOnlySequence())));

    public async Task<string> GrpcInfer(SerializedRequest request, CancellationToken cancellationToken)
    {
        try
        {
            var call = Channel!.CreateCallInvoker().AsyncUnaryCall(SerializedInfer, null, new CallOptions(cancellationToken: cancellationToken), request);
            var response = await call.ConfigureAwait(false);
            return response.RawOutputContents.Count == 1 && response.RawOutputContents[0].Length > 0 ? "OK" : "OK-but-no-output";
        }
        catch (RpcException ex)
        {
            return ex.StatusCode.ToString();
        }
    }

    /// <summary>The good request of a load mode.</summary>
    public Send Good(string mode, int appendsPerSequence)
    {
        switch (mode)
        {
            case "json":
            {
                byte[] body = JsonBody();
                return (_, ct) => Post(Infer, Json(body), ct);
            }
            case "binary":
            {
                byte[] header = Encoding.UTF8.GetBytes(BinaryHeader());
                return (_, ct) => Post(Infer, Binary(header, InputBytes), ct);
            }
            case "grpc":
            {
                var request = new SerializedRequest(GrpcMessage(), null);
                _ = GrpcClient;
                return (_, ct) => GrpcInfer(request, ct);
            }
            case "v1":
            {
                // /v1/predict (the sample service's API, kept): .npy and JSON bodies alternately.
                var v1 = new Uri("/v1/predict", UriKind.Relative);
                byte[] npy = BadRequests.Npy(Input, Batch, Seq, Embed);
                var json = new StringBuilder("{\"input\": [");
                for (int b = 0; b < Batch; b++)
                {
                    json.Append(b > 0 ? ",[" : "[");
                    for (int r = 0; r < Seq; r++)
                    {
                        json.Append(r > 0 ? ",[" : "[");
                        for (int k = 0; k < Embed; k++) json.Append(k > 0 ? "," : "").Append(Input[(b * Seq + r) * Embed + k].ToString("R", Inv));
                        json.Append(']');
                    }
                    json.Append(']');
                }
                byte[] jsonBody = Encoding.UTF8.GetBytes(json.Append("], \"output_mode\": \"last\"}").ToString());
                var counts = new int[1024];
                return (client, ct) =>
                {
                    var c = new ByteArrayContent(counts[client]++ % 2 == 0 ? npy : jsonBody);
                    c.Headers.ContentType = new MediaTypeHeaderValue(counts[client] % 2 == 1 ? "application/x-npy" : "application/json");
                    return Post(v1, c, ct);
                };
            }
            case "seq-rest":
            case "seq-grpc":
                return SequenceAppends(mode == "seq-grpc", appendsPerSequence);
            default:
                throw new ArgumentException($"--mode '{mode}' must be v1, json, binary, grpc, seq-rest or seq-grpc.");
        }
    }

    /// <summary>
    /// Each client appends one input (whole chunks) after another to its own sequence: sequence_start on the first,
    /// sequence_end on the <paramref name="appends"/>-th, then a new sequence (binary tensor data over REST).
    /// </summary>
    private Send SequenceAppends(bool grpc, int appends)
    {
        string run = Guid.NewGuid().ToString("N")[..8];
        var counts = new int[1024];
        byte[] body = GrpcMessage();
        if (grpc) _ = GrpcClient;
        return (client, ct) =>
        {
            int k = counts[client]++;
            string id = $"lt-{run}-{client}-{k / appends}";
            bool start = k % appends == 0, end = k % appends == appends - 1;
            if (grpc)
            {
                // Serialized messages concatenated are the merged message: the input once, then this request's parameters.
                var parameters = new ModelInferRequest();
                parameters.Parameters["sequence_id"] = new InferParameter { StringParam = id };
                parameters.Parameters["sequence_start"] = new InferParameter { BoolParam = start };
                parameters.Parameters["sequence_end"] = new InferParameter { BoolParam = end };
                return GrpcInfer(new SerializedRequest(body, parameters.ToByteArray()), ct);
            }
            string p = $"\"sequence_id\": \"{id}\", \"sequence_start\": {(start ? "true" : "false")}, \"sequence_end\": {(end ? "true" : "false")}";
            return Post(Infer, Binary(BinaryHeader(p), InputBytes), ct);
        };
    }
}

/// <summary>A ModelInferRequest as bytes: <paramref name="Body"/>, then <paramref name="Tail"/> (more fields: protobuf merges them).</summary>
internal sealed record SerializedRequest(byte[] Body, byte[]? Tail)
{
    public int Length => Body.Length + (Tail?.Length ?? 0);
}
