using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using DualChunk.Core;
using DualChunk.Extensions.Hosting;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.DependencyInjection;

namespace DualChunk.Server.Tests;

/// <summary>src/DualChunk.Server in process (WebApplicationFactory): every good and bad request kind.</summary>
[TestFixture]
public sealed class ServiceTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);
    private static string TinyModel => ServerHarness.TinyModel;
    private static string TinyInput => Path.Combine(AppContext.BaseDirectory, "tiny", "input.npy");
    private const int E = 32, H = 32, C = 4; // samples/tiny

    private TestModels _files = null!;

    [SetUp]
    public void SetUp() => _files = new TestModels();

    [TearDown]
    public void TearDown() => _files.Dispose();

    private static WebApplicationFactory<Program> Service(string model, params (string Key, string Value)[] settings)
        => new WebApplicationFactory<Program>().WithWebHostBuilder(b =>
        {
            b.UseSetting("DualChunk:Models:default:Path", model);
            b.UseSetting("DualChunk:Models:default:ChunkSize", "4");
            foreach (var (k, v) in settings) b.UseSetting(k, v);
        });

    private static async Task<HttpClient> Ready(WebApplicationFactory<Program> factory)
    {
        // No redirect handler: it buffers request bodies (and the service never redirects).
        var client = factory.CreateClient(new WebApplicationFactoryClientOptions { AllowAutoRedirect = false });
        await factory.Services.GetRequiredService<DualChunkModelProvider>().Loaded.WaitAsync(Bound);
        return client;
    }

    private static string Json(float[] data, int b, int n, int e, bool batched = true)
    {
        var sb = new StringBuilder("{\"input\": ");
        if (batched) sb.Append('[');
        for (int i = 0; i < b; i++)
        {
            if (i > 0) sb.Append(',');
            sb.Append('[');
            for (int j = 0; j < n; j++)
            {
                if (j > 0) sb.Append(',');
                sb.Append('[').AppendJoin(',', data.Skip((i * n + j) * e).Take(e).Select(v => v.ToString("R", CultureInfo.InvariantCulture))).Append(']');
            }
            sb.Append(']');
        }
        if (batched) sb.Append(']');
        return sb.Append('}').ToString();
    }

    private static StringContent JsonBody(string json) => new(json, Encoding.UTF8, "application/json");

    private static ByteArrayContent NpyBody(byte[] npy)
    {
        var c = new ByteArrayContent(npy);
        c.Headers.ContentType = new MediaTypeHeaderValue("application/x-npy");
        return c;
    }

    private static void Flatten(JsonElement e, List<float> into, List<int> shape, int depth)
    {
        if (e.ValueKind == JsonValueKind.Number)
        {
            into.Add(e.GetSingle());
            return;
        }
        if (shape.Count == depth) shape.Add(e.GetArrayLength());
        foreach (var x in e.EnumerateArray()) Flatten(x, into, shape, depth + 1);
    }

    [TestCase("last")]
    [TestCase("all")]
    [TestCase("mean")]
    public async Task JsonAndNpyOutputsEqualDualchunkRun(string mode)
    {
        using var factory = Service(TinyModel);
        using var client = await Ready(factory);
        byte[] inputNpy = File.ReadAllBytes(TinyInput); // float32 [2, 8, 32]
        float[] input = ServerHarness.NpyData(inputNpy);
        byte[] expectedNpy = ServerHarness.CliOutputFile("run", inputNpy, mode);
        float[] expected = ServerHarness.NpyData(expectedNpy);

        using var npyResponse = await client.PostAsync($"/v1/predict?output_mode={mode}", NpyBody(inputNpy));
        Assert.That(npyResponse.StatusCode, Is.EqualTo(HttpStatusCode.OK), await npyResponse.Content.ReadAsStringAsync());
        Assert.That(npyResponse.Content.Headers.ContentType?.MediaType, Is.EqualTo("application/x-npy"));
        Assert.That(await npyResponse.Content.ReadAsByteArrayAsync(), Is.EqualTo(expectedNpy), ".npy body byte for byte what dualchunk run writes");

        using var jsonResponse = await client.PostAsync("/v1/predict", JsonBody(Json(input, 2, 8, E)[..^1] + $", \"output_mode\": \"{mode}\"}}"));
        Assert.That(jsonResponse.StatusCode, Is.EqualTo(HttpStatusCode.OK), await jsonResponse.Content.ReadAsStringAsync());
        using var doc = JsonDocument.Parse(await jsonResponse.Content.ReadAsStringAsync());
        var values = new List<float>();
        var nested = new List<int>();
        Flatten(doc.RootElement.GetProperty("output"), values, nested, 0);
        int[] shape = doc.RootElement.GetProperty("shape").EnumerateArray().Select(x => x.GetInt32()).ToArray();
        int[] expectedShape = mode == "all" ? [2, 8, H] : [2, H];
        Assert.Multiple(() =>
        {
            Assert.That(shape, Is.EqualTo(expectedShape));
            Assert.That(nested, Is.EqualTo(expectedShape), "the nesting of \"output\" matches \"shape\"");
            Assert.That(values, Has.Count.EqualTo(expected.Length));
        });
        // The contract is an exact float32 round trip: the JSON number parses back to the very float dualchunk run wrote.
        for (int i = 0; i < expected.Length; i++)
            Assert.That(BitConverter.SingleToInt32Bits(values[i]), Is.EqualTo(BitConverter.SingleToInt32Bits(expected[i])), $"output[{i}] ({mode}): {values[i]:R} vs {expected[i]:R}");
    }

    [Test]
    public async Task TwoDimensionalInputsMeanBatchOne()
    {
        using var factory = Service(TinyModel);
        using var client = await Ready(factory);
        var input = RandomWeights.Input(12 * E, 5);
        byte[] expectedNpy = ServerHarness.CliOutputFile("run", ServerHarness.Npy(input, 12, E), "last");
        using var npy = await client.PostAsync("/v1/predict", NpyBody(ServerHarness.Npy(input, 12, E)));
        Assert.That(await npy.Content.ReadAsByteArrayAsync(), Is.EqualTo(expectedNpy), "[N, E] .npy: output [1, H] as the CLI writes it");
        using var json = await client.PostAsync("/v1/predict", JsonBody(Json(input, 1, 12, E, batched: false)));
        Assert.That(json.StatusCode, Is.EqualTo(HttpStatusCode.OK), await json.Content.ReadAsStringAsync());
        using var doc = JsonDocument.Parse(await json.Content.ReadAsStringAsync());
        Assert.That(doc.RootElement.GetProperty("shape").EnumerateArray().Select(x => x.GetInt32()), Is.EqualTo(new[] { 1, H }));
        var values = doc.RootElement.GetProperty("output")[0].EnumerateArray().Select(x => x.GetSingle()).ToArray();
        Assert.That(values, Is.EqualTo(ServerHarness.NpyData(expectedNpy)), "shortest round-trip floats: JSON is exact too");
    }

    private static IEnumerable<TestCaseData> BadJson()
    {
        string Row(int e) => "[" + string.Join(",", Enumerable.Repeat("0.5", e)) + "]";
        string Seq(int n, int e) => "[" + string.Join(",", Enumerable.Repeat(Row(e), n)) + "]";
        yield return new TestCaseData("{\"input\": [[[1,2", "Malformed JSON").SetName("malformed: truncated");
        yield return new TestCaseData("{input: 1}", "Malformed JSON").SetName("malformed: not JSON");
        yield return new TestCaseData("[1,2]", "must be a JSON object").SetName("malformed: not an object");
        yield return new TestCaseData("{\"mode\": \"LastTimestep\"}", "Unknown property \"mode\"").SetName("unknown property");
        yield return new TestCaseData("{}", "no \"input\"").SetName("missing input");
        yield return new TestCaseData("{\"input\": []}", "empty").SetName("empty input");
        yield return new TestCaseData($"{{\"input\": [{Seq(4, 31)}]}}", "has 31 values; the model's embed size E is 32").SetName("wrong E");
        yield return new TestCaseData($"{{\"input\": [{Seq(4, 33)}]}}", "more than 32 values").SetName("wrong E: too many");
        yield return new TestCaseData($"{{\"input\": [{Seq(4, E)}, {Seq(8, E)}]}}", "Ragged input").SetName("ragged: sequence lengths");
        yield return new TestCaseData($"{{\"input\": [{Seq(8, E)}, {Seq(4, E)}]}}", "Ragged input").SetName("ragged: shorter second sequence");
        yield return new TestCaseData($"{{\"input\": [[{Row(E)}, {Row(E)}, {Row(E)}, 1.5]]}}", "Ragged input").SetName("ragged: depth");
        yield return new TestCaseData($"{{\"input\": [[{Row(E)}, {Row(E)}, {Row(E)}, [[1]]]]}}", "Ragged input").SetName("ragged: too deep");
        yield return new TestCaseData($"{{\"input\": [{Seq(6, E)}]}}", "not a multiple of the model's chunk size C = 4").SetName("N not a multiple of C");
        yield return new TestCaseData($"{{\"input\": [[[\"NaN\"{string.Concat(Enumerable.Repeat(",0", E - 1))}]]]}}", "NaN").SetName("NaN as a string");
        yield return new TestCaseData($"{{\"input\": [[[1e39{string.Concat(Enumerable.Repeat(",0", E - 1))}]]]}}", "not a finite float32").SetName("infinity: 1e39");
        yield return new TestCaseData($"{{\"input\": [{Seq(4, E)}], \"output_mode\": \"LastTimestep\"}}", "Unknown output mode 'LastTimestep'").SetName("unknown output mode");
        yield return new TestCaseData($"{{\"input\": [{Seq(4, E)}], \"output_mode\": 3}}", "output_mode").SetName("output mode not a string");
        yield return new TestCaseData($"{{\"input\": [{Seq(4, E)}, {Seq(4, E)}, {Seq(4, E)}]}}", "more than 2 sequences (the configured MaxBatch)").SetName("batch above MaxBatch");
        yield return new TestCaseData($"{{\"input\": [{Seq(12, E)}]}}", "more than 8 positions (the configured MaxSeqLen)").SetName("length above MaxSeqLen");
        yield return new TestCaseData($"{{\"input\": {Seq(12, E)}}}", "more than 8 positions (the configured MaxSeqLen)").SetName("2-D length above MaxSeqLen");
        yield return new TestCaseData($"{{\"input\": [{Seq(4, E)}]}} x", "Malformed JSON").SetName("trailing data");
    }

    [TestCaseSource(nameof(BadJson))]
    public async Task BadJsonGets400ProblemNamingWhatIsWrong(string body, string expected)
    {
        using var factory = Service(TinyModel, ("DualChunk:Models:default:MaxBatch", "2"), ("DualChunk:Models:default:MaxSeqLen", "8"));
        using var client = await Ready(factory);
        await AssertProblem(await client.PostAsync("/v1/predict", JsonBody(body)), HttpStatusCode.BadRequest, expected);
        // A bad request leaves the service serving good ones.
        using var good = await client.PostAsync("/v1/predict", JsonBody(Json(new float[4 * E], 1, 4, E)));
        Assert.That(good.StatusCode, Is.EqualTo(HttpStatusCode.OK));
    }

    private static IEnumerable<TestCaseData> BadNpy()
    {
        var ok = ServerHarness.Npy(new float[4 * E], 1, 4, E);
        yield return new TestCaseData(Encoding.ASCII.GetBytes("not npy at all"), "", "not a .npy file").SetName("npy: not npy");
        yield return new TestCaseData(ok[..40], "", "truncated").SetName("npy: truncated header");
        yield return new TestCaseData(ok[..^4], "", "needs 512 data bytes; the body has 508").SetName("npy: truncated data");
        yield return new TestCaseData(ServerHarness.Npy(new float[4 * 31], 1, 4, 31), "", "does not fit the model").SetName("npy: wrong E");
        yield return new TestCaseData(ServerHarness.Npy(new float[6 * E], 1, 6, E), "", "not a multiple of the model's chunk size C = 4").SetName("npy: N not a multiple of C");
        yield return new TestCaseData(ServerHarness.Npy(new float[4 * E], 4 * E), "", "rank 1").SetName("npy: rank 1");
        yield return new TestCaseData(ServerHarness.Npy([float.NaN, .. new float[4 * E - 1]], 1, 4, E), "", "NaN").SetName("npy: NaN");
        yield return new TestCaseData(ServerHarness.Npy([.. new float[5], float.PositiveInfinity, .. new float[4 * E - 6]], 1, 4, E), "", "at [0, 0, 5]").SetName("npy: infinity");
        yield return new TestCaseData(ok, "sum", "Unknown output mode 'sum'").SetName("npy: unknown output mode");
        // A 60-byte body claiming a huge shape: rejected from the header, nothing allocated from it.
        yield return new TestCaseData(ServerHarness.Npy([], 1000000, 1000000, E), "", "more than 2 sequences").SetName("npy: huge claimed batch");
        yield return new TestCaseData(ServerHarness.Npy([], 1, 2000000000, E), "", "more than 8 positions").SetName("npy: huge claimed length");
        var f8 = ServerHarness.Npy(new float[8 * E], 1, 4, E);
        Encoding.ASCII.GetBytes("<f8").CopyTo(f8, 21);
        yield return new TestCaseData(f8, "", "dtype is '<f8'").SetName("npy: float64");
        var bigHeader = (byte[])ok.Clone();
        bigHeader[6] = 2;
        yield return new TestCaseData(bigHeader[..8].Concat(new byte[] { 0xff, 0xff, 0xff, 0x7f }).ToArray(), "", "claims more than 4096 bytes").SetName("npy: v2 header claims 2 GB");
    }

    [TestCaseSource(nameof(BadNpy))]
    public async Task BadNpyGets400ProblemNamingWhatIsWrong(byte[] body, string mode, string expected)
    {
        using var factory = Service(TinyModel, ("DualChunk:Models:default:MaxBatch", "2"), ("DualChunk:Models:default:MaxSeqLen", "8"));
        using var client = await Ready(factory);
        await AssertProblem(await client.PostAsync("/v1/predict" + (mode.Length > 0 ? "?output_mode=" + mode : ""), NpyBody(body)), HttpStatusCode.BadRequest, expected);
    }

    [Test]
    public async Task BodyAboveTheLimitGets413()
    {
        using var factory = Service(TinyModel, ("Service:MaxRequestBodyBytes", "4096"));
        using var client = await Ready(factory);
        await AssertProblem(await client.PostAsync("/v1/predict", JsonBody(Json(new float[8 * E], 1, 8, E) + new string(' ', 5000))),
            HttpStatusCode.RequestEntityTooLarge, "limit is 4096");
        // Chunked (no Content-Length): cut off while reading.
        var chunked = new StreamContent(new MemoryStream(new byte[10000]));
        chunked.Headers.ContentType = new MediaTypeHeaderValue("application/x-npy");
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/predict") { Content = chunked };
        request.Headers.TransferEncodingChunked = true;
        await AssertProblem(await client.SendAsync(request), HttpStatusCode.RequestEntityTooLarge, "larger than 4096");
    }

    [Test]
    public async Task HealthLiveAndReadyAndMetrics()
    {
        using var factory = Service(TinyModel);
        using var client = await Ready(factory);
        using var ready = await client.GetAsync("/health/ready");
        using var live = await client.GetAsync("/health/live");
        Assert.That(ready.StatusCode, Is.EqualTo(HttpStatusCode.OK), await ready.Content.ReadAsStringAsync());
        Assert.That(live.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        using (var r = await client.PostAsync("/v1/predict", NpyBody(File.ReadAllBytes(TinyInput)))) Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        using (var r = await client.PostAsync("/v1/predict", JsonBody("{}"))) Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        string metrics = await client.GetStringAsync("/metrics");
        Assert.Multiple(() =>
        {
            Assert.That(metrics, Does.Contain("dualchunk_calls_total{"));
            Assert.That(metrics, Does.Match("dualchunk_call_duration_seconds_bucket\\{[^}]*le=\"5E-05\"\\}"), "the advised fine buckets reach Prometheus");
            Assert.That(metrics, Does.Match("dualchunk_call_duration_seconds_bucket\\{[^}]*le=\"0.005\"\\}"));
            Assert.That(metrics, Does.Contain("http_server_request_duration_seconds"));
        });
    }

    [Test]
    public async Task NotReadyWhileTheModelFailsToLoad()
    {
        string bad = Path.Combine(_files.Dir, "bad.dcw");
        TestModels.WriteGarbage(bad);
        using var factory = Service(bad);
        using var client = await Ready(factory);
        using var ready = await client.GetAsync("/health/ready");
        using var live = await client.GetAsync("/health/live");
        string body = await ready.Content.ReadAsStringAsync();
        Assert.Multiple(() =>
        {
            Assert.That(ready.StatusCode, Is.EqualTo(HttpStatusCode.ServiceUnavailable));
            Assert.That(body, Does.Contain("failed to load"));
            Assert.That(live.StatusCode, Is.EqualTo(HttpStatusCode.OK), "live: the process runs");
        });
        using var predict = await client.PostAsync("/v1/predict", NpyBody(File.ReadAllBytes(TinyInput)));
        await AssertProblem(predict, HttpStatusCode.ServiceUnavailable, "failed to load");
        Assert.That(predict.Headers.RetryAfter, Is.Not.Null);
    }

    /// <summary>A body that arrives only when released: holds a predict call (and its slot) in flight.</summary>
    private sealed class HeldContent(byte[] bytes, TaskCompletionSource started, Task release) : HttpContent
    {
        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context)
        {
            await stream.WriteAsync(bytes.AsMemory(0, 10));
            await stream.FlushAsync();
            started.TrySetResult();
            await release;
            await stream.WriteAsync(bytes.AsMemory(10));
        }

        protected override bool TryComputeLength(out long length)
        {
            length = bytes.Length;
            return true;
        }
    }

    [Test]
    public async Task OverloadGets503WithRetryAfterAtOnceAndQueuedCallsComplete()
    {
        // MaxConcurrentCalls + MaxQueuedCalls requests are admitted (being read, decoded, waiting or running); the
        // next one is refused at once.
        using var factory = Service(TinyModel, ("Service:MaxConcurrentCalls", "1"), ("Service:MaxQueuedCalls", "1"));
        using var client = await Ready(factory);
        var limits = factory.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<DualChunk.Server.ServiceOptions>>().Value;
        Assert.That((limits.MaxConcurrentCalls, limits.MaxQueuedCalls), Is.EqualTo((1, 1)));
        byte[] input = File.ReadAllBytes(TinyInput);
        var leases = new LeaseWatcher(factory.Services.GetRequiredService<DualChunk.Server.Pipeline.RequestGate>());
        var release = new TaskCompletionSource();
        var started1 = new TaskCompletionSource();
        var started2 = new TaskCompletionSource();
        var first = client.PostAsync("/v1/predict", new HeldContent(input, started1, release.Task) { Headers = { ContentType = new("application/x-npy") } });
        await started1.Task.WaitAsync(Bound); // call 1 sent its headers and waits to send the rest of its body
        await leases.WaitFor(active: 0, queued: 1).WaitAsync(Bound); // admitted, no model slot while its body is read
        var second = client.PostAsync("/v1/predict", new HeldContent(input, started2, release.Task) { Headers = { ContentType = new("application/x-npy") } });
        await started2.Task.WaitAsync(Bound);
        await leases.WaitFor(active: 0, queued: 2).WaitAsync(Bound);
        // Call 3 finds every admission taken: 503 at once, while calls 1 and 2 are still pending.
        using var rejected = await client.PostAsync("/v1/predict", NpyBody(input)).WaitAsync(Bound);
        Assert.That(first.IsCompleted || second.IsCompleted, Is.False, "calls 1 and 2 are still pending");
        await AssertProblem(rejected, HttpStatusCode.ServiceUnavailable, "retry after");
        Assert.That(rejected.Headers.RetryAfter?.Delta, Is.EqualTo(TimeSpan.FromSeconds(1)));
        release.SetResult();
        using var r1 = await first.WaitAsync(Bound);
        using var r2 = await second.WaitAsync(Bound);
        Assert.That((r1.StatusCode, r2.StatusCode), Is.EqualTo((HttpStatusCode.OK, HttpStatusCode.OK)));
        await leases.WaitFor(active: 0, queued: 0).WaitAsync(Bound);
    }

    [Test]
    public async Task ARequestBeingReadDoesNotHoldTheModelSlot()
    {
        // One model slot; a request whose body is still arriving (or that will be refused once read) must not make
        // a ready request wait for it.
        using var factory = Service(TinyModel, ("Service:MaxConcurrentCalls", "1"), ("Service:MaxQueuedCalls", "2"));
        using var client = await Ready(factory);
        byte[] input = File.ReadAllBytes(TinyInput);
        var leases = new LeaseWatcher(factory.Services.GetRequiredService<DualChunk.Server.Pipeline.RequestGate>());
        var release = new TaskCompletionSource();
        var started = new TaskCompletionSource();
        var slow = client.PostAsync("/v1/predict", new HeldContent(input, started, release.Task) { Headers = { ContentType = new("application/x-npy") } });
        await started.Task.WaitAsync(Bound);
        await leases.WaitFor(active: 0, queued: 1).WaitAsync(Bound);
        using (var fast = await client.PostAsync("/v1/predict", NpyBody(input)).WaitAsync(Bound))
            Assert.That(fast.StatusCode, Is.EqualTo(HttpStatusCode.OK), "served while the slow request's body is still arriving");
        Assert.That(slow.IsCompleted, Is.False);
        release.SetResult();
        using var r = await slow.WaitAsync(Bound);
        Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.OK));
    }

    /// <summary>The server's request gate: calls running and queued, polled (bounded) until they match.</summary>
    private sealed class LeaseWatcher(DualChunk.Server.Pipeline.RequestGate gate)
    {
        public async Task WaitFor(long active, long queued)
        {
            while (gate.Current != (active, queued)) await Task.Delay(5);
        }
    }

    private static async Task AssertProblem(HttpResponseMessage response, HttpStatusCode status, string detailContains)
    {
        using (response)
        {
            string body = await response.Content.ReadAsStringAsync();
            Assert.That(response.StatusCode, Is.EqualTo(status), body);
            Assert.That(response.Content.Headers.ContentType?.MediaType, Is.EqualTo("application/problem+json"), body);
            using var doc = JsonDocument.Parse(body);
            Assert.That(doc.RootElement.GetProperty("status").GetInt32(), Is.EqualTo((int)status));
            Assert.That(doc.RootElement.GetProperty("detail").GetString(), Does.Contain(detailContains).IgnoreCase, body);
        }
    }
}
