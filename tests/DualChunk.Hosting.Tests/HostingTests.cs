using System.Diagnostics.Metrics;
using DualChunk.Core;
using DualChunk.Extensions.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using static DualChunk.Hosting.Tests.TestModels;

namespace DualChunk.Hosting.Tests;

/// <summary>DualChunk.Extensions.Hosting on the generic host (no web server).</summary>
[TestFixture]
public sealed class HostingTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    private TestModels _files = null!;

    [SetUp]
    public void SetUp() => _files = new TestModels();

    [TearDown]
    public void TearDown() => _files.Dispose();

    private static IHost Build(Dictionary<string, string?> config, Action<IServiceCollection> register)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Configuration.AddInMemoryCollection(config);
        builder.Services.AddMetrics();
        register(builder.Services);
        return builder.Build();
    }

    private static async Task<HealthReport> Health(IHost host)
        => await host.Services.GetRequiredService<HealthCheckService>().CheckHealthAsync(r => r.Tags.Contains(DualChunkServiceCollectionExtensions.ReadyTag));

    [Test]
    public async Task ConfigurationKeysBindAndTheModelIsLoadedAndWarmedBeforeItReportsReady()
    {
        string path = _files.Write("a.dcw", 1);
        using var host = Build(new()
        {
            ["DualChunk:Models:a:Path"] = path,
            ["DualChunk:Models:a:ChunkSize"] = "4",
            ["DualChunk:Models:a:MaxDegreeOfParallelism"] = "2",
            ["DualChunk:Models:a:AllowSpinning"] = "false",
            ["DualChunk:Models:a:MaxBatch"] = "3",
            ["DualChunk:Models:a:MaxSeqLen"] = "18",
            ["DualChunk:Models:a:WarmUp"] = "true",
        }, s => s.AddDualChunkModel("a"));
        var pool = host.Services.GetRequiredService<DualChunkModelProvider>();
        // Before start: nothing loaded, not ready, Rent says why.
        var before = await Health(host);
        Assert.That(before.Status, Is.EqualTo(HealthStatus.Unhealthy));
        Assert.That(before.Entries["dualchunk:a"].Description, Does.Contain("loading"));
        Assert.That(() => pool.Acquire("a"), Throws.TypeOf<DualChunkModelUnavailableException>().With.Message.Contains("loading"));

        // What the pool shows at the moment it reports the model ready: warmed (a workspace for MaxBatch × 16 pooled).
        long pooledAtReady = -1;
        pool.StatusChanged += s =>
        {
            if (s.State == DualChunkModelState.Ready && pool.TryAcquire("a", out var l))
                using (l) pooledAtReady = l.Model.PooledWorkspaceBytes;
        };
        await host.StartAsync();
        await pool.Loaded.WaitAsync(Bound);

        var o = pool.GetOptions("a");
        using var lease = pool.Acquire("a");
        var expectedPlan = lease.Model.CreateWorkspace(3, 16).Bytes;
        Assert.Multiple(async () =>
        {
            Assert.That((o.Path, o.Model.ChunkSize, o.Model.MaxDegreeOfParallelism, o.Model.MaxBatch, o.Model.MaxSeqLen, o.WarmUp), Is.EqualTo((path, (int?)4, 2, (int?)3, (int?)18, true)));
            Assert.That(lease.Model.MaxDegreeOfParallelism, Is.EqualTo(2));
            Assert.That((o.Model.AllowSpinning, o.ToModelOptions(null, "a").AllowSpinning), Is.EqualTo((false, false)), "AllowSpinning binds and reaches the model's options");
            Assert.That(lease.Model.Config, Is.EqualTo(Small));
            Assert.That(pooledAtReady, Is.GreaterThanOrEqualTo(expectedPlan), "warm-up planned the pool for MaxBatch x (MaxSeqLen rounded down to C) before ready");
            Assert.That((await Health(host)).Status, Is.EqualTo(HealthStatus.Healthy));
            Assert.That(pool.IsReady, Is.True);
        });
        await host.StopAsync();
    }

    /// <summary>
    /// A configuration value (not the default) for every settable property of <see cref="DualChunkModelOptions"/>
    /// except <see cref="DualChunkModelOptions.MeterFactory"/> (a service: the host's IMeterFactory is used).
    /// </summary>
    private static readonly Dictionary<string, string> ModelOptionValues = new()
    {
        [nameof(DualChunkModelOptions.ChunkSize)] = "4",
        [nameof(DualChunkModelOptions.MaxDegreeOfParallelism)] = "3",
        [nameof(DualChunkModelOptions.AllowSpinning)] = "False",
        [nameof(DualChunkModelOptions.MemoryMap)] = "True",
        [nameof(DualChunkModelOptions.MaxBatch)] = "5",
        [nameof(DualChunkModelOptions.MaxSeqLen)] = "24",
        [nameof(DualChunkModelOptions.MaxWorkspaceBytes)] = "123456789",
        [nameof(DualChunkModelOptions.Name)] = "traced-name",
    };

    [Test]
    public async Task EveryModelOptionBindsFromConfiguration()
    {
        // Enumerated by reflection: an option added to DualChunkModelOptions fails here until it has a value above
        // (and then fails again if configuration does not reach it).
        var settable = typeof(DualChunkModelOptions).GetProperties(System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Instance)
            .Where(p => p.SetMethod is { IsPublic: true } && p.Name != nameof(DualChunkModelOptions.MeterFactory)).ToList();
        Assert.That(settable.Select(p => p.Name), Is.EquivalentTo(ModelOptionValues.Keys), "a value for every model option");
        var defaults = new DualChunkModelOptions();
        string Text(object? v) => Convert.ToString(v, System.Globalization.CultureInfo.InvariantCulture) ?? "";
        foreach (var p in settable)
            Assert.That(Text(p.GetValue(defaults)), Is.Not.EqualTo(ModelOptionValues[p.Name]), $"{p.Name}: the test value must differ from the default");

        string path = _files.Write("b.dcw", 2);
        var config = new Dictionary<string, string?> { ["DualChunk:Models:b:Path"] = path };
        foreach (var (key, value) in ModelOptionValues) config[$"DualChunk:Models:b:{key}"] = value;
        using var host = Build(config, s => s.AddDualChunkModel("b"));
        await host.StartAsync();
        var pool = host.Services.GetRequiredService<DualChunkModelProvider>();
        await pool.Loaded.WaitAsync(Bound);
        var o = pool.GetOptions("b");
        using var lease = pool.Acquire("b");
        Assert.Multiple(() =>
        {
            foreach (var p in settable)
                Assert.That(Text(p.GetValue(o.Model)), Is.EqualTo(ModelOptionValues[p.Name]), $"DualChunk:Models:b:{p.Name}");
            // And the loaded model got them (what it exposes).
            Assert.That((lease.Model.Name, lease.Model.MaxDegreeOfParallelism, lease.Model.AllowSpinning, lease.Model.IsMemoryMapped),
                Is.EqualTo(("traced-name", 3, false, true)));
        });
        await host.StopAsync();
    }

    [TestCase("MaxWorkspaceBytes", "0")]
    [TestCase("MaxDegreeOfParallelism", "0")]
    [TestCase("MaxBatch", "-1")]
    [TestCase("ChunkSize", "0")]
    [TestCase("ReloadDelay", "-00:00:01")]
    public async Task AnInvalidValueFailsTheStartNamingTheKey(string key, string value)
    {
        string path = _files.Write("v.dcw", 3);
        using var host = Build(new() { ["DualChunk:Models:v:Path"] = path, [$"DualChunk:Models:v:{key}"] = value }, s => s.AddDualChunkModel("v"));
        var e = await Assert.ThrowsAsync<Microsoft.Extensions.Options.OptionsValidationException>(() => host.StartAsync());
        Assert.That(e!.Message, Does.Contain($"DualChunk:Models:v:{key}"));
    }

    [Test]
    public async Task MemoryMappingAReloadableFileFailsTheStart()
    {
        string path = _files.Write("w.dcw", 3);
        using var host = Build(new()
        {
            ["DualChunk:Models:w:Path"] = path,
            ["DualChunk:Models:w:MemoryMap"] = "true",
            ["DualChunk:Models:w:ReloadOnChange"] = "true",
        }, s => s.AddDualChunkModel("w"));
        var e = await Assert.ThrowsAsync<Microsoft.Extensions.Options.OptionsValidationException>(() => host.StartAsync());
        Assert.That(e!.Message, Does.Contain("DualChunk:Models:w:MemoryMap").And.Contain("ReloadOnChange"));
    }

    [Test]
    public async Task WithoutWarmUpNothingIsPooledAndOutputsEqualADirectLoad()
    {
        string path = _files.Write("m.dcw", 5);
        using var host = Build(new() { ["DualChunk:Models:m:Path"] = path, ["DualChunk:Models:m:WarmUp"] = "false" }, s => s.AddDualChunkModel("m"));
        await host.StartAsync();
        var pool = host.Services.GetRequiredService<DualChunkModelProvider>();
        await pool.Loaded.WaitAsync(Bound);
        using var direct = DualChunkModel.Load(path);
        var input = RandomWeights.Input(2 * 8 * Small.EmbedDim, 3);
        using var lease = pool.Acquire("m");
        Assert.That(lease.Model.PooledWorkspaceBytes, Is.Zero, "WarmUp=false runs nothing before ready");
        foreach (var mode in new[] { OutputMode.LastTimestep, OutputMode.All, OutputMode.MeanPool })
            Assert.That(Run(lease.Model, input, 2, 8, mode), Is.EqualTo(Run(direct, input, 2, 8, mode)), mode.ToString());
        await host.StopAsync();
    }

    [Test]
    public async Task HealthCheckPerModelNamesTheReason()
    {
        string good = _files.Write("good.dcw", 1);
        string missing = Path.Combine(_files.Dir, "missing.dcw");
        using var host = Build(new()
        {
            ["DualChunk:Models:good:Path"] = good,
            ["DualChunk:Models:gone:Path"] = missing,
            ["DualChunk:Models:short:Path"] = good,
            ["DualChunk:Models:short:MaxSeqLen"] = "3",
        }, s => s.AddDualChunkModel("good").AddDualChunkModel("gone").AddDualChunkModel("short").AddDualChunkModel("nopath"));
        await host.StartAsync();
        var pool = host.Services.GetRequiredService<DualChunkModelProvider>();
        await pool.Loaded.WaitAsync(Bound);
        var report = await Health(host);
        Assert.Multiple(() =>
        {
            Assert.That(report.Status, Is.EqualTo(HealthStatus.Unhealthy));
            Assert.That(report.Entries["dualchunk:good"].Status, Is.EqualTo(HealthStatus.Healthy));
            Assert.That(report.Entries["dualchunk:gone"].Status, Is.EqualTo(HealthStatus.Unhealthy));
            Assert.That(report.Entries["dualchunk:gone"].Description, Does.Contain("missing.dcw").And.Contain("Path"));
            Assert.That(report.Entries["dualchunk:short"].Description, Does.Contain("MaxSeqLen is 3").And.Contain("chunk size 4"));
            Assert.That(report.Entries["dualchunk:nopath"].Description, Does.Contain("DualChunk:Models:nopath:Path"));
            Assert.That(pool.GetStatus("gone").State, Is.EqualTo(DualChunkModelState.Failed));
            Assert.That(() => pool.Acquire("gone"), Throws.TypeOf<DualChunkModelUnavailableException>().With.Message.Contains("missing.dcw"));
            Assert.That(() => pool.Acquire("nosuch"), Throws.TypeOf<KeyNotFoundException>().With.Message.Contains("good"));
        });
        await host.StopAsync();
    }

    [Test]
    public async Task ALeaseDisposedTwiceOrThroughACopyReleasesTheModelOnce()
    {
        string path = _files.Write("l.dcw", 1);
        using var host = Build(new() { ["DualChunk:Models:l:Path"] = path, ["DualChunk:Models:l:WarmUp"] = "false" }, s => s.AddDualChunkModel("l"));
        await host.StartAsync();
        var models = host.Services.GetRequiredService<DualChunkModelProvider>();
        await models.Loaded.WaitAsync(Bound);
        var input = RandomWeights.Input(8 * Small.EmbedDim, 4);

        var lease = models.Acquire("l");
        var copy = lease; // a copy of a struct lease was a second owner of the same reference
        var model = lease.Model;
        var expected = Run(model, input, 1, 8);
        lease.Dispose();
        copy.Dispose();
        lease.Dispose();
        Assert.Multiple(() =>
        {
            Assert.That(models.CurrentHandle("l")!.IsAlive, Is.True, "the provider still holds the serving model");
            Assert.That(Run(model, input, 1, 8), Is.EqualTo(expected), "the serving model was not disposed by the extra releases");
            Assert.That(() => lease.Model, Throws.TypeOf<ObjectDisposedException>(), "a disposed lease no longer hands out the model");
        });
        using (var again = models.Acquire("l"))
            Assert.That(again.Model, Is.SameAs(model));
        await host.StopAsync();
    }

    [Test]
    public void DuplicateOrBadNamesAreRejected()
    {
        var services = new ServiceCollection().AddDualChunkModel("x");
        Assert.That(() => services.AddDualChunkModel("X"), Throws.ArgumentException.With.Message.Contains("already registered"));
        Assert.That(() => services.AddDualChunkModel("a:b"), Throws.ArgumentException.With.Message.Contains("':'"));
    }

    [Test]
    public async Task ReloadSwapsAtomicallyInFlightCallsFinishOnTheOldModelAndABadFileKeepsTheOldOneServing()
    {
        string path = _files.Write("r.dcw", 1);
        using var host = Build(new()
        {
            ["DualChunk:Models:r:Path"] = path,
            ["DualChunk:Models:r:ReloadOnChange"] = "true",
        }, s => s.AddDualChunkModel("r", o => o.ReloadDelay = TimeSpan.FromMilliseconds(50)));
        var pool = host.Services.GetRequiredService<DualChunkModelProvider>();
        var changes = System.Threading.Channels.Channel.CreateUnbounded<DualChunkModelStatus>();
        pool.StatusChanged += s => changes.Writer.TryWrite(s);
        await host.StartAsync();
        var first = await changes.Reader.ReadAsync().AsTask().WaitAsync(Bound);
        Assert.That((first.State, first.Generation, first.Error), Is.EqualTo((DualChunkModelState.Ready, 1L, (string?)null)));

        var input = RandomWeights.Input(8 * Small.EmbedDim, 9);
        using var v1 = DualChunkModel.Load(path, new DualChunkModelOptions { MemoryMap = false });
        var expected1 = Run(v1, input, 1, 8);
        var held = pool.Acquire("r"); // a call "in flight" on generation 1
        var oldModel = held.Model;

        _files.Write("r.dcw", 2);
        var second = await changes.Reader.ReadAsync().AsTask().WaitAsync(Bound);
        using var v2 = DualChunkModel.Load(path, new DualChunkModelOptions { MemoryMap = false });
        var expected2 = Run(v2, input, 1, 8);
        Assert.That(expected2, Is.Not.EqualTo(expected1), "the two files differ");
        using (var now = pool.Acquire("r"))
        {
            Assert.Multiple(() =>
            {
                Assert.That((second.State, second.Generation, second.Error), Is.EqualTo((DualChunkModelState.Ready, 2L, (string?)null)));
                Assert.That(now.Generation, Is.EqualTo(2));
                Assert.That(Run(now.Model, input, 1, 8), Is.EqualTo(expected2), "new calls run on the new file");
                Assert.That(Run(oldModel, input, 1, 8), Is.EqualTo(expected1), "the held lease still runs on the old model");
            });
        }
        held.Dispose();
        Assert.That(() => Run(oldModel, input, 1, 8), Throws.TypeOf<ObjectDisposedException>(), "the old model is disposed after its last lease");

        TestModels.WriteGarbage(path);
        var third = await changes.Reader.ReadAsync().AsTask().WaitAsync(Bound);
        var report = await Health(host);
        Assert.Multiple(() =>
        {
            Assert.That(third.State, Is.EqualTo(DualChunkModelState.Ready));
            Assert.That(third.Generation, Is.EqualTo(2));
            Assert.That(third.Error, Is.Not.Null.And.Not.Empty);
            Assert.That(report.Entries["dualchunk:r"].Status, Is.EqualTo(HealthStatus.Unhealthy));
            Assert.That(report.Entries["dualchunk:r"].Description, Does.Contain("reloading").And.Contain(third.Error!).And.Contain("generation 2 still serves"));
        });
        using (var still = pool.Acquire("r"))
            Assert.That(Run(still.Model, input, 1, 8), Is.EqualTo(expected2), "the old model keeps serving after a failed reload");

        _files.Write("r.dcw", 3); // fixed: healthy again
        var fourth = await changes.Reader.ReadAsync().AsTask().WaitAsync(Bound);
        Assert.That((fourth.Generation, fourth.Error), Is.EqualTo((3L, (string?)null)));
        Assert.That((await Health(host)).Status, Is.EqualTo(HealthStatus.Healthy));
        await host.StopAsync();
    }

    [Test]
    public async Task ConcurrentCallsDuringReloadsNeverFail()
    {
        string path = _files.Write("c.dcw", 1);
        using var host = Build(new() { ["DualChunk:Models:c:Path"] = path, ["DualChunk:Models:c:ReloadOnChange"] = "true" },
            s => s.AddDualChunkModel("c", o => o.ReloadDelay = TimeSpan.Zero));
        var pool = host.Services.GetRequiredService<DualChunkModelProvider>();
        var changes = System.Threading.Channels.Channel.CreateUnbounded<DualChunkModelStatus>();
        pool.StatusChanged += s => changes.Writer.TryWrite(s);
        await host.StartAsync();
        await changes.Reader.ReadAsync().AsTask().WaitAsync(Bound);
        var input = RandomWeights.Input(8 * Small.EmbedDim, 4);
        using var stop = new CancellationTokenSource();
        long calls = 0;
        var callers = Enumerable.Range(0, 2).Select(_ => Task.Run(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                using var lease = pool.Acquire("c");
                Run(lease.Model, input, 1, 8);
                Interlocked.Increment(ref calls);
            }
        })).ToArray();
        for (int seed = 2; seed <= 6; seed++)
        {
            _files.Write("c.dcw", seed);
            DualChunkModelStatus s;
            do s = await changes.Reader.ReadAsync().AsTask().WaitAsync(Bound);
            while (s.Generation < seed);
        }
        await stop.CancelAsync();
        await Task.WhenAll(callers).WaitAsync(Bound); // any ObjectDisposedException would surface here
        Assert.That(Interlocked.Read(ref calls), Is.GreaterThan(0));
        Assert.That(pool.GetStatus("c").Generation, Is.EqualTo(6));
        await host.StopAsync();
    }

    [Test]
    public async Task TheMeterComesFromTheHostsMeterFactory()
    {
        string path = _files.Write("meter.dcw", 1);
        using var host = Build(new() { ["DualChunk:Models:m:Path"] = path, ["DualChunk:Models:m:WarmUp"] = "false" }, s => s.AddDualChunkModel("m"));
        var factory = host.Services.GetRequiredService<IMeterFactory>();
        long calls = 0;
        using var listener = new MeterListener
        {
            InstrumentPublished = (i, l) =>
            {
                if (i.Meter.Name == DualChunkMetrics.MeterName && ReferenceEquals(i.Meter.Scope, factory)) l.EnableMeasurementEvents(i);
            },
        };
        listener.SetMeasurementEventCallback<long>((i, v, _, _) =>
        {
            if (i.Name == DualChunkMetrics.CallsInstrument) Interlocked.Add(ref calls, v);
        });
        listener.Start();
        await host.StartAsync();
        var pool = host.Services.GetRequiredService<DualChunkModelProvider>();
        await pool.Loaded.WaitAsync(Bound);
        using (var lease = pool.Acquire("m"))
        {
            var input = RandomWeights.Input(4 * Small.EmbedDim, 1);
            Run(lease.Model, input, 1, 4);
            Run(lease.Model, input, 1, 4);
        }
        Assert.That(Interlocked.Read(ref calls), Is.EqualTo(2), "calls recorded on the host factory's meter");
        await host.StopAsync();
    }

    /// <summary>
    /// Edifice's DecoderOnly served by the package from its .nx checkpoint (golden x2, with the spec: no ChunkSize
    /// configured), every output mode within the golden bound of Edifice's float64 output:
    /// max(1e-6, 5 × Edifice's own float32 error) × max|ref|.
    /// </summary>
    [Test]
    public async Task ADecoderOnlyCheckpointIsServedAndMatchesEdifice()
    {
        string dir = Path.Combine(AppContext.BaseDirectory, "golden", "edifice-l", "x2");
        using var host = Build(new() { ["DualChunk:Models:x2:Path"] = Path.Combine(dir, "model.nx"), ["DualChunk:Models:x2:WarmUp"] = "true" },
            s => s.AddDualChunkModel("x2"));
        await host.StartAsync();
        var pool = host.Services.GetRequiredService<DualChunkModelProvider>();
        await pool.Loaded.WaitAsync(Bound);
        using var config = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "config.json")));
        var (inputData, inputShape) = GoldenTensor(Path.Combine(dir, "io.safetensors"), "input");
        var input = inputData.Select(v => (float)v).ToArray();
        using var lease = pool.Acquire("x2");
        Assert.That(lease.Model.Config.Architecture, Is.EqualTo(ModelArchitecture.DecoderOnly));
        Assert.That(lease.Model.Config.ChunkSize, Is.EqualTo(config.RootElement.GetProperty("build_opts").GetProperty("chunk_size").GetInt32()), "from the spec");
        foreach (var (mode, key) in new[] { (OutputMode.LastTimestep, "last"), (OutputMode.All, "all"), (OutputMode.MeanPool, "mean") })
        {
            var entry = config.RootElement.GetProperty("outputs").GetProperty(key);
            var (reference, _) = GoldenTensor(Path.Combine(dir, "io.safetensors"), entry.GetProperty("f64_key").GetString()!);
            var ours = Run(lease.Model, input, inputShape[0], inputShape[1], mode);
            Assert.That(ours, Has.Length.EqualTo(reference.Length), key);
            double maxRef = reference.Max(Math.Abs), maxErr = reference.Select((r, i) => Math.Abs(ours[i] - r)).Max();
            double bound = Math.Max(1e-6, 5 * entry.GetProperty("rel_err").GetDouble());
            Assert.That(maxRef, Is.GreaterThan(0.1), "the reference is not trivial");
            Assert.That(maxErr / maxRef, Is.LessThanOrEqualTo(bound), $"{key}: max|ours - f64| / max|f64|");
        }
        await host.StopAsync();
    }

    /// <summary>One F32 or F64 tensor of a golden io.safetensors, as float64, with its shape.</summary>
    private static (double[] Data, int[] Shape) GoldenTensor(string path, string key)
    {
        var bytes = File.ReadAllBytes(path);
        long headerLength = BitConverter.ToInt64(bytes, 0);
        using var header = System.Text.Json.JsonDocument.Parse(bytes.AsMemory(8, (int)headerLength));
        var entry = header.RootElement.GetProperty(key);
        int size = entry.GetProperty("dtype").GetString() switch { "F64" => 8, "F32" => 4, var d => throw new AssertionException($"{key}: dtype {d}") };
        var offsets = entry.GetProperty("data_offsets");
        int start = (int)(8 + headerLength + offsets[0].GetInt64()), end = (int)(8 + headerLength + offsets[1].GetInt64());
        var data = new double[(end - start) / size];
        for (int i = 0; i < data.Length; i++)
            data[i] = size == 8 ? BitConverter.ToDouble(bytes, start + 8 * i) : BitConverter.ToSingle(bytes, start + 4 * i);
        return (data, [.. entry.GetProperty("shape").EnumerateArray().Select(d => d.GetInt32())]);
    }
}
