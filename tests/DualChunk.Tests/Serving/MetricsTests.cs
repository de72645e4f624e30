using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using DualChunk.Core;
using static DualChunk.Tests.Serving.ServingTestSupport;

namespace DualChunk.Tests.Serving;

/// <summary>
/// The meter as Prometheus/OpenTelemetry consume it: bucket advice on the duration histogram, error.type on failed and
/// cancelled calls, and the meter taken from an <see cref="IMeterFactory"/> when the options name one.
/// </summary>
[TestFixture]
public sealed class MetricsTests
{
    /// <summary>ASP.NET Core's http.server.request.duration boundaries, the convention the advice must include.</summary>
    private static readonly double[] AspNetCoreBoundaries = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10];

    [Test]
    public void DurationHistogramAdvisesAspNetCoreBucketsPlusFinerOnesBelow5ms()
    {
        using var factory = new TestMeterFactory();
        using var recorder = new Recorder(factory);
        using var model = Create(Small, 1, factory);
        Run(model, RandomWeights.Input(8 * Small.EmbedDim, 1), 1, 8, OutputMode.LastTimestep);

        var histogram = recorder.Published.OfType<Histogram<double>>().Single(h => h.Name == DualChunkMetrics.DurationInstrument);
        var advised = histogram.Advice?.HistogramBucketBoundaries;
        Assert.That(advised, Is.Not.Null, "the histogram carries explicit bucket advice");
        Assert.Multiple(() =>
        {
            Assert.That(histogram.Unit, Is.EqualTo("s"));
            Assert.That(advised, Is.Ordered.Ascending.And.Unique);
            Assert.That(advised!.Where(b => b >= 0.005), Is.EqualTo(AspNetCoreBoundaries), "ASP.NET Core's boundaries from 5 ms up");
            Assert.That(advised!.Count(b => b < 0.005), Is.GreaterThanOrEqualTo(5), "finer buckets below 5 ms");
            Assert.That(advised![0], Is.GreaterThan(0).And.LessThanOrEqualTo(0.0001), "the first bucket resolves sub-0.1 ms calls");
        });
    }

    [Test]
    public void SuccessfulCallsHaveNoErrorTypeAndFailedAndCancelledCallsHaveOne()
    {
        using var factory = new TestMeterFactory();
        using var recorder = new Recorder(factory);
        using var model = Create(Small, 1, factory);
        var input = RandomWeights.Input(2 * 16 * Small.EmbedDim, 3);
        var output = new float[model.OutputLength(2, 16, OutputMode.All)];

        model.Run(input, 2, 16, output, OutputMode.All);
        Assert.Throws<ArgumentException>(() => model.Run(input.AsSpan(1), 2, 16, output, OutputMode.All), "wrong input length");
        Assert.Throws<ArgumentException>(() => model.Run(input, 2, 15, output.AsSpan(0, 2 * 15 * Small.HiddenSize), OutputMode.All), "N not a multiple of C");
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        Assert.Throws<OperationCanceledException>(() => model.Run(input, 2, 16, output.AsSpan(0, 2 * Small.HiddenSize), OutputMode.MeanPool, cts.Token));
        var ws = model.CreateWorkspace(1, 8);
        Assert.Throws<ArgumentException>(() => model.Run(input, 2, 16, output, OutputMode.All, ws), "workspace too small");
        model.Dispose();
        Assert.Throws<ObjectDisposedException>(() => model.Run(input, 2, 16, output, OutputMode.LastTimestep));

        var calls = recorder.Measurements(DualChunkMetrics.CallsInstrument);
        var durations = recorder.Measurements(DualChunkMetrics.DurationInstrument);
        string?[] expectedErrors = [null, "System.ArgumentException", "System.ArgumentException",
            "System.OperationCanceledException", "System.ArgumentException", "System.ObjectDisposedException"];
        string[] expectedModes = ["all", "all", "all", "mean", "all", "last"];
        Assert.Multiple(() =>
        {
            Assert.That(calls.Select(m => m.ErrorType), Is.EqualTo(expectedErrors), "error.type on the calls counter");
            Assert.That(durations.Select(m => m.ErrorType), Is.EqualTo(expectedErrors), "error.type on the duration histogram");
            Assert.That(calls.Select(m => m.Mode), Is.EqualTo(expectedModes));
            Assert.That(calls.Select(m => m.Value).ToArray(), Is.All.EqualTo(1.0));
            Assert.That(durations.Select(m => m.Value).ToArray(), Is.All.InRange(1e-9, 60.0));
        });
    }

    [Test]
    public void StreamAppendsHaveTheirOwnCounterAndHistogramTaggedLikeCalls()
    {
        using var factory = new TestMeterFactory();
        using var recorder = new Recorder(factory);
        using var model = Create(Small, 1, factory);
        using var stream = model.CreateStream(batch: 2);
        int c = Small.ChunkSize;
        var chunk = RandomWeights.Input(2 * c * Small.EmbedDim, 5);
        stream.Append(chunk, new float[stream.OutputLength(OutputMode.All)], OutputMode.All);
        stream.Append(chunk, new float[stream.OutputLength(OutputMode.LastTimestep)]);
        Assert.Throws<ArgumentException>(() => stream.Append(chunk.AsSpan(1), new float[stream.OutputLength(OutputMode.LastTimestep)]), "a partial chunk");
        Assert.Throws<InvalidOperationException>(() => stream.Append(chunk, new float[stream.OutputLength(OutputMode.MeanPool)], OutputMode.MeanPool),
            "mean pool after a last-timestep append");
        stream.Dispose();
        Assert.Throws<ObjectDisposedException>(() => stream.Append(chunk, new float[stream.OutputLength(OutputMode.LastTimestep)]));

        var appends = recorder.Measurements(DualChunkMetrics.AppendsInstrument);
        var durations = recorder.Measurements(DualChunkMetrics.AppendDurationInstrument);
        string?[] expectedErrors = [null, null, "System.ArgumentException", "System.InvalidOperationException", "System.ObjectDisposedException"];
        var histogram = recorder.Published.OfType<Histogram<double>>().Single(h => h.Name == DualChunkMetrics.AppendDurationInstrument);
        Assert.Multiple(() =>
        {
            Assert.That(appends.Select(m => m.ErrorType), Is.EqualTo(expectedErrors), "error.type on the appends counter");
            Assert.That(durations.Select(m => m.ErrorType), Is.EqualTo(expectedErrors), "error.type on the append histogram");
            Assert.That(appends.Select(m => m.Mode), Is.EqualTo(new[] { "all", "last", "last", "mean", "last" }));
            Assert.That(appends.Select(m => m.Value).ToArray(), Is.All.EqualTo(1.0));
            Assert.That(durations.Select(m => m.Value).ToArray(), Is.All.InRange(1e-9, 60.0));
            Assert.That(histogram.Unit, Is.EqualTo("s"));
            Assert.That(histogram.Advice?.HistogramBucketBoundaries, Is.EqualTo(DualChunkMetrics.DurationBucketBoundaries), "the calls' bucket advice");
            Assert.That(recorder.Measurements(DualChunkMetrics.CallsInstrument), Is.Empty, "appends are not counted as forward passes");
        });
    }

    [Test]
    public void MeterComesFromTheFactoryWhenGivenAndFromTheSharedMeterOtherwise()
    {
        using var factory = new TestMeterFactory();
        using var other = new TestMeterFactory();
        using var fromFactory = new Recorder(factory);
        using var fromOther = new Recorder(other);
        using var shared = new Recorder(null);
        using var a = Create(Small, 1, factory);
        using var b = Create(Small, 1, factory);
        using var plain = ServingTestSupport.Create(Small, 1);
        var input = RandomWeights.Input(8 * Small.EmbedDim, 2);
        Run(a, input, 1, 8, OutputMode.LastTimestep);
        Run(b, input, 1, 8, OutputMode.LastTimestep);
        Run(plain, input, 1, 8, OutputMode.MeanPool);
        fromFactory.Listener.RecordObservableInstruments();

        Assert.Multiple(() =>
        {
            Assert.That(factory.Created, Is.Not.Empty, "the model asked the factory for its meter");
            Assert.That(factory.Created.Select(m => m.Name), Is.All.EqualTo(DualChunkMetrics.MeterName));
            Assert.That(fromFactory.Measurements(DualChunkMetrics.CallsInstrument), Has.Count.EqualTo(2), "both factory models on the factory's meter");
            Assert.That(fromOther.Measurements(DualChunkMetrics.CallsInstrument), Is.Empty, "nothing on another factory's meter");
            Assert.That(fromFactory.Measurements(DualChunkMetrics.WorkspaceBytesInstrument).Last().Value,
                Is.EqualTo((double)(a.PooledWorkspaceBytes + b.PooledWorkspaceBytes)), "the gauge sums the factory's models only");
            Assert.That(shared.Measurements(DualChunkMetrics.CallsInstrument).Where(m => m.Mode == "last"), Is.Empty,
                "factory models record nothing on the shared meter");
            Assert.That(shared.Measurements(DualChunkMetrics.CallsInstrument).Where(m => m.Mode == "mean"), Is.Not.Empty,
                "a model without a factory records on the shared meter");
        });
    }

    private static DualChunkModel Create(ModelConfig config, int threads, IMeterFactory factory)
        => DualChunkModel.FromTensors(RandomWeights.Create(config, 7), config,
            new DualChunkModelOptions { MaxDegreeOfParallelism = threads, MeterFactory = factory });

    /// <summary>A minimal IMeterFactory: one meter per name, scoped to the factory, disposed with it.</summary>
    private sealed class TestMeterFactory : IMeterFactory
    {
        private readonly ConcurrentDictionary<string, Meter> _meters = new();

        public IReadOnlyCollection<Meter> Created => _meters.Values.ToArray();

        public Meter Create(MeterOptions options)
        {
            Assert.That(options.Scope, Is.Null.Or.SameAs(this));
            return _meters.GetOrAdd(options.Name, name => new Meter(new MeterOptions(name) { Version = options.Version, Scope = this }));
        }

        public void Dispose()
        {
            foreach (var meter in _meters.Values) meter.Dispose();
        }
    }

    private readonly record struct Measurement(double Value, string? Mode, string? ErrorType);

    /// <summary>Records every measurement of the DualChunk meter with the given scope (null: the shared meter).</summary>
    private sealed class Recorder : IDisposable
    {
        private readonly ConcurrentQueue<(string Instrument, Measurement M)> _all = new();

        public Recorder(IMeterFactory? scope)
        {
            Listener = new MeterListener
            {
                InstrumentPublished = (instrument, l) =>
                {
                    if (instrument.Meter.Name != DualChunkMetrics.MeterName || !ReferenceEquals(instrument.Meter.Scope, scope)) return;
                    Published.Add(instrument);
                    l.EnableMeasurementEvents(instrument);
                },
            };
            Listener.SetMeasurementEventCallback<long>((i, v, tags, _) => Add(i, v, tags));
            Listener.SetMeasurementEventCallback<double>((i, v, tags, _) => Add(i, v, tags));
            Listener.Start();
        }

        public MeterListener Listener { get; }

        public ConcurrentBag<Instrument> Published { get; } = [];

        public List<Measurement> Measurements(string instrument) => _all.Where(x => x.Instrument == instrument).Select(x => x.M).ToList();

        private void Add(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            string? mode = null, error = null;
            foreach (var tag in tags)
            {
                if (tag.Key == DualChunkMetrics.OutputModeTag) mode = (string?)tag.Value;
                else if (tag.Key == DualChunkMetrics.ErrorTypeTag) error = (string?)tag.Value;
            }
            _all.Enqueue((instrument.Name, new Measurement(value, mode, error)));
        }

        public void Dispose() => Listener.Dispose();
    }
}
