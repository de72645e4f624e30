using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using Google.Protobuf;

namespace DualChunk.LoadTest;

/// <summary>
/// Every kind of bad request the issue names, over /v2 JSON, /v2 binary, gRPC and /v1: each must get a 4xx or a
/// gRPC error (never 2xx, 5xx or a dropped connection). Bodies are small and built once; some claim huge shapes.
/// </summary>
internal static class BadRequests
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>A 4xx or a gRPC error status that names the client's mistake.</summary>
    public static bool IsClientError(string status)
        => status.Length == 3 && status[0] == '4' || status is "InvalidArgument" or "NotFound" or "ResourceExhausted" or "FailedPrecondition" or "OutOfRange";

    /// <param name="maxBodyBytes">The server's Service:MaxRequestBodyBytes (the over-size kinds send a few bytes more).</param>
    /// <param name="maxSeqLen">The model's MaxSeqLen (the over-length kind claims one chunk more).</param>
    public static (string Kind, Send Send)[] All(Target t, long maxBodyBytes, int maxSeqLen, bool grpc)
    {
        int e = t.Embed, n = t.Seq, chunk = t.Seq;
        byte[] J(string s) => Encoding.UTF8.GetBytes(s);
        string Input(string shape, string data, string datatype = "FP32", string name = "input")
            => $"{{\"name\": \"{name}\", \"datatype\": \"{datatype}\", \"shape\": {shape}, \"data\": {data}}}";
        string Req(string input, string parameters = "") => $"{{\"parameters\": {{{parameters}}}, \"inputs\": [{input}]}}";
        string zeros(int count) => "[" + string.Join(",", Enumerable.Repeat("0.5", count)) + "]";
        string good = zeros(n * e);
        var badVersion = new Uri($"/v2/models/{t.Model}/versions/999/infer", UriKind.Relative);
        var unknownModel = new Uri("/v2/models/no-such-model/infer", UriKind.Relative);
        var v1 = new Uri("/v1/predict", UriKind.Relative);

        var list = new List<(string, Send)>();
        void Rest(string kind, byte[] body, Uri? path = null) => list.Add(("json:" + kind, (_, ct) => t.Post(path ?? t.Infer, Target.Json(body), ct, expectContinue: body.Length > maxBodyBytes)));
        Rest("malformed", J("{\"inputs\": [{\"name\": \"input\","));
        Rest("wrong-name", J(Req(Input(t.Shape, good, name: "x"))));
        Rest("wrong-datatype", J(Req(Input(t.Shape, good, datatype: "INT32"))));
        Rest("wrong-shape-rank", J(Req(Input($"[1,1,{n},{e}]", good))));
        Rest("wrong-E", J(Req(Input($"[1,{n},{e + 1}]", good))));
        Rest("data-shorter-than-shape", J(Req(Input(t.Shape, zeros(n * e - 1)))));
        Rest("data-longer-than-shape", J(Req(Input(t.Shape, zeros(n * e + 1)))));
        Rest("nan", J(Req(Input(t.Shape, "[\"NaN\"" + string.Concat(Enumerable.Repeat(",0", n * e - 1)) + "]"))));
        Rest("N-not-multiple-of-C", J(Req(Input($"[1,{chunk + 1},{e}]", zeros((chunk + 1) * e)))));
        Rest("huge-claimed-shape", J(Req(Input($"[1000000000,1000000000,{e}]", "[]"))));
        Rest("length-over-MaxSeqLen", J(Req(Input($"[1,{maxSeqLen + chunk},{e}]", "[]"))));
        Rest("unknown-model", J(Req(Input(t.Shape, good))), unknownModel);
        Rest("unknown-version", J(Req(Input(t.Shape, good))), badVersion);
        Rest("unknown-sequence", J(Req(Input(t.Shape, good), "\"sequence_id\": \"never-started\"")));
        Rest("sequence-without-id", J(Req(Input(t.Shape, good), "\"sequence_start\": true")));
        Rest("unknown-output-mode", J(Req(Input(t.Shape, good), "\"output_mode\": \"sum\"")));
        byte[] overSize = new byte[maxBodyBytes + 16];
        J("{\"inputs\": [").CopyTo(overSize, 0);
        Rest("body-over-MaxRequestBodyBytes", overSize);

        byte[] raw = t.InputBytes;
        void Bin(string kind, string header, byte[] binary, string? headerLength = null)
            => list.Add(("binary:" + kind, (_, ct) => t.Post(t.Infer, Target.Binary(header, binary, headerLength), ct)));
        Bin("binary_data_size-above-shape", t.BinaryHeader(size: raw.Length + 4), [.. raw, 0, 0, 0, 0]);
        Bin("body-shorter-than-binary_data_size", t.BinaryHeader(), raw[..^100]);
        Bin("body-longer-than-binary_data_size", t.BinaryHeader(), [.. raw, 1, 2, 3, 4]);
        Bin("header-length-beyond-body", t.BinaryHeader(), raw, (raw.Length * 4).ToString(Inv));
        Bin("header-length-inside-json", t.BinaryHeader(), raw, "12");
        Bin("huge-claimed-size", t.BinaryHeader(shape: $"[1000000,1000000,{e}]", size: 1000000L * 1000000 * e * 4), raw);
        byte[] nan = [.. raw];
        BinaryPrimitives.WriteSingleLittleEndian(nan.AsSpan(nan.Length - 4), float.NaN);
        Bin("nan", t.BinaryHeader(), nan);

        if (grpc)
        {
            var rawBytes = ByteString.CopyFrom(raw);
            void G(string kind, Func<DualChunk.Server.Grpc.ModelInferRequest> make)
            {
                var request = make();
                list.Add(("grpc:" + kind, (_, ct) => t.GrpcInfer(request, ct)));
            }
            G("wrong-datatype", () => t.GrpcRequest(rawBytes, datatype: "INT32"));
            G("raw-size-not-shape", () => t.GrpcRequest(ByteString.CopyFrom(raw.AsSpan(0, raw.Length - 4))));
            G("N-not-multiple-of-C", () => t.GrpcRequest(ByteString.CopyFrom(new byte[(chunk + 1) * e * 4]), $"[1,{chunk + 1},{e}]"));
            G("nan", () => t.GrpcRequest(ByteString.CopyFrom(nan)));
            G("huge-claimed-shape", () => t.GrpcRequest(rawBytes, $"[1000000000,1000000000,{e}]"));
            G("unknown-model", () => t.GrpcRequest(rawBytes, model: "no-such-model"));
            G("unknown-sequence", () =>
            {
                var r = t.GrpcRequest(rawBytes);
                r.Parameters["sequence_id"] = new DualChunk.Server.Grpc.InferParameter { StringParam = "never-started" };
                return r;
            });
            G("sequence-without-id", () =>
            {
                var r = t.GrpcRequest(rawBytes);
                r.Parameters["sequence_start"] = new DualChunk.Server.Grpc.InferParameter { BoolParam = true };
                return r;
            });
            G("message-over-size-limit", () => t.GrpcRequest(ByteString.CopyFrom(new byte[maxBodyBytes + 16])));
            // Not a ModelInferRequest: the good message cut inside its raw_input_contents.
            var cut = new SerializedRequest(t.GrpcMessage()[..^100], null);
            list.Add(("grpc:not-protobuf", (_, ct) => t.GrpcInfer(cut, ct)));
        }

        // /v1/predict (kept from the sample service): JSON and .npy.
        string row = "[" + string.Join(",", Enumerable.Repeat("0.5", e)) + "]";
        string seqOf(int rows) => "[" + string.Join(",", Enumerable.Repeat(row, rows)) + "]";
        void V1(string kind, string type, byte[] body) => list.Add(("v1:" + kind, (_, ct) =>
        {
            var c = new ByteArrayContent(body);
            c.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue(type);
            return t.Post(v1, c, ct);
        }));
        V1("malformed-json", "application/json", J("{\"input\": [[[1,2"));
        V1("ragged", "application/json", J($"{{\"input\": [{seqOf(n)}, {seqOf(n / 2)}]}}"));
        V1("N-not-multiple-of-C", "application/json", J($"{{\"input\": [[{row}]]}}"));
        V1("bad-npy", "application/x-npy", J("not an npy file"));
        V1("npy-huge-claimed-shape", "application/x-npy", Npy([], 1000000, 1000000, e));
        return [.. list];
    }

    public static byte[] Npy(float[] data, params int[] shape)
    {
        string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + string.Join(", ", shape) + "), }";
        int pad = (64 - (10 + dict.Length + 1) % 64) % 64;
        var header = Encoding.ASCII.GetBytes(dict + new string(' ', pad) + "\n");
        var bytes = new byte[10 + header.Length + data.Length * 4];
        new byte[] { 0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', 1, 0 }.CopyTo(bytes, 0);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(8), (ushort)header.Length);
        header.CopyTo(bytes, 10);
        for (int i = 0; i < data.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(10 + header.Length + i * 4), data[i]);
        return bytes;
    }
}
