using System.Net;
using System.Text;
using System.Text.Json;
using DualChunk.Server.Grpc;
using DualChunk.Server.Sequences;
using Microsoft.Extensions.DependencyInjection;
using static DualChunk.Server.Tests.OipRestTests;
using static DualChunk.Server.Tests.ServerHarness;

namespace DualChunk.Server.Tests;

/// <summary>Sequences (Triton's sequence extension) over REST and gRPC, against `dualchunk stream`.</summary>
[TestFixture]
public sealed class SequenceTests
{
    private const string Infer = "/v2/models/dualchunk/infer";

    /// <summary>Rows [from, to) of every batch row of a [B, N, E] input.</summary>
    private static float[] Slice(float[] input, int batch, int seqLen, int from, int to)
    {
        var result = new float[batch * (to - from) * E];
        for (int b = 0; b < batch; b++)
            input.AsSpan((b * seqLen + from) * E, (to - from) * E).CopyTo(result.AsSpan(b * (to - from) * E));
        return result;
    }

    /// <summary>Concatenates [B, n_i, H] outputs along the second axis.</summary>
    private static float[] Concat(int batch, List<(float[] Data, int Rows)> parts)
    {
        int total = parts.Sum(p => p.Rows);
        var result = new float[batch * total * H];
        int at = 0;
        foreach (var (data, rows) in parts)
        {
            for (int b = 0; b < batch; b++)
                data.AsSpan(b * rows * H, rows * H).CopyTo(result.AsSpan((b * total + at) * H));
            at += rows;
        }
        return result;
    }

    private static string SeqParams(string id, bool start, bool end, string mode)
        => $"\"sequence_id\": {id}, \"sequence_start\": {(start ? "true" : "false")}, \"sequence_end\": {(end ? "true" : "false")}, \"output_mode\": \"{mode}\"";

    private static Task<HttpResponseMessage> Append(HttpClient client, string id, float[] chunk, int batch, bool start, bool end, string mode = "last")
        => client.PostAsync(Infer, BinaryBody(BinaryJson([batch, chunk.Length / batch / E, E], chunk.Length * 4, parameters: SeqParams(id, start, end, mode)), Bytes(chunk)));

    [TestCase("last")]
    [TestCase("all")]
    [TestCase("mean")]
    public async Task ThreeAppendsAreDualchunkStreamsBitwiseOverRestAndGrpc(string mode)
    {
        using var factory = Start();
        using var client = await RestClient(factory);
        var grpc = await GrpcClient(factory);
        const int batch = 2, seqLen = 16; // 4 chunks: appended as 1 + 2 + 1
        var input = Input(batch * seqLen * E, 31);
        float[] expected = CliOutput("stream", input, [batch, seqLen, E], mode);
        int perChunk = mode == "all" ? C : 1;
        (int From, int To)[] requests = [(0, 4), (4, 12), (12, 16)];

        var rest = new List<(float[], int)>();
        for (int i = 0; i < requests.Length; i++)
        {
            var (from, to) = requests[i];
            using var r = await Append(client, "41", Slice(input, batch, seqLen, from, to), batch, i == 0, i == requests.Length - 1, mode);
            var (data, shape, _) = await Output(r);
            Assert.That(shape, Is.EqualTo(new[] { batch, (to - from) / C * perChunk, H }));
            rest.Add((data, shape[1]));
        }
        Assert.That(Bytes(Concat(batch, rest)), Is.EqualTo(Bytes(expected)), "REST: the sequence's outputs are dualchunk stream's, bitwise");

        var viaGrpc = new List<(float[], int)>();
        for (int i = 0; i < requests.Length; i++)
        {
            var (from, to) = requests[i];
            var request = GrpcTests.Request(Slice(input, batch, seqLen, from, to), [batch, to - from, E], mode);
            request.Parameters["sequence_id"] = new InferParameter { StringParam = "g-41" };
            request.Parameters["sequence_start"] = new InferParameter { BoolParam = i == 0 };
            request.Parameters["sequence_end"] = new InferParameter { BoolParam = i == requests.Length - 1 };
            var response = await grpc.ModelInferAsync(request);
            viaGrpc.Add((Floats(response.RawOutputContents[0].Span), (int)response.Outputs[0].Shape[1]));
        }
        Assert.That(Bytes(Concat(batch, viaGrpc)), Is.EqualTo(Bytes(expected)), "gRPC: bitwise dualchunk stream's too");
        Assert.That(factory.Services.GetRequiredService<SequenceTable>().OpenCount, Is.Zero, "sequence_end freed both");
    }

    private static async Task ExpectError(HttpResponseMessage response, HttpStatusCode status, string message)
    {
        using (response)
        {
            string body = await response.Content.ReadAsStringAsync();
            Assert.That(response.StatusCode, Is.EqualTo(status), body);
            Assert.That(JsonDocument.Parse(body).RootElement.GetProperty("error").GetString(), Does.Contain(message), body);
        }
    }

    [Test]
    public async Task EveryWayASequenceIsNotOpenOrRefusedIsNamed()
    {
        using var factory = Start(("Server:Sequences:MaxSequences", "2"), ("Server:Sequences:MaxSequenceLength", "16"));
        using var client = await RestClient(factory);
        var chunk = Input(2 * C * E, 3);
        var one = chunk[..(C * E)];
        using (var r = await Append(client, "1", chunk, 2, start: true, end: false)) Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        await ExpectError(await Append(client, "1", one, 1, false, false), HttpStatusCode.BadRequest, "started with batch B = 2; this request has B = 1");
        await ExpectError(await Append(client, "1", chunk, 2, false, false, "mean"), HttpStatusCode.Conflict, "\"mean\" is no longer available");
        using (var r = await Append(client, "\"one\"", one, 1, true, false)) Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        await ExpectError(await Append(client, "3", one, 1, true, false), HttpStatusCode.ServiceUnavailable, "2 sequences are open, the limit");
        await ExpectError(await Append(client, "\"1\"", one, 1, false, false), HttpStatusCode.BadRequest, "Sequence \"1\" is not open: it was never started");
        // Length: 4 positions so far, 16 allowed.
        await ExpectError(await Append(client, "1", Input(2 * 16 * E, 4), 2, false, false), HttpStatusCode.BadRequest, "has 4 positions; 16 more would pass its limit of 16");
        using (var r = await Append(client, "1", Input(2 * 12 * E, 4), 2, false, true)) Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.OK), "up to the limit");
        await ExpectError(await Append(client, "1", chunk, 2, false, false), HttpStatusCode.BadRequest, "Sequence 1 is not open: it was ended by a request with sequence_end");
        // A start on an open id restarts it: "one" had 4 positions, now it has the new request's only.
        using (var r = await Append(client, "\"one\"", one, 1, true, false, "mean"))
        {
            var (data, _, _) = await Output(r);
            float[] expected = CliOutput("run", one, [1, C, E], "mean");
            Assert.That(Bytes(data), Is.EqualTo(Bytes(expected)), "a restarted sequence starts from nothing");
        }
        Assert.That(factory.Services.GetRequiredService<SequenceTable>().OpenCount, Is.EqualTo(1));
    }

    [Test]
    public async Task IdleSequencesAreFreedAndTheNextRequestIsToldWhy()
    {
        using var factory = Start(("Server:Sequences:IdleTimeoutSeconds", "0.3"), ("Server:Sequences:MaxSequences", "100"));
        using var client = await RestClient(factory);
        var table = factory.Services.GetRequiredService<SequenceTable>();
        var one = Input(C * E, 9);
        for (int i = 1; i <= 50; i++)
        {
            using var r = await Append(client, i.ToString(System.Globalization.CultureInfo.InvariantCulture), one, 1, true, false);
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        }
        Assert.That(table.StateBytes, Is.GreaterThan(0));
        var deadline = DateTime.UtcNow + Bound;
        while (table.OpenCount > 0 && DateTime.UtcNow < deadline) await Task.Delay(50);
        Assert.That((table.OpenCount, table.StateBytes), Is.EqualTo((0, 0L)), "every idle sequence freed, its state bytes returned");
        await ExpectError(await Append(client, "7", one, 1, false, false), HttpStatusCode.BadRequest, "Sequence 7 is not open: it idled out after 0.3 s");
    }

    [Test]
    public async Task TheStateBudgetRefusesWithoutEvicting()
    {
        // One sequence of B=1 at 4 positions holds L·(N/C)·2H·4 + 2H·8 = 2·1·64·4 + 512 = 1024 bytes (tiny: L=2, H=32).
        using var factory = Start(("Server:Sequences:MaxStateBytes", "2100"));
        using var client = await RestClient(factory);
        var one = Input(C * E, 9);
        using (var r = await Append(client, "1", one, 1, true, false)) Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        using (var r = await Append(client, "2", one, 1, true, false)) Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        await ExpectError(await Append(client, "3", one, 1, true, false), HttpStatusCode.ServiceUnavailable, "MaxStateBytes");
        await ExpectError(await Append(client, "1", one, 1, false, false), HttpStatusCode.ServiceUnavailable, "no open sequence is evicted");
        using (var r = await Append(client, "2", [.. one, .. one], 1, false, true)) Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.ServiceUnavailable), "growing 2 passes the budget too");
        using (var r = await Append(client, "1", [], 1, false, true)) Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), "an empty append is invalid");
        Assert.That(factory.Services.GetRequiredService<SequenceTable>().OpenCount, Is.EqualTo(2), "both still open");
    }
}
