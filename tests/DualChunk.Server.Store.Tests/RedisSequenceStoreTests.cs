using System.Diagnostics;
using DualChunk.Core;
using DualChunk.Server.Sequences.Store;
using StackExchange.Redis;

namespace DualChunk.Server.Store.Tests;

/// <summary>RedisSequenceStore against a real redis-server on loopback: round trip, TTLs, prefixes, leases, fencing, Redis down.</summary>
[TestFixture]
public sealed class RedisSequenceStoreTests
{
    private static readonly ModelConfig Small = new(12, 32, 4, 2, 4, 64);
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);
    private readonly List<IAsyncDisposable> _disposables = [];

    [TearDown]
    public async Task TearDown()
    {
        foreach (var d in _disposables) await d.DisposeAsync();
        _disposables.Clear();
    }

    private RedisSequenceStore Store(RedisServer server, string prefix, string owner, TimeSpan? lease = null, TimeSpan? timeout = null,
        TimeSpan? retention = null, long? maxSnapshot = null)
    {
        var store = new RedisSequenceStore(new SequenceStoreOptions
        {
            Redis = server.Endpoint,
            KeyPrefix = prefix,
            OwnerId = owner,
            LeaseDuration = lease ?? TimeSpan.FromSeconds(30),
            OperationTimeout = timeout ?? TimeSpan.FromSeconds(2),
            Retention = retention ?? TimeSpan.FromHours(24),
            MaxSnapshotBytes = maxSnapshot ?? 512L * 1024 * 1024,
        });
        _disposables.Add(store);
        return store;
    }

    private static string NewPrefix() => "test:" + Guid.NewGuid().ToString("N")[..12] + ":";

    private async Task<IDatabase> Raw(RedisServer server)
    {
        var mux = await ConnectionMultiplexer.ConnectAsync(server.Endpoint);
        _disposables.Add(mux);
        return mux.GetDatabase();
    }

    private static DualChunkModel Model(int seed) => DualChunkModel.FromTensors(RandomWeights.Create(Small, seed), Small);

    private static float[] Input(int batch, int chunks, int seed) => RandomWeights.Input(batch * chunks * Small.ChunkSize * Small.EmbedDim, seed);

    private static float[] Append(DualChunkStream stream, float[] input, int chunk, OutputMode mode)
    {
        int c = stream.ChunkSize, e = stream.Model.Config.EmbedDim, b = stream.Batch, n = input.Length / (b * e);
        var chunkInput = new float[b * c * e];
        for (int row = 0; row < b; row++)
            input.AsSpan((row * n + chunk * c) * e, c * e).CopyTo(chunkInput.AsSpan(row * c * e));
        var output = new float[stream.Model.OutputLength(b, c, mode)];
        stream.Append(chunkInput, output, mode);
        return output;
    }

    private static void AssertBitwise(float[] expected, float[] actual, string what)
    {
        Assert.That(actual, Has.Length.EqualTo(expected.Length), what);
        for (int i = 0; i < expected.Length; i++)
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
                Assert.Fail($"{what}: element {i} is {actual[i]:R}, expected {expected[i]:R} (bitwise)");
    }

    [TestCase(OutputMode.LastTimestep)]
    [TestCase(OutputMode.All)]
    [TestCase(OutputMode.MeanPool)]
    public async Task SpillOnOneReplicaRestoreOnAnotherContinuesBitwise(OutputMode mode)
    {
        var server = SharedRedis.Server;
        string prefix = NewPrefix(), id = "seq-" + mode;
        var first = Store(server, prefix, "replica-a");
        var second = Store(server, prefix, "replica-b");
        using var model = Model(seed: 11);
        const int Batch = 2, Chunks = 5, SpillAfter = 3;
        var input = Input(Batch, Chunks, seed: 5);

        // Uninterrupted: every chunk on one stream.
        using var whole = model.CreateStream(Batch);
        var expected = Enumerable.Range(0, Chunks).Select(k => Append(whole, input, k, mode)).ToArray();

        // Replica A: start, append three chunks, spill (releasing the lease) and free the stream.
        var begun = await first.BeginAsync(id, "dualchunk");
        Assert.That(begun.Status, Is.EqualTo(StoreStatus.Ok), begun.Message);
        byte[] snapshot;
        using (var a = model.CreateStream(Batch))
        {
            for (int k = 0; k < SpillAfter; k++) AssertBitwise(expected[k], Append(a, input, k, mode), $"chunk {k} on A");
            snapshot = a.Snapshot();
            var spilled = await first.SpillAsync(id, begun.Generation, "dualchunk", snapshot, a.Length, releaseLease: true);
            Assert.That(spilled.Status, Is.EqualTo(StoreStatus.Ok), spilled.Message);
        }

        // Replica B: acquire, restore into a fresh stream of the same model (loaded again), continue.
        var acquired = await second.AcquireAsync(id);
        Assert.That(acquired.Status, Is.EqualTo(StoreStatus.Ok), acquired.Message);
        var record = acquired.Value!;
        Assert.Multiple(() =>
        {
            Assert.That(record.Snapshot, Is.EqualTo(snapshot), "the stored bytes are the snapshot's");
            Assert.That(record.Positions, Is.EqualTo(SpillAfter * Small.ChunkSize));
            Assert.That(record.Model, Is.EqualTo("dualchunk"));
            Assert.That(record.LastOwner, Is.EqualTo("replica-a"));
            Assert.That(record.Spilled, Is.Not.Null);
            Assert.That(record.Ended, Is.Null);
            Assert.That(record.Generation, Is.GreaterThan(begun.Generation));
        });
        using var reloaded = Model(seed: 11);
        using var b = reloaded.CreateStream(Batch);
        b.Restore(record.Snapshot);
        Assert.That(b.Length, Is.EqualTo(record.Positions));
        for (int k = SpillAfter; k < Chunks; k++) AssertBitwise(expected[k], Append(b, input, k, mode), $"chunk {k} on B after the handover");
    }

    [Test]
    public async Task RecordLivesForTheRetentionAndTheLeaseForItsDuration()
    {
        var server = SharedRedis.Server;
        string prefix = NewPrefix();
        var store = Store(server, prefix, "replica-a", lease: TimeSpan.FromSeconds(20), retention: TimeSpan.FromMinutes(90));
        var db = await Raw(server);
        var begun = await store.BeginAsync("ttl", "m");
        Assert.That(begun.IsOk, begun.Message);
        var spilled = await store.SpillAsync("ttl", begun.Generation, "m", new byte[100], 0, releaseLease: false);
        Assert.That(spilled.IsOk, spilled.Message);
        var recordTtl = await db.KeyTimeToLiveAsync(store.RecordKey("ttl"));
        var leaseTtl = await db.KeyTimeToLiveAsync(store.LeaseKey("ttl"));
        Assert.Multiple(() =>
        {
            Assert.That(recordTtl, Is.Not.Null.And.LessThanOrEqualTo(TimeSpan.FromMinutes(90)).And.GreaterThan(TimeSpan.FromMinutes(89)));
            Assert.That(leaseTtl, Is.Not.Null.And.LessThanOrEqualTo(TimeSpan.FromSeconds(20)).And.GreaterThan(TimeSpan.FromSeconds(10)));
        });
        Assert.That((string?)await db.StringGetAsync(store.LeaseKey("ttl")), Is.EqualTo("replica-a"));
        // The default retention is 24 h.
        Assert.That(new SequenceStoreOptions().Retention, Is.EqualTo(TimeSpan.FromHours(24)));
    }

    [Test]
    public async Task KeyPrefixesIsolateDeployments()
    {
        var server = SharedRedis.Server;
        string prodPrefix = NewPrefix(), stagingPrefix = NewPrefix();
        var prod = Store(server, prodPrefix, "prod-1");
        var staging = Store(server, stagingPrefix, "staging-1");
        var begun = await prod.BeginAsync("shared-id", "m");
        Assert.That((await prod.SpillAsync("shared-id", begun.Generation, "m", new byte[] { 1, 2, 3 }, 4, releaseLease: false)).IsOk);

        Assert.That((await staging.AcquireAsync("shared-id")).Status, Is.EqualTo(StoreStatus.NotFound), "another prefix sees nothing");
        var stagingBegun = await staging.BeginAsync("shared-id", "m");
        Assert.That(stagingBegun.Status, Is.EqualTo(StoreStatus.Ok), "nor is it held there");

        var mux = await ConnectionMultiplexer.ConnectAsync(server.Endpoint);
        _disposables.Add(mux);
        var keys = mux.GetServer(mux.GetEndPoints()[0]).Keys(pattern: prodPrefix + "*").Select(k => (string)k!).ToList();
        Assert.That(keys, Is.EquivalentTo(new[] { prodPrefix + "{shared-id}:seq", prodPrefix + "{shared-id}:lease" }));
        Assert.That((await prod.AcquireAsync("shared-id")).Value!.Snapshot, Is.EqualTo(new byte[] { 1, 2, 3 }), "prod's record untouched by staging's start");
    }

    [Test]
    public async Task LeaseIsOneOwnerAtATimeAndReleasedOnlyByItsOwner()
    {
        var server = SharedRedis.Server;
        string prefix = NewPrefix();
        var a = Store(server, prefix, "replica-a");
        var b = Store(server, prefix, "replica-b");
        var db = await Raw(server);
        var begun = await a.BeginAsync("s", "m");
        Assert.That(begun.IsOk, begun.Message);

        var acquired = await b.AcquireAsync("s");
        Assert.Multiple(() =>
        {
            Assert.That(acquired.Status, Is.EqualTo(StoreStatus.HeldByOther));
            Assert.That(acquired.Holder, Is.EqualTo("replica-a"));
            Assert.That(acquired.Message, Does.Contain("active on another replica").And.Contain("replica-a"));
        });
        Assert.That((await b.BeginAsync("s", "m")).Status, Is.EqualTo(StoreStatus.HeldByOther), "a start elsewhere does not fork it");
        Assert.That((await b.SpillAsync("s", 1, "m", new byte[8], 0, releaseLease: true)).Status, Is.EqualTo(StoreStatus.HeldByOther));
        Assert.That((await b.EndAsync("s", 1)).Status, Is.EqualTo(StoreStatus.HeldByOther));
        Assert.That((await b.ReleaseAsync("s")).IsOk, "releasing a lease one does not hold is a no-op");
        Assert.That((string?)await db.StringGetAsync(a.LeaseKey("s")), Is.EqualTo("replica-a"), "compare-and-delete left A's lease");

        Assert.That((await a.AcquireAsync("s")).Status, Is.EqualTo(StoreStatus.Ok), "the holder may acquire again");
        Assert.That((await a.ReleaseAsync("s")).IsOk);
        Assert.That(await db.KeyExistsAsync(a.LeaseKey("s")), Is.False);
        var now = await b.AcquireAsync("s");
        Assert.That(now.Status, Is.EqualTo(StoreStatus.Ok), now.Message);
        Assert.That(now.Value!.Snapshot, Is.Null, "started, never spilled: the record says so (lost, not never started)");
        Assert.That(now.Value.Spilled, Is.Null);
        Assert.That(now.Value.LastOwner, Is.EqualTo("replica-a"));
    }

    [Test]
    public async Task LeaseOfADeadOwnerExpiresAndItsStaleWritesAreFenced()
    {
        var server = SharedRedis.Server;
        string prefix = NewPrefix();
        var a = Store(server, prefix, "replica-a", lease: TimeSpan.FromMilliseconds(400));
        var b = Store(server, prefix, "replica-b", lease: TimeSpan.FromSeconds(30));
        var begun = await a.BeginAsync("s", "m");
        Assert.That((await a.SpillAsync("s", begun.Generation, "m", new byte[] { 1 }, 4, releaseLease: false)).IsOk);
        Assert.That((await b.AcquireAsync("s")).Status, Is.EqualTo(StoreStatus.HeldByOther));

        // A stops renewing (it died, or lost Redis): the lease expires by itself.
        var waited = Stopwatch.StartNew();
        StoreResult<StoredSequence> taken;
        do
        {
            await Task.Delay(100);
            taken = await b.AcquireAsync("s");
        }
        while (taken.Status == StoreStatus.HeldByOther && waited.Elapsed < Bound);
        Assert.That(taken.Status, Is.EqualTo(StoreStatus.Ok), taken.Message);
        Assert.That(taken.Value!.Snapshot, Is.EqualTo(new byte[] { 1 }));

        // A comes back with its old copy: refused while B holds the lease, and fenced after B released it.
        Assert.That((await a.SpillAsync("s", begun.Generation, "m", new byte[] { 2 }, 8, releaseLease: true)).Status, Is.EqualTo(StoreStatus.HeldByOther));
        Assert.That((await a.RenewAsync("s", begun.Generation)).Status, Is.EqualTo(StoreStatus.HeldByOther));
        Assert.That((await b.SpillAsync("s", taken.Value.Generation, "m", new byte[] { 3 }, 8, releaseLease: true)).IsOk);
        var fenced = await a.SpillAsync("s", begun.Generation, "m", new byte[] { 2 }, 8, releaseLease: true);
        Assert.That(fenced.Status, Is.EqualTo(StoreStatus.Fenced), fenced.Message);
        Assert.That((await a.RenewAsync("s", begun.Generation)).Status, Is.EqualTo(StoreStatus.Fenced));
        Assert.That((await a.EndAsync("s", begun.Generation)).Status, Is.EqualTo(StoreStatus.Fenced));
        Assert.That((await b.AcquireAsync("s")).Value!.Snapshot, Is.EqualTo(new byte[] { 3 }), "B's write stands");
    }

    [Test]
    public async Task EndedAndNeverStartedAreTold()
    {
        var server = SharedRedis.Server;
        string prefix = NewPrefix();
        var a = Store(server, prefix, "replica-a");
        var b = Store(server, prefix, "replica-b");
        var db = await Raw(server);
        var never = await b.AcquireAsync("never");
        Assert.That(never.Status, Is.EqualTo(StoreStatus.NotFound));
        Assert.That(never.Message, Does.Contain("'never'"));
        Assert.That(await db.KeyExistsAsync(b.LeaseKey("never")), Is.False, "no lease taken on nothing");

        var begun = await a.BeginAsync("done", "m");
        Assert.That((await a.SpillAsync("done", begun.Generation, "m", new byte[64], 4, releaseLease: false)).IsOk);
        Assert.That((await a.EndAsync("done", begun.Generation)).IsOk);
        var ended = await b.AcquireAsync("done");
        Assert.That(ended.Status, Is.EqualTo(StoreStatus.Ok), ended.Message);
        Assert.Multiple(() =>
        {
            Assert.That(ended.Value!.Ended, Is.Not.Null);
            Assert.That(ended.Value.Snapshot, Is.Null, "the state is deleted");
            Assert.That(ended.Value.Model, Is.EqualTo("m"));
        });
        Assert.That(await db.KeyExistsAsync(b.LeaseKey("done")), Is.False, "no lease on an ended sequence");
        var ttl = await db.KeyTimeToLiveAsync(b.RecordKey("done"));
        Assert.That(ttl, Is.Not.Null, "the ended record expires with the retention");

        // A start on an ended id starts it afresh.
        var again = await b.BeginAsync("done", "m");
        Assert.That(again.IsOk, again.Message);
        Assert.That(again.Generation, Is.GreaterThan(begun.Generation));
        Assert.That((await a.AcquireAsync("done")).Status, Is.EqualTo(StoreStatus.HeldByOther));
    }

    [Test]
    public async Task CorruptedStateIsRefusedByRestore()
    {
        var server = SharedRedis.Server;
        var store = Store(server, NewPrefix(), "replica-a");
        var db = await Raw(server);
        using var model = Model(seed: 3);
        using var stream = model.CreateStream(1);
        Append(stream, Input(1, 1, seed: 9), 0, OutputMode.LastTimestep);
        var begun = await store.BeginAsync("c", "m");
        Assert.That((await store.SpillAsync("c", begun.Generation, "m", stream.Snapshot(), stream.Length, releaseLease: true)).IsOk);
        var bytes = (byte[])(await db.HashGetAsync(store.RecordKey("c"), "state"))!;
        bytes[100] ^= 0x01;
        await db.HashSetAsync(store.RecordKey("c"), "state", bytes);
        var acquired = await store.AcquireAsync("c");
        using var other = model.CreateStream(1);
        var e = Assert.Throws<StreamSnapshotException>(() => other.Restore(acquired.Value!.Snapshot));
        Assert.That(e!.Message, Does.Contain("checksum"));
    }

    [Test]
    public async Task SnapshotOverTheLimitIsTooLargeWithoutAWrite()
    {
        var server = SharedRedis.Server;
        var store = Store(server, NewPrefix(), "replica-a", maxSnapshot: 64);
        var db = await Raw(server);
        var begun = await store.BeginAsync("big", "m");
        var r = await store.SpillAsync("big", begun.Generation, "m", new byte[65], 4, releaseLease: true);
        Assert.That(r.Status, Is.EqualTo(StoreStatus.TooLarge));
        Assert.That(r.Message, Does.Contain("65").And.Contain("MaxSnapshotBytes"));
        Assert.That(await db.HashExistsAsync(store.RecordKey("big"), "state"), Is.False);
    }

    [Test]
    public async Task RedisStoppedIsATypedErrorFastAndTheStoreRecoversWhenItIsBack()
    {
        using var server = RedisServer.StartNew();
        var store = Store(server, NewPrefix(), "replica-a", timeout: TimeSpan.FromSeconds(1));
        var begun = await store.BeginAsync("s", "m");
        Assert.That(begun.IsOk, begun.Message);

        server.Stop();
        foreach (var (name, op) in new (string, Func<Task<StoreResult>>)[]
                 {
                     ("begin", () => store.BeginAsync("t", "m")),
                     ("acquire", async () => (await store.AcquireAsync("s")).WithoutValue),
                     ("spill", () => store.SpillAsync("s", begun.Generation, "m", new byte[16], 4, releaseLease: true)),
                     ("renew", () => store.RenewAsync("s", begun.Generation)),
                     ("release", () => store.ReleaseAsync("s")),
                     ("end", () => store.EndAsync("s", begun.Generation)),
                     ("ping", () => store.PingAsync()),
                 })
        {
            var clock = Stopwatch.StartNew();
            var r = await op();
            await TestContext.Out.WriteLineAsync($"{name}: {clock.ElapsedMilliseconds} ms: {r.Message}");
            Assert.That(r.Status, Is.EqualTo(StoreStatus.Unavailable), $"{name}: {r.Message}");
            Assert.That(r.Message, Does.Contain(server.Endpoint), name);
            // Bounded: the operation timeout (1 s) plus scheduling slack on a loaded machine, never a hang.
            Assert.That(clock.Elapsed, Is.LessThan(TimeSpan.FromSeconds(10)), name);
        }

        server.Start();
        var waited = Stopwatch.StartNew();
        StoreResult ping;
        do
        {
            await Task.Delay(200);
            ping = await store.PingAsync();
        }
        while (!ping.IsOk && waited.Elapsed < Bound);
        Assert.That(ping.IsOk, $"reconnects after Redis is back: {ping.Message}");
        Assert.That((await store.BeginAsync("u", "m")).IsOk);
    }

    [Test]
    public async Task RedisThatDoesNotAnswerTimesOut()
    {
        using var server = RedisServer.StartNew();
        var store = Store(server, NewPrefix(), "replica-a", timeout: TimeSpan.FromMilliseconds(300));
        Assert.That((await store.PingAsync()).IsOk);
        server.Fire("DEBUG SLEEP 3"); // Redis blocks for 3 s
        await Task.Delay(100);
        var clock = Stopwatch.StartNew();
        var r = await store.BeginAsync("slow", "m");
        await TestContext.Out.WriteLineAsync($"{clock.ElapsedMilliseconds} ms: {r.Message}");
        Assert.That(r.Status, Is.EqualTo(StoreStatus.Unavailable));
        Assert.That(r.Message, Does.Contain("300 ms").Or.Contain("Timeout"));
    }

    [Test]
    public async Task StoreStartsWithoutRedisAndConnectsWhenItComes()
    {
        using var server = RedisServer.StartNew();
        server.Stop();
        var store = Store(server, NewPrefix(), "replica-a", timeout: TimeSpan.FromMilliseconds(500));
        Assert.That((await store.PingAsync()).Status, Is.EqualTo(StoreStatus.Unavailable));
        server.Start();
        var waited = Stopwatch.StartNew();
        StoreResult ping;
        do
        {
            await Task.Delay(200);
            ping = await store.PingAsync();
        }
        while (!ping.IsOk && waited.Elapsed < Bound);
        Assert.That(ping.IsOk, ping.Message);
    }

    [Test]
    public void BadSettingsAreRefusedNamingTheSetting()
    {
        Assert.Multiple(() =>
        {
            Assert.That(() => new RedisSequenceStore(new SequenceStoreOptions { Redis = "127.0.0.1:1", KeyPrefix = "a{b}:" }),
                Throws.ArgumentException.With.Message.Contains("KeyPrefix"));
            Assert.That(() => new RedisSequenceStore(new SequenceStoreOptions { Redis = "127.0.0.1:1", Retention = TimeSpan.Zero }),
                Throws.ArgumentException.With.Message.Contains("Retention"));
            Assert.That(() => new RedisSequenceStore(new SequenceStoreOptions { Redis = "" }),
                Throws.ArgumentException.With.Message.Contains("Sequences:Store:Redis"));
            Assert.That(() => new RedisSequenceStore(new SequenceStoreOptions { Redis = "nonsense=,=" }),
                Throws.ArgumentException.With.Message.Contains("Sequences:Store:Redis"));
        });
    }
}
