using System.Diagnostics;
using System.Globalization;
using System.Net;
using DualChunk.Core;
using DualChunk.Server.Grpc;
using Grpc.Core;
using StackExchange.Redis;

namespace DualChunk.Server.Store.Tests;

/// <summary>
/// Two real server processes on loopback sharing a real redis-server: sequences handed over by a drain (SIGTERM
/// between and during requests), lost to kill -9, resumed with sequence_length, refused across weights, and kept
/// serving with Redis stopped. Outputs are compared bitwise with <c>dualchunk stream</c> on the whole input.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class HandoverTests
{
    private static readonly ModelConfig Small = new(12, 32, 4, 2, 4, 64);
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);
    private const int C = 4, E = 12;
    private RedisServer _redis = null!;
    private string _dir = null!, _model = null!;
    private readonly List<ServerProcess> _servers = [];

    [OneTimeSetUp]
    public void StartRedis()
    {
        _redis = RedisServer.StartNew();
        _dir = Path.Combine(Path.GetTempPath(), "dualchunk-handover-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
        _model = WriteModel("a.dcw", Small, seed: 21);
    }

    [OneTimeTearDown]
    public void StopRedis()
    {
        _redis.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    [TearDown]
    public void StopServers()
    {
        foreach (var s in _servers)
        {
            if (TestContext.CurrentContext.Result.Outcome.Status == NUnit.Framework.Interfaces.TestStatus.Failed)
                TestContext.Out.WriteLine($"--- server {s.Port} output:\n{s.Output}");
            s.Dispose();
        }
        _servers.Clear();
    }

    private string WriteModel(string name, ModelConfig config, int seed)
    {
        string path = Path.Combine(_dir, name);
        DcwFile.Write(path, config, RandomWeights.Create(config, seed));
        return path;
    }

    private async Task<ServerProcess> Replica(string prefix, string? model = null, int chunkSize = C, params (string, string)[] extra)
    {
        var settings = new List<(string, string)>
        {
            ("Sequences:Store:Redis", _redis.Endpoint),
            ("Sequences:Store:KeyPrefix", prefix),
            ("Sequences:Store:LeaseDuration", "00:00:02"),
            ("Sequences:Store:OperationTimeout", "00:00:01"),
        };
        settings.AddRange(extra);
        var server = await ServerProcess.StartAsync(model ?? _model, chunkSize, [.. settings]);
        _servers.Add(server);
        return server;
    }

    private static string NewPrefix() => "handover:" + Guid.NewGuid().ToString("N")[..10] + ":";

    /// <summary>`dualchunk stream` (the real CLI, as a process) on the whole input: [B, N, H] for all, else [B, N / C, H].</summary>
    private float[] CliStream(string model, float[] input, int batch, int n, int e, string mode)
    {
        string inPath = Path.Combine(_dir, Guid.NewGuid().ToString("N") + ".npy"), outPath = inPath + ".out.npy";
        Npy.Write(inPath, input, [batch, n, e]);
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in new[] { Path.Combine(AppContext.BaseDirectory, "dualchunk.dll"), "stream", "--model", model, "--input", inPath, "--output", outPath, "--output-mode", mode })
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        _ = p.StandardOutput.ReadToEndAsync();
        Assert.That(p.WaitForExit(120_000), "dualchunk stream finished");
        Assert.That(p.ExitCode, Is.Zero, () => "dualchunk stream failed: " + stderr.Result);
        return Npy.Read(outPath).Data;
    }

    /// <summary>Chunks [from, from + count) of every row of a [B, N, E] input, as [B, count·C, E].</summary>
    private static float[] Slice(float[] input, int batch, int n, int e, int c, int from, int count)
    {
        var slice = new float[batch * count * c * e];
        for (int b = 0; b < batch; b++)
            input.AsSpan((b * n + from * c) * e, count * c * e).CopyTo(slice.AsSpan(b * count * c * e));
        return slice;
    }

    /// <summary>Puts a request's output [B, rows, H] at rows [at, at + rows) of the whole [B, total, H].</summary>
    private static void Place(float[] whole, float[] part, int batch, int total, int h, int at)
    {
        int rows = part.Length / (batch * h);
        for (int b = 0; b < batch; b++)
            part.AsSpan(b * rows * h, rows * h).CopyTo(whole.AsSpan((b * total + at) * h));
    }

    private static void AssertBitwise(float[] expected, float[] actual, string what)
    {
        Assert.That(actual, Has.Length.EqualTo(expected.Length), what);
        for (int i = 0; i < expected.Length; i++)
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
                Assert.Fail($"{what}: element {i} is {actual[i]:R}, expected {expected[i]:R} (bitwise)");
    }

    /// <summary>Sends until the answer is not a retryable one (503, or 409 "active on another replica"), within the bound.</summary>
    private static async Task<InferResult> Until(Func<Task<InferResult>> send)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var r = await send();
            bool retry = r.Status == HttpStatusCode.ServiceUnavailable || r.Status == HttpStatusCode.Conflict && r.Error.Contains("active on another replica", StringComparison.Ordinal);
            if (!retry || clock.Elapsed > Bound) return r;
            await Task.Delay(100);
        }
    }

    private static void AssertOk(InferResult r, string what)
        => Assert.That(r.Status, Is.EqualTo(HttpStatusCode.OK), $"{what}: {r.Text}");

    /// <summary>One client's sequence: its input [B, N, E], mode and batch, and the outputs gathered so far.</summary>
    private sealed class Client(string id, string mode, int batch, int chunks, int seed, int h = 32, int c = C, int e = E)
    {
        public string Id => id;

        public string Mode => mode;

        public int Batch => batch;

        public int N { get; } = chunks * c;

        public float[] Input { get; } = RandomWeights.Input(batch * chunks * c * e, seed);

        public float[] Output { get; } = new float[batch * (mode == "all" ? chunks * c : chunks) * h];

        /// <summary>Chunks answered so far.</summary>
        public int Sent { get; private set; }

        /// <summary>Sends chunks [from, from + count), with sequence_length = from·C unless it starts the sequence.</summary>
        public Task<InferResult> Send(ServerProcess server, int count, bool start = false, bool end = false, int? from = null)
        {
            int at = from ?? Sent;
            return server.InferAsync("dualchunk", id, Slice(Input, batch, N, e, c, at, count), batch, e, mode, start, end, start ? null : at * c);
        }

        /// <summary>The same request as <see cref="Send"/> over gRPC.</summary>
        public Task<GrpcResult> SendGrpc(ServerProcess server, int count, bool start = false, int? length = null)
            => server.GrpcInferAsync("dualchunk", id, Slice(Input, batch, N, e, c, Sent, count), batch, e, mode, start, sequenceLength: start ? null : length ?? Sent * c);

        /// <summary>Keeps a 200 answer's output for chunks [from, from + count).</summary>
        public void Accept(InferResult r, int count, int? from = null) => Accept(r.Output!, count, from);

        /// <summary>Keeps an answer's output for chunks [from, from + count).</summary>
        public void Accept(float[] output, int count, int? from = null)
        {
            int at = from ?? Sent, rowsPerChunk = mode == "all" ? c : 1;
            Place(Output, output, batch, Output.Length / (batch * h), h, at * rowsPerChunk);
            Sent = at + count;
        }
    }

    [Test]
    public async Task SigtermBetweenRequestsHandsEveryOpenSequenceOverBitwise()
    {
        string prefix = NewPrefix();
        var a = await Replica(prefix);
        var b = await Replica(prefix, extra: ("threads", "2")); // A at 1 thread, B at 2: the handover is exact at both
        Client[] clients =
        [
            new("drain-last", "last", 2, 6, seed: 1),
            new("drain-all", "all", 2, 6, seed: 2),
            new("drain-mean", "mean", 2, 6, seed: 3),
            new("drain-b1", "all", 1, 6, seed: 4),
        ];
        foreach (var cl in clients)
        {
            var r = await cl.Send(a, 2, start: true);
            AssertOk(r, $"{cl.Id} start on A");
            cl.Accept(r, 2);
            r = await cl.Send(a, 1);
            AssertOk(r, $"{cl.Id} append on A");
            cl.Accept(r, 1);
        }

        var clock = Stopwatch.StartNew();
        a.Terminate();
        var exit = await a.WaitForExitAsync(Bound);
        await TestContext.Out.WriteLineAsync($"SIGTERM to exit: {clock.ElapsedMilliseconds} ms");
        Assert.That(exit, Is.EqualTo(0), "A exits cleanly after the drain");
        Assert.That(a.Output, Does.Contain("Drain: 4 open sequences"), "the drain wrote all four");

        foreach (var cl in clients)
        {
            var r = await Until(() => cl.Send(b, 2));
            AssertOk(r, $"{cl.Id} on B after the drain");
            cl.Accept(r, 2);
            r = await cl.Send(b, 1, end: true);
            AssertOk(r, $"{cl.Id} last request on B");
            cl.Accept(r, 1);
            AssertBitwise(CliStream(_model, cl.Input, cl.Batch, cl.N, E, cl.Mode), cl.Output, $"{cl.Id}: A then B vs dualchunk stream");
        }
        var metrics = await b.GetAsync("/metrics");
        var restores = metrics.Body.Split('\n').Where(l => l.StartsWith("dualchunk_sequence_store_restores", StringComparison.Ordinal)).ToList();
        Assert.That(restores, Has.Some.Contains("result=\"ok\"").And.Some.EndsWith(" 4"), string.Join("\n", restores));
    }

    [Test]
    public async Task SigtermDuringARequestFinishesItThenHandsOver()
    {
        // A model and input large enough that a request takes a while: SIGTERM arrives while it runs.
        var config = new ModelConfig(64, 256, 8, 4, 64, 1024);
        string model = WriteModel("big.dcw", config, seed: 5);
        string prefix = NewPrefix();
        // Limits just above the sequence (the server warms up at its limits: keep that short).
        (string, string)[] limits = [("max-seq-len", "2048"), ("max-batch", "1")];
        var a = await Replica(prefix, model, 64, limits);
        var b = await Replica(prefix, model, 64, limits);
        const int Chunks = 28, InFlight = 24;
        var cl = new Client("during", "last", 1, Chunks, seed: 6, h: 256, c: 64, e: 64);
        var r = await cl.Send(a, 2, start: true);
        AssertOk(r, "start on A");
        cl.Accept(r, 2);

        var clock = Stopwatch.StartNew();
        var inFlight = cl.Send(a, InFlight);
        await Task.Delay(60); // the body is sent and its chunks are running
        a.Terminate();
        var during = await inFlight;
        await TestContext.Out.WriteLineAsync($"the request in flight at SIGTERM (sent 60 ms before) answered {(int)during.Status} after {clock.ElapsedMilliseconds} ms");
        if (during.Status == HttpStatusCode.OK)
        {
            cl.Accept(during, InFlight); // it finished on A before the drain wrote the sequence
        }
        else
        {
            // SIGTERM won the race before A admitted it: the client was told to retry (503), and does so on B.
            Assert.That(during.Status, Is.EqualTo(HttpStatusCode.ServiceUnavailable), during.Text);
        }
        Assert.That(await a.WaitForExitAsync(Bound), Is.EqualTo(0));

        while (cl.Sent < Chunks)
        {
            int count = Math.Min(Chunks - cl.Sent, InFlight);
            var next = await Until(() => cl.Send(b, count));
            AssertOk(next, $"on B from chunk {cl.Sent}");
            cl.Accept(next, count);
        }
        AssertBitwise(CliStream(model, cl.Input, 1, cl.N, 64, "last"), cl.Output, "A (SIGTERM mid-request) then B vs dualchunk stream");
    }

    [Test]
    public async Task KillNineLosesWhatWasNotSpilledAndSequenceLengthResumesFromTheSpill()
    {
        string prefix = NewPrefix();
        var a = await Replica(prefix, extra: ("Server:Sequences:IdleTimeoutSeconds", "2"));
        var b = await Replica(prefix);
        var raw = await ConnectionMultiplexer.ConnectAsync(_redis.Endpoint);
        await using var _ = raw;
        var db = raw.GetDatabase();

        var spilled = new Client("crash-spilled", "all", 2, 5, seed: 7);
        var r = await spilled.Send(a, 2, start: true);
        AssertOk(r, "start on A");
        spilled.Accept(r, 2);
        // Idle past the timeout: A spills it (8 positions) and frees it.
        var clock = Stopwatch.StartNew();
        while (!await db.HashExistsAsync(prefix + "{s:crash-spilled}:seq", "state") && clock.Elapsed < Bound) await Task.Delay(100);
        Assert.That(await db.HashExistsAsync(prefix + "{s:crash-spilled}:seq", "state"), "A spilled the idle sequence");
        // The next request resumes it on A from its own spill; A then holds 12 positions in memory, the store 8.
        r = await spilled.Send(a, 1);
        AssertOk(r, "append on A after the idle spill");
        spilled.Accept(r, 1);

        var never = new Client("crash-never-spilled", "last", 1, 3, seed: 8);
        r = await never.Send(a, 1, start: true);
        AssertOk(r, "start of a second sequence on A");
        a.KillHard();
        await a.WaitForExitAsync(Bound);

        // B: the dead owner's lease expires by itself (409 ABORTED until then), then the client's 12 positions meet
        // the store's 8: 409 naming both, nothing appended.
        var mismatch = await Until(() => spilled.Send(b, 1));
        Assert.That(mismatch.Status, Is.EqualTo(HttpStatusCode.Conflict), mismatch.Text);
        Assert.That(mismatch.Error, Does.Contain("holds 8 positions").And.Contain("sequence_length = 12"));
        // With the store's length the client resends from chunk 2 and the sequence continues, bitwise.
        r = await spilled.Send(b, 1, from: 2);
        AssertOk(r, "resend of chunk 2 on B with sequence_length 8");
        spilled.Accept(r, 1, from: 2);
        r = await spilled.Send(b, 2);
        AssertOk(r, "chunks 3 and 4 on B");
        spilled.Accept(r, 2);
        AssertBitwise(CliStream(_model, spilled.Input, 2, spilled.N, E, "all"), spilled.Output, "A, kill -9, B from the spill vs dualchunk stream");

        // The sequence never spilled: "lost", with the reason, not "never started".
        var lost = await Until(() => never.Send(b, 1));
        Assert.That(lost.Status, Is.EqualTo(HttpStatusCode.Conflict), lost.Text);
        Assert.That(lost.Error, Does.Contain("was lost").And.Contain("stopped without writing it"));
        var unknown = await b.InferAsync("dualchunk", "crash-nobody", new float[C * E], 1, E, "last", sequenceLength: 0);
        Assert.That(unknown.Status, Is.EqualTo(HttpStatusCode.BadRequest), unknown.Text);
        Assert.That(unknown.Error, Does.Contain("never started"));
    }

    [Test]
    public async Task ASequenceActiveOnOneReplicaIsRefusedOnTheOtherAndOtherWeightsNameBothFingerprintsOverRestAndGrpc()
    {
        string prefix = NewPrefix();
        var a = await Replica(prefix);
        var other = await Replica(prefix, WriteModel("other.dcw", Small, seed: 22));
        var cl = new Client("owned", "last", 2, 2, seed: 9);
        var r = await cl.Send(a, 1, start: true);
        AssertOk(r, "start on A");
        cl.Accept(r, 1);

        // Leased by A (alive): the other replica refuses, retryable (REST 409 + Retry-After, gRPC ABORTED), never forks it.
        var held = await cl.Send(other, 1);
        Assert.That(held.Status, Is.EqualTo(HttpStatusCode.Conflict), held.Text);
        Assert.That(held.Error, Does.Contain("active on another replica"));
        Assert.That(held.RetryAfter, Is.Not.Null, "retryable: Retry-After is set");
        var heldGrpc = await cl.SendGrpc(other, 1);
        Assert.That(heldGrpc.Code, Is.EqualTo(StatusCode.Aborted), heldGrpc.Detail);
        Assert.That(heldGrpc.Detail, Does.Contain("active on another replica").And.Contain("retryable"));
        var restart = await other.InferAsync("dualchunk", "owned", new float[C * E], 1, E, "last", start: true);
        Assert.That(restart.Status, Is.EqualTo(HttpStatusCode.Conflict), "a start elsewhere does not fork it");

        // A wrong sequence_length on the owner: 409 (REST) / FAILED_PRECONDITION (gRPC) naming both numbers; nothing appended.
        var wrong = await cl.SendGrpc(a, 1, length: 12);
        Assert.That(wrong.Code, Is.EqualTo(StatusCode.FailedPrecondition), wrong.Detail);
        Assert.That(wrong.Detail, Does.Contain("holds 4 positions").And.Contain("sequence_length = 12"));
        var wrongRest = await a.InferAsync("dualchunk", "owned", new float[2 * C * E], 2, E, "last", sequenceLength: 0);
        Assert.That(wrongRest.Status, Is.EqualTo(HttpStatusCode.Conflict), wrongRest.Text);
        Assert.That(wrongRest.Error, Does.Contain("holds 4 positions").And.Contain("sequence_length = 0"));
        var g = await cl.SendGrpc(a, 1);
        Assert.That(g.Code, Is.EqualTo(StatusCode.OK), "the right sequence_length continues, over gRPC: " + g.Detail);
        cl.Accept(g.Output!, 1);
        AssertBitwise(CliStream(_model, cl.Input, 2, cl.N, E, "last"), cl.Output, "REST then gRPC outputs (the refused requests appended nothing) vs dualchunk stream");

        // A drains it; the replica with other weights refuses to resume it, naming both fingerprints (REST and gRPC).
        a.Terminate();
        Assert.That(await a.WaitForExitAsync(Bound), Is.EqualTo(0));
        var more = RandomWeights.Input(2 * C * E, 14);
        var refused = await Until(() => other.InferAsync("dualchunk", "owned", more, 2, E, "last", sequenceLength: 8));
        Assert.That(refused.Status, Is.EqualTo(HttpStatusCode.Conflict), refused.Text);
        var refusedGrpc = await other.GrpcInferAsync("dualchunk", "owned", more, 2, E, "last", sequenceLength: 8);
        Assert.That(refusedGrpc.Code, Is.EqualTo(StatusCode.FailedPrecondition), refusedGrpc.Detail);
        foreach (string message in new[] { refused.Error, refusedGrpc.Detail })
        {
            Assert.That(message, Does.Contain("weights fingerprint"));
            Assert.That(System.Text.RegularExpressions.Regex.Matches(message, "[0-9a-f]{16}"), Has.Count.EqualTo(2), "both fingerprints named: " + message);
        }
        var metrics = (await other.GetAsync("/metrics")).Body.Split('\n');
        Assert.That(metrics, Has.Some.StartsWith("dualchunk_sequence_store_lease_conflicts_total"), "the documented name");
        Assert.That(metrics.Any(l => l.StartsWith("dualchunk_sequence_store_restores_total", StringComparison.Ordinal) && l.Contains("result=\"snapshot_refused\"", StringComparison.Ordinal)),
            "the documented name and result:\n" + string.Join("\n", metrics.Where(l => l.StartsWith("dualchunk_sequence", StringComparison.Ordinal))));
    }

    [Test]
    public async Task ReadinessAnswers503OverTheWireAfterSigtermThenTheSequenceContinuesOnTheOtherReplica()
    {
        string prefix = NewPrefix();
        // Server:ShutdownDelaySeconds keeps A's listeners open after SIGTERM: long enough to ask it over the wire.
        var a = await Replica(prefix, extra: ("Server:ShutdownDelaySeconds", "5"));
        var b = await Replica(prefix);
        var cl = new Client("ready-503", "all", 2, 6, seed: 13);
        var r = await cl.Send(a, 2, start: true);
        AssertOk(r, "start on A");
        cl.Accept(r, 2);
        r = await cl.Send(a, 1);
        AssertOk(r, "append on A");
        cl.Accept(r, 1);

        a.Terminate();
        // The first answers may precede the signal's handling (200); from then on 503 while the listeners stay open.
        var clock = Stopwatch.StartNew();
        HttpStatusCode? ready;
        while ((ready = await a.ReadyStatusAsync()) == HttpStatusCode.OK && clock.Elapsed < Bound) await Task.Delay(20);
        Assert.That(ready, Is.EqualTo(HttpStatusCode.ServiceUnavailable), "/v2/health/ready after SIGTERM:\n" + a.Output);
        var body = await a.GetAsync("/v2/health/ready");
        Assert.That(body.Body, Does.Contain("\"draining\":true"));
        var health = await a.GetAsync("/health/ready");
        Assert.That(health.Status, Is.EqualTo(HttpStatusCode.ServiceUnavailable), health.Body);
        Assert.That(health.Body, Does.Contain("shutting down"));
        Assert.That((await a.GrpcClient.ServerReadyAsync(new ServerReadyRequest())).Ready, Is.False, "gRPC ServerReady");
        Assert.That((await a.GetAsync("/v2/health/live")).Status, Is.EqualTo(HttpStatusCode.OK), "still live: not to be restarted");
        var refused = await cl.Send(a, 2);
        Assert.That(refused.Status, Is.EqualTo(HttpStatusCode.ServiceUnavailable), refused.Text);
        Assert.That(refused.Error, Does.Contain("shutting down"));
        Assert.That(refused.RetryAfter, Is.Not.Null, "retryable: Retry-After is set");
        Assert.That(await a.WaitForExitAsync(Bound), Is.EqualTo(0));
        Assert.That(a.Output, Does.Contain("readiness answers 503 for 5 s").And.Contain("Drain: 1 open sequences"));

        r = await Until(() => cl.Send(b, 2));
        AssertOk(r, "on B after the drain");
        cl.Accept(r, 2);
        r = await cl.Send(b, 1, end: true);
        AssertOk(r, "last request on B");
        cl.Accept(r, 1);
        AssertBitwise(CliStream(_model, cl.Input, 2, cl.N, E, "all"), cl.Output, "A, SIGTERM (readiness 503), B vs dualchunk stream");
    }

    [Test]
    public async Task DrainWithRedisKilledLogsEveryUnwrittenSequenceByIdAndExitsWithinTheShutdownTimeout()
    {
        using var redis = RedisServer.StartNew();
        var server = await ServerProcess.StartAsync(_model, C, ("Sequences:Store:Redis", redis.Endpoint), ("Sequences:Store:KeyPrefix", NewPrefix()),
            ("Sequences:Store:OperationTimeout", "00:00:00.500"), ("shutdownTimeoutSeconds", "10"));
        _servers.Add(server);
        string[] ids = ["unwritten-0", "unwritten-1", "unwritten-2", "unwritten-3", "unwritten-4"];
        foreach (string id in ids)
        {
            var cl = new Client(id, "last", 1, 2, seed: 15);
            AssertOk(await cl.Send(server, 1, start: true), id);
        }
        redis.Stop(); // SIGKILL: the drain finds no store

        server.Terminate();
        // A grace period above the shutdown timeout (10 s): the drain does not hang on the missing store.
        Assert.That(await server.WaitForExitAsync(TimeSpan.FromSeconds(25)), Is.EqualTo(0), "exits within the grace period:\n" + server.Output);
        Assert.That(server.Output, Does.Match(@"Drain: 0 open sequences \(0 bytes\) written to the store in [0-9.E-]+ s; 5 failed\."), server.Output);
        foreach (string id in ids)
            Assert.That(server.Output, Does.Contain($"Drain: sequence \"{id}\": ").And.Contain("(lost: not written to the store)"), $"{id} logged by id");
    }

    [Test]
    public async Task RedisStoppedMidRunKeepsSequencesInMemoryServing()
    {
        using var redis = RedisServer.StartNew();
        var server = await ServerProcess.StartAsync(_model, C, ("Sequences:Store:Redis", redis.Endpoint), ("Sequences:Store:KeyPrefix", NewPrefix()),
            ("Sequences:Store:LeaseDuration", "00:00:01"), ("Sequences:Store:OperationTimeout", "00:00:00.500"));
        _servers.Add(server);
        var cl = new Client("redis-down", "mean", 2, 6, seed: 10);
        var r = await cl.Send(server, 2, start: true);
        AssertOk(r, "start");
        cl.Accept(r, 2);

        redis.Stop();
        r = await cl.Send(server, 2);
        AssertOk(r, "append with Redis stopped");
        cl.Accept(r, 2);
        var clock = Stopwatch.StartNew();
        (HttpStatusCode Status, string Body) ready;
        do
        {
            await Task.Delay(200);
            ready = await server.GetAsync("/v2/health/ready");
        }
        while (!ready.Body.Contains("degraded", StringComparison.Ordinal) && clock.Elapsed < Bound);
        Assert.That(ready.Status, Is.EqualTo(HttpStatusCode.OK), "still ready: " + ready.Body);
        Assert.That(ready.Body, Does.Contain("\"sequence_store\":\"degraded\""));
        var health = await server.GetAsync("/health/ready");
        Assert.That(health.Status, Is.EqualTo(HttpStatusCode.OK), health.Body);
        Assert.That(health.Body, Does.Contain("Degraded"));
        var stateless = await server.InferAsync("dualchunk", "", RandomWeights.Input(C * E, 3), 1, E, "last");
        Assert.That(stateless.Status, Is.EqualTo(HttpStatusCode.OK), "stateless requests untouched: " + stateless.Text);
        var fresh = new Client("redis-down-new", "last", 1, 2, seed: 11);
        r = await fresh.Send(server, 2, start: true);
        AssertOk(r, "a new sequence starts in memory while the store is down");

        r = await cl.Send(server, 2, end: true);
        AssertOk(r, "last append with Redis stopped");
        cl.Accept(r, 2);
        AssertBitwise(CliStream(_model, cl.Input, 2, cl.N, E, "mean"), cl.Output, "appends across the Redis outage vs dualchunk stream");
        var metrics = await server.GetAsync("/metrics");
        Assert.That(metrics.Body, Does.Contain("dualchunk_sequence_store_errors_total"));

        redis.Start();
        clock.Restart();
        do
        {
            await Task.Delay(200);
            ready = await server.GetAsync("/v2/health/ready");
        }
        while (!ready.Body.Contains("\"sequence_store\":\"ok\"", StringComparison.Ordinal) && clock.Elapsed < Bound);
        Assert.That(ready.Body, Does.Contain("\"sequence_store\":\"ok\""), "the store is back");
    }
}
