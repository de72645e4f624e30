using System.Diagnostics;
using DualChunk.Core;
using static DualChunk.Tests.Serving.ServingTestSupport;

namespace DualChunk.Tests.Serving;

/// <summary>
/// The <c>DualChunk</c> activity source: a span per Run and per stream Append with its tags and error status, parented
/// under <see cref="Activity.Current"/>; and no allocation per call when nothing listens to it.
/// </summary>
[TestFixture]
[NonParallelizable] // activity listeners are process-wide
public sealed class TracingTests
{
    private static ActivityListener Listen(List<Activity> stopped, string source = DualChunkTracing.ActivitySourceName)
    {
        var listener = new ActivityListener
        {
            ShouldListenTo = s => s.Name == source,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = a => { lock (stopped) stopped.Add(a); },
        };
        ActivitySource.AddActivityListener(listener);
        return listener;
    }

    [TestCase(1)]
    [TestCase(2)]
    public void RunAndAppendEachMakeASpanUnderTheCurrentActivityWithTheirTagsAndErrors(int threads)
    {
        var config = Small;
        var stopped = new List<Activity>();
        using var listener = Listen(stopped);
        using var model = DualChunkModel.FromTensors(RandomWeights.Create(config, 7), config,
            new DualChunkModelOptions { MaxDegreeOfParallelism = threads, Name = "small" });
        var input = RandomWeights.Input(2 * 16 * config.EmbedDim, 1);
        using var parentSource = new ActivitySource("DualChunk.Tests.Parent");
        using var parentListener = Listen(stopped, parentSource.Name);

        Activity parent;
        using (parent = parentSource.StartActivity("request")!)
        {
            model.Run(input, 2, 16, new float[model.OutputLength(2, 16, OutputMode.All)], OutputMode.All);
            Assert.Throws<ArgumentException>(() => model.Run(input, 2, 12, new float[2 * config.HiddenSize]), "12 is not a multiple of C = 8");
            using var stream = model.CreateStream(batch: 2);
            stream.Append(input.AsSpan(0, 2 * 8 * config.EmbedDim), new float[stream.OutputLength(OutputMode.MeanPool)], OutputMode.MeanPool);
            stream.Append(input.AsSpan(0, 2 * 8 * config.EmbedDim), new float[stream.OutputLength(OutputMode.MeanPool)], OutputMode.MeanPool);
        }

        var spans = stopped.Where(a => a.Source.Name == DualChunkTracing.ActivitySourceName).ToArray();
        Assert.That(spans.Select(a => a.OperationName), Is.EqualTo(new[]
        {
            DualChunkTracing.RunActivityName, DualChunkTracing.RunActivityName,
            DualChunkTracing.AppendActivityName, DualChunkTracing.AppendActivityName,
        }));
        var (ok, failed, append1, append2) = (spans[0], spans[1], spans[2], spans[3]);
        Assert.Multiple(() =>
        {
            foreach (var span in spans)
            {
                Assert.That(span.ParentSpanId, Is.EqualTo(parent.SpanId), "a child of Activity.Current");
                Assert.That(span.TraceId, Is.EqualTo(parent.TraceId));
                Assert.That(span.Kind, Is.EqualTo(ActivityKind.Internal));
                Assert.That(span.GetTagItem(DualChunkTracing.ModelNameTag), Is.EqualTo("small"));
                Assert.That(span.GetTagItem(DualChunkTracing.ConfigTag), Is.EqualTo(config.ToString()));
                Assert.That(span.GetTagItem(DualChunkTracing.BatchTag), Is.EqualTo(2));
                Assert.That(span.GetTagItem(DualChunkTracing.ThreadsTag), Is.EqualTo(threads));
            }
            Assert.That(ok.GetTagItem(DualChunkTracing.PositionsTag), Is.EqualTo(16));
            Assert.That(ok.GetTagItem(DualChunkMetrics.OutputModeTag), Is.EqualTo("all"));
            Assert.That(ok.Status, Is.EqualTo(ActivityStatusCode.Unset));
            Assert.That(ok.GetTagItem(DualChunkMetrics.ErrorTypeTag), Is.Null);

            Assert.That(failed.GetTagItem(DualChunkTracing.PositionsTag), Is.EqualTo(12));
            Assert.That(failed.GetTagItem(DualChunkMetrics.OutputModeTag), Is.EqualTo("last"));
            Assert.That(failed.Status, Is.EqualTo(ActivityStatusCode.Error));
            Assert.That(failed.StatusDescription, Does.Contain("not a multiple of the chunk size"));
            Assert.That(failed.GetTagItem(DualChunkMetrics.ErrorTypeTag), Is.EqualTo("System.ArgumentException"));
            Assert.That(failed.Events.Select(e => e.Name), Does.Contain("exception"));

            Assert.That(append1.GetTagItem(DualChunkTracing.PositionsTag), Is.EqualTo(8));
            Assert.That(append1.GetTagItem(DualChunkTracing.StreamPositionsTag), Is.EqualTo(0L));
            Assert.That(append2.GetTagItem(DualChunkTracing.StreamPositionsTag), Is.EqualTo(8L));
            Assert.That(append2.GetTagItem(DualChunkMetrics.OutputModeTag), Is.EqualTo("mean"));
            Assert.That(append2.Status, Is.EqualTo(ActivityStatusCode.Unset));
        });
    }

    [Test]
    public void AFailedAppendMarksItsSpan()
    {
        var config = Small;
        var stopped = new List<Activity>();
        using var listener = Listen(stopped);
        using var model = DualChunkModel.FromTensors(RandomWeights.Create(config, 7), config);
        using var stream = model.CreateStream(batch: 1);
        var poisoned = Poisoned(8 * config.EmbedDim);
        Assert.Throws<ArgumentException>(() => stream.Append(poisoned, new float[stream.OutputLength(OutputMode.LastTimestep)]));
        var span = stopped.Single();
        Assert.Multiple(() =>
        {
            Assert.That(span.OperationName, Is.EqualTo(DualChunkTracing.AppendActivityName));
            Assert.That(span.Status, Is.EqualTo(ActivityStatusCode.Error));
            Assert.That(span.GetTagItem(DualChunkMetrics.ErrorTypeTag), Is.EqualTo("System.ArgumentException"));
            Assert.That(span.GetTagItem(DualChunkTracing.ModelNameTag), Is.Null, "no name given: no tag");
        });
    }

    /// <summary>
    /// The source exists and another source has a listener (so activity machinery is live in the process), but nothing
    /// listens to <c>DualChunk</c>: calls and appends start no span and allocate nothing.
    /// </summary>
    [TestCase(1)]
    [TestCase(2)]
    public void NoSpanAndNoAllocationWhenNothingListensToTheSource(int threads)
    {
        var config = Small;
        var other = new List<Activity>();
        using var listener = Listen(other, "Some.Other.Source");
        using var model = Create(config, threads);
        model.WarmUp(maxBatch: 2, maxSeqLen: 16);
        var input = RandomWeights.Input(2 * 16 * config.EmbedDim, 3);
        var output = new float[model.OutputLength(2, 16, OutputMode.LastTimestep)];
        using var stream = model.CreateStream(batch: 2, capacity: 8 * 1000); // room for every append below: none grows it
        var chunk = input.AsSpan(0, 2 * 8 * config.EmbedDim).ToArray();
        var appendOutput = new float[stream.OutputLength(OutputMode.LastTimestep)];
        model.Run(input, 2, 16, output);
        stream.Append(chunk, appendOutput);

        long best = long.MaxValue;
        for (int round = 0; round < 3 && best != 0; round++) // a one-off runtime allocation (tier-up) does not repeat
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int k = 0; k < 300; k++)
            {
                model.Run(input, 2, 16, output);
                stream.Append(chunk, appendOutput);
            }
            best = Math.Min(best, GC.GetAllocatedBytesForCurrentThread() - before);
        }
        Assert.Multiple(() =>
        {
            Assert.That(best, Is.Zero, "bytes allocated on the calling thread over 300 calls and 300 appends");
            Assert.That(Activity.Current, Is.Null);
            Assert.That(other, Is.Empty);
        });
    }
}
