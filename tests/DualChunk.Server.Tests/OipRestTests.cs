using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using static DualChunk.Server.Tests.ServerHarness;

namespace DualChunk.Server.Tests;

/// <summary>The Open Inference Protocol over REST, JSON and binary tensor data, against `dualchunk run`.</summary>
[TestFixture]
public sealed class OipRestTests
{
    private const string Infer = "/v2/models/dualchunk/infer";

    internal static string InferJson(float[] data, int[] shape, string? mode = null, string datatype = "FP32", string? parameters = null, bool binaryOutput = false)
    {
        var p = new List<string>();
        if (mode is not null) p.Add($"\"output_mode\": \"{mode}\"");
        if (parameters is not null) p.Add(parameters);
        string outputs = binaryOutput ? ", \"outputs\": [{\"name\": \"output\", \"parameters\": {\"binary_data\": true}}]" : "";
        return $"{{\"id\": \"t1\", \"parameters\": {{{string.Join(", ", p)}}}, \"inputs\": [{{\"name\": \"input\", \"datatype\": \"{datatype}\", \"shape\": [{string.Join(",", shape)}], \"data\": [{Numbers(data)}]}}]{outputs}}}";
    }

    internal static HttpContent BinaryBody(string json, byte[] binary)
    {
        byte[] header = Encoding.UTF8.GetBytes(json);
        var content = new ByteArrayContent([.. header, .. binary]);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        content.Headers.Add("Inference-Header-Content-Length", header.Length.ToString(CultureInfo.InvariantCulture));
        return content;
    }

    internal static string BinaryJson(int[] shape, long size, string datatype = "FP32", string? parameters = null)
        => $"{{\"parameters\": {{\"binary_data_output\": true{(parameters is null ? "" : ", " + parameters)}}}, \"inputs\": [{{\"name\": \"input\", \"datatype\": \"{datatype}\", \"shape\": [{string.Join(",", shape)}], \"parameters\": {{\"binary_data_size\": {size}}}}}]}}";

    [Test]
    public async Task DataBeforeTheShapeGivesTheSameOutput()
    {
        // Clients write name, datatype, shape, then data (read in one pass); any other order is read in two.
        using var factory = Start();
        using var client = await RestClient(factory);
        var input = Input(8 * E, 9);
        string usual = $"{{\"inputs\": [{{\"name\": \"input\", \"datatype\": \"FP32\", \"shape\": [1, 8, {E}], \"data\": [{Numbers(input)}]}}]}}";
        string dataFirst = $"{{\"inputs\": [{{\"data\": [{Numbers(input)}], \"shape\": [1, 8, {E}], \"datatype\": \"FP32\", \"name\": \"input\"}}]}}";
        using var a = await client.PostAsync(Infer, new StringContent(usual));
        using var b = await client.PostAsync(Infer, new StringContent(dataFirst));
        var (expected, shape, _) = await Output(a);
        var (actual, _, _) = await Output(b);
        Assert.That(shape, Is.EqualTo(new[] { 1, H }));
        Assert.That(Bytes(actual), Is.EqualTo(Bytes(expected)));
        Assert.That(Bytes(expected), Is.EqualTo(Bytes(CliOutput("run", input, [1, 8, E], "last"))), "bitwise dualchunk run's (JSON carries float32 exactly)");
    }

    /// <summary>The output of an OIP response, JSON or binary, and its shape.</summary>
    internal static async Task<(float[] Data, int[] Shape, JsonElement Header)> Output(HttpResponseMessage response)
    {
        byte[] body = await response.Content.ReadAsByteArrayAsync();
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), Encoding.UTF8.GetString(body));
        int headerLength = response.Headers.TryGetValues("Inference-Header-Content-Length", out var v) ? int.Parse(v.First(), CultureInfo.InvariantCulture) : body.Length;
        var header = JsonDocument.Parse(body.AsMemory(0, headerLength)).RootElement.Clone();
        var output = header.GetProperty("outputs")[0];
        Assert.That(output.GetProperty("name").GetString(), Is.EqualTo("output"));
        Assert.That(output.GetProperty("datatype").GetString(), Is.EqualTo("FP32"));
        int[] shape = output.GetProperty("shape").EnumerateArray().Select(x => x.GetInt32()).ToArray();
        float[] data = output.TryGetProperty("data", out var d)
            ? d.EnumerateArray().Select(x => x.GetSingle()).ToArray()
            : Floats(body.AsSpan(headerLength));
        if (!output.TryGetProperty("data", out _))
            Assert.That(output.GetProperty("parameters").GetProperty("binary_data_size").GetInt64(), Is.EqualTo(body.Length - headerLength));
        return (data, shape, header);
    }

    [TestCase("last")]
    [TestCase("all")]
    [TestCase("mean")]
    public async Task JsonAndBinaryOutputsAreDualchunkRunsBitwise(string mode)
    {
        using var factory = Start();
        using var client = await RestClient(factory);
        int[] shape = [2, 8, E];
        var input = Input(2 * 8 * E, 11);
        float[] expected = CliOutput("run", input, shape, mode);
        int[] expectedShape = mode == "all" ? [2, 8, H] : [2, H];

        using var json = await client.PostAsync(Infer, new StringContent(InferJson(input, shape, mode), Encoding.UTF8, "application/json"));
        var (jsonData, jsonShape, header) = await Output(json);
        Assert.Multiple(() =>
        {
            Assert.That(jsonShape, Is.EqualTo(expectedShape));
            Assert.That(jsonData, Is.EqualTo(expected), "JSON: shortest round-trip floats parse back to the exact float32s");
            Assert.That(header.GetProperty("id").GetString(), Is.EqualTo("t1"));
            Assert.That(header.GetProperty("model_name").GetString(), Is.EqualTo("dualchunk"));
            Assert.That(header.GetProperty("model_version").GetString(), Is.EqualTo("1"));
        });

        using var binary = await client.PostAsync("/v2/models/dualchunk/versions/1/infer", BinaryBody(BinaryJson(shape, input.Length * 4, parameters: $"\"output_mode\": \"{mode}\""), Bytes(input)));
        var (binData, binShape, _) = await Output(binary);
        Assert.That(binary.Content.Headers.ContentType?.MediaType, Is.EqualTo("application/octet-stream"));
        Assert.That(binShape, Is.EqualTo(expectedShape));
        Assert.That(Bytes(binData), Is.EqualTo(Bytes(expected)), "binary output: bitwise dualchunk run's");
    }

    [Test]
    public async Task Fp64AndTwoDimensionalAndNestedInputs()
    {
        using var factory = Start();
        using var client = await RestClient(factory);
        var input = Input(12 * E, 5);
        float[] expected = CliOutput("run", input, [12, E], "last");
        // FP64 in JSON (the values are float32s, so narrowing is exact), [N, E], nested data as the spec allows.
        string nested = "[" + string.Join(",", Enumerable.Range(0, 12).Select(n => "[" + Numbers(input.Skip(n * E).Take(E)) + "]")) + "]";
        string body = $"{{\"inputs\": [{{\"name\": \"input\", \"datatype\": \"FP64\", \"shape\": [12, {E}], \"data\": {nested}}}]}}";
        using var json = await client.PostAsync(Infer, new StringContent(body));
        var (data, shape, _) = await Output(json);
        Assert.That(shape, Is.EqualTo(new[] { 1, H }));
        Assert.That(data, Is.EqualTo(expected));

        var doubles = new byte[input.Length * 8];
        for (int i = 0; i < input.Length; i++) System.Buffers.Binary.BinaryPrimitives.WriteDoubleLittleEndian(doubles.AsSpan(i * 8), input[i]);
        using var binary = await client.PostAsync(Infer, BinaryBody(BinaryJson([1, 12, E], doubles.Length, "FP64"), doubles));
        var (binData, _, _) = await Output(binary);
        Assert.That(Bytes(binData), Is.EqualTo(Bytes(expected)), "FP64 binary input, narrowed as the CLI does");
    }

    [Test]
    public async Task HealthMetadataAndVersions()
    {
        using var factory = Start();
        using var client = await RestClient(factory);
        async Task<(HttpStatusCode, JsonElement)> Get(string path)
        {
            using var r = await client.GetAsync(path);
            return (r.StatusCode, JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement.Clone());
        }
        var (s1, live) = await Get("/v2/health/live");
        var (s2, ready) = await Get("/v2/health/ready");
        var (s3, server) = await Get("/v2");
        var (s4, model) = await Get("/v2/models/dualchunk");
        var (s5, modelV) = await Get("/v2/models/dualchunk/versions/1");
        var (s6, modelReady) = await Get("/v2/models/dualchunk/versions/1/ready");
        var (s7, noVersion) = await Get("/v2/models/dualchunk/versions/2/ready");
        var (s8, noModel) = await Get("/v2/models/other");
        Assert.Multiple(() =>
        {
            Assert.That((s1, live.GetProperty("live").GetBoolean()), Is.EqualTo((HttpStatusCode.OK, true)));
            Assert.That((s2, ready.GetProperty("ready").GetBoolean()), Is.EqualTo((HttpStatusCode.OK, true)));
            Assert.That(s3, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(server.GetProperty("extensions").EnumerateArray().Select(x => x.GetString()), Is.SupersetOf(new[] { "binary_tensor_data", "sequence" }));
            Assert.That(s4, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(model.GetProperty("inputs")[0].GetProperty("shape").EnumerateArray().Select(x => x.GetInt64()), Is.EqualTo(new long[] { -1, -1, E }));
            Assert.That(model.GetProperty("outputs")[0].GetProperty("shape").EnumerateArray().Select(x => x.GetInt64()), Is.EqualTo(new long[] { -1, -1, H }));
            Assert.That(model.GetProperty("properties").GetProperty("chunk_size").GetString(), Is.EqualTo("4"));
            Assert.That(model.GetProperty("properties").GetProperty("output_modes").GetString(), Is.EqualTo("last,all,mean"));
            Assert.That(model.GetProperty("versions")[0].GetString(), Is.EqualTo("1"));
            Assert.That(s5, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(modelV.GetProperty("name").GetString(), Is.EqualTo("dualchunk"));
            Assert.That((s6, modelReady.GetProperty("ready").GetBoolean()), Is.EqualTo((HttpStatusCode.OK, true)));
            Assert.That(s7, Is.EqualTo(HttpStatusCode.NotFound));
            Assert.That(noVersion.GetProperty("error").GetString(), Does.Contain("no version '2'"));
            Assert.That(s8, Is.EqualTo(HttpStatusCode.NotFound));
            Assert.That(noModel.GetProperty("error").GetString(), Does.Contain("serves: dualchunk"));
        });
    }

    private static IEnumerable<TestCaseData> BadRequests()
    {
        var ok = new float[4 * E];
        string Json(string inputs, string extra = "") => $"{{\"inputs\": [{inputs}]{extra}}}";
        string Input(string shape, string data, string datatype = "FP32", string name = "input") => $"{{\"name\": \"{name}\", \"datatype\": \"{datatype}\", \"shape\": {shape}, \"data\": {data}}}";
        string good = Input($"[1,4,{E}]", $"[{Numbers(ok)}]");
        TestCaseData J(string body, int status, string message, string name) => new TestCaseData(body, null, null, status, message).SetName("oip json: " + name);
        yield return J("{\"inputs\": [{\"name\": \"input\",", 400, "Malformed JSON", "truncated");
        yield return J("not json", 400, "Malformed JSON", "not JSON");
        yield return J("[1]", 400, "must be a JSON object", "not an object");
        yield return J("{}", 400, "no inputs", "no inputs");
        yield return J(Json($"{good}, {good}"), 400, "has 2 inputs", "two inputs");
        yield return J(Json(Input($"[1,4,{E}]", $"[{Numbers(ok)}]", name: "x")), 400, "Unknown input \"x\"", "wrong name");
        yield return J(Json(Input($"[1,4,{E}]", $"[{Numbers(ok)}]", datatype: "INT32")), 400, "datatype \"INT32\"", "wrong datatype");
        yield return J(Json(Input("[1,4,31]", $"[{Numbers(new float[124])}]")), 400, "embed size E is 32", "wrong E");
        yield return J(Json(Input($"[4,{E},1,1]", "[]")), 400, "must be [B, N, 32] or [N, 32]", "rank 4");
        yield return J(Json(Input($"[1,-4,{E}]", "[]")), 400, "cannot be negative", "negative dimension");
        yield return J(Json(Input($"[1,4,{E}]", $"[{Numbers(new float[4 * E - 1])}]")), 400, "has 127 values in \"data\", but its shape [1, 4, 32] needs 128", "data shorter than shape");
        // The data before the name and shape: read in a second pass, with the same checks.
        yield return J(Json($"{{\"data\": [{Numbers(new float[4 * E - 1])}], \"name\": \"input\", \"datatype\": \"FP32\", \"shape\": [1,4,{E}]}}"), 400, "has 127 values in \"data\", but its shape [1, 4, 32] needs 128", "data before the shape, shorter than it");
        yield return J(Json($"{{\"data\": [{Numbers(ok)}], \"name\": \"x\", \"datatype\": \"FP32\", \"shape\": [1,4,{E}]}}"), 400, "Unknown input \"x\"", "data before the name, wrong name");
        yield return J(Json(Input($"[1,4,{E}]", "[\"NaN\"" + string.Concat(Enumerable.Repeat(",0", 4 * E - 1)) + "]")), 400, "data[0] is a string", "NaN as the first value");
        yield return J(Json(Input($"[1,4,{E}]", $"[{Numbers(new float[4 * E + 1])}]")), 400, "more than 128 values", "data longer than shape");
        yield return J(Json(Input($"[1,6,{E}]", $"[{Numbers(new float[6 * E])}]")), 400, "not a multiple of the model's chunk size C = 4", "N not a multiple of C");
        yield return J(Json(Input($"[1,4,{E}]", "[\"NaN\"" + string.Concat(Enumerable.Repeat(",0", 4 * E - 1)) + "]")), 400, "is a string", "NaN");
        yield return J(Json(Input($"[1,4,{E}]", "[1e39" + string.Concat(Enumerable.Repeat(",0", 4 * E - 1)) + "]")), 400, "not a finite float32", "infinity");
        yield return J(Json(Input($"[1,4,{E}]", "[1e300" + string.Concat(Enumerable.Repeat(",0", 4 * E - 1)) + "]", datatype: "FP64")), 400, "beyond float32's range", "FP64 beyond float32");
        yield return J(Json(good, ", \"parameters\": {\"output_mode\": \"sum\"}"), 400, "Unknown output mode 'sum'", "unknown output mode");
        yield return J(Json(good, ", \"outputs\": [{\"name\": \"logits\"}]"), 400, "Unknown output \"logits\"", "unknown output");
        yield return J(Json(Input($"[3,4,{E}]", $"[{Numbers(new float[12 * E])}]")), 400, "more than 2 sequences (the configured MaxBatch)", "batch above MaxBatch");
        yield return J(Json(Input($"[1,12,{E}]", $"[{Numbers(new float[12 * E])}]")), 400, "more than 8 positions (the configured MaxSeqLen)", "length above MaxSeqLen");
        yield return J(Json(Input($"[1000000000,1000000000,{E}]", "[]")), 400, "MaxBatch", "huge claimed shape");
        yield return J(Json(good, ", \"parameters\": {\"sequence_start\": true}"), 400, "need a sequence_id", "sequence without an id");
        yield return J(Json(good, ", \"parameters\": {\"sequence_id\": -3}"), 400, "unsigned 64-bit integer or a string", "negative sequence id");
        yield return J(Json(good, ", \"parameters\": {\"sequence_id\": 77}"), 400, "Sequence 77 is not open: it was never started", "unknown sequence");
        yield return J(Json(good, ", \"parameters\": {\"sequence_id\": \"abc\", \"sequence_end\": true}"), 400, "Sequence \"abc\" is not open", "unknown string sequence");

        var bin = Bytes(ok);
        string header = BinaryJson([1, 4, E], 512);
        TestCaseData B(string json, byte[] binary, string? headerLength, int status, string message, string name) => new TestCaseData(json, binary, headerLength, status, message).SetName("oip binary: " + name);
        yield return B(header, bin, null, 200, "", "good");
        yield return B(BinaryJson([1, 4, E], 600), bin, null, 400, "claims binary_data_size 600, but its shape [1, 4, 32] of FP32 needs 512", "size not the shape's");
        yield return B(header, bin[..500], null, 400, "claims binary_data_size 512, but the body holds 500", "body shorter than the claim");
        yield return B(header, [.. bin, 1, 2, 3, 4], null, 400, "516 bytes after", "body longer than the claim");
        yield return B(header, bin, "100000", 400, "Inference-Header-Content-Length is 100000", "header length beyond the body");
        yield return B(header, bin, "12", 400, "Malformed JSON", "header length inside the JSON");
        yield return B(header, bin, "-1", 400, "non-negative integer", "negative header length");
        yield return B(header, bin, "", 400, "needs the Inference-Header-Content-Length header", "binary without the header");
        yield return B(BinaryJson([1000000, 1000000, E], 128000000000000), bin, null, 400, "MaxBatch", "huge claimed shape");
        yield return B(BinaryJson([1, 4, E], 512), [.. bin[..508], 0, 0, 0xc0, 0x7f], null, 400, "NaN at [0, 3, 31]", "NaN");
    }

    [TestCaseSource(nameof(BadRequests))]
    public async Task BadRequestsGetTheirStatusAndAnErrorNamingWhatIsWrong(string json, byte[]? binary, string? headerLength, int status, string message)
    {
        using var factory = Start(("DualChunk:Models:dualchunk:MaxBatch", "2"), ("DualChunk:Models:dualchunk:MaxSeqLen", "8"));
        using var client = await RestClient(factory);
        HttpContent content = binary is null ? new StringContent(json, Encoding.UTF8, "application/json") : BinaryBody(json, binary);
        if (headerLength is not null)
        {
            content.Headers.Remove("Inference-Header-Content-Length");
            if (headerLength.Length > 0) content.Headers.TryAddWithoutValidation("Inference-Header-Content-Length", headerLength);
        }
        using var response = await client.PostAsync(Infer, content);
        string body = await response.Content.ReadAsStringAsync();
        Assert.That((int)response.StatusCode, Is.EqualTo(status), body);
        if (status == 200) return;
        Assert.That(response.Content.Headers.ContentType?.MediaType, Is.EqualTo("application/json"));
        Assert.That(JsonDocument.Parse(body).RootElement.GetProperty("error").GetString(), Does.Contain(message), body);
        // The server still serves good requests.
        using var good = await client.PostAsync(Infer, new StringContent(InferJson(new float[4 * E], [1, 4, E])));
        Assert.That(good.StatusCode, Is.EqualTo(HttpStatusCode.OK));
    }

    [Test]
    public async Task UnknownModelIs404AndBodyOverTheLimitIs413AndNotReadyIs503()
    {
        using (var factory = Start(("Service:MaxRequestBodyBytes", "4096")))
        using (var client = await RestClient(factory))
        {
            using var unknown = await client.PostAsync("/v2/models/other/infer", new StringContent(InferJson(new float[4 * E], [1, 4, E])));
            Assert.That(unknown.StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
            using var large = await client.PostAsync(Infer, new StringContent(InferJson(new float[8 * E], [1, 8, E]) + new string(' ', 5000)));
            Assert.That(large.StatusCode, Is.EqualTo(HttpStatusCode.RequestEntityTooLarge));
            Assert.That(await large.Content.ReadAsStringAsync(), Does.Contain("limit is 4096"));
        }
        string dir = Path.Combine(Path.GetTempPath(), "dualchunk-bad-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            string bad = Path.Combine(dir, "bad.dcw");
            File.WriteAllText(bad, "not a model");
            using var factory = Start(("DualChunk:Models:dualchunk:Path", bad));
            using var client = await RestClient(factory);
            using var ready = await client.GetAsync("/v2/health/ready");
            Assert.That(ready.StatusCode, Is.EqualTo(HttpStatusCode.ServiceUnavailable));
            using var modelReady = await client.GetAsync("/v2/models/dualchunk/ready");
            Assert.That(modelReady.StatusCode, Is.EqualTo(HttpStatusCode.ServiceUnavailable));
            using var infer = await client.PostAsync(Infer, new StringContent(InferJson(new float[4 * E], [1, 4, E])));
            Assert.That(infer.StatusCode, Is.EqualTo(HttpStatusCode.ServiceUnavailable));
            Assert.That(infer.Headers.RetryAfter, Is.Not.Null);
            Assert.That(await infer.Content.ReadAsStringAsync(), Does.Contain("failed to load"));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
