using DualChunk.Core;
using static DualChunk.Tests.Serving.ServingTestSupport;

namespace DualChunk.Tests.Serving;

/// <summary>MaxDegreeOfParallelism 1..4 gives bitwise the same outputs, and any number of threads may share one model.</summary>
[TestFixture]
public sealed class ParallelismTests
{
    // E, H, NH, L, C, N, B — H = 200 and 24 give column counts (3H, F, H) that are no multiple of the split.
    private static readonly int[][] Shapes =
    [
        [287, 256, 8, 2, 64, 128, 2],
        [20, 24, 3, 2, 5, 15, 2],
        [33, 200, 5, 2, 8, 64, 3],
        [31, 64, 2, 2, 4, 200, 1],
        [48, 48, 1, 1, 16, 48, 1],
        [96, 128, 4, 1, 16, 320, 2],
    ];

    private static IEnumerable<TestCaseData> Cases()
    {
        for (int i = 0; i < Shapes.Length; i++)
        {
            var s = Shapes[i];
            yield return new TestCaseData(i).SetName($"ThreadCountDoesNotChangeBits_E{s[0]}_H{s[1]}_NH{s[2]}_L{s[3]}_C{s[4]}_N{s[5]}_B{s[6]}");
        }
    }

    [TestCaseSource(nameof(Cases))]
    public void ThreadCountDoesNotChangeBits(int shapeIndex)
    {
        var s = Shapes[shapeIndex];
        var config = new ModelConfig(s[0], s[1], s[2], s[3], s[4], 4 * s[1]);
        int n = s[5], batch = s[6];
        var tensors = RandomWeights.Create(config, seed: 300 + shapeIndex);
        var input = RandomWeights.Input(batch * n * config.EmbedDim, seed: 400 + shapeIndex);
        AssertThreadCountsBitwise(tensors, config, input, batch, n);
    }

    /// <summary>
    /// A sequence's result does not depend on what it is batched with or on how the rows fall into row groups:
    /// B = 3 sequences of N = 320 (C = 16: 20 chunks, several 256-row groups, groups straddling batch elements)
    /// give, per element, the bits of running that sequence alone — on 1 and 2 threads, every output mode.
    /// </summary>
    [Test]
    public void BatchedSequencesEqualTheirSingleRunsBitwise()
    {
        var config = new ModelConfig(96, 128, 4, 2, 16, 512);
        const int batch = 3, n = 320;
        var tensors = RandomWeights.Create(config, seed: 77);
        var input = RandomWeights.Input(batch * n * config.EmbedDim, seed: 78);
        foreach (int threads in new[] { 1, 2 })
        {
            using var model = DualChunkModel.FromTensors(tensors, config, new DualChunkModelOptions { MaxDegreeOfParallelism = threads });
            foreach (var mode in Modes)
            {
                var batched = Run(model, input, batch, n, mode);
                int per = batched.Length / batch;
                for (int b = 0; b < batch; b++)
                {
                    var single = Run(model, input.AsSpan(b * n * config.EmbedDim, n * config.EmbedDim).ToArray(), 1, n, mode);
                    AssertBitwise(single, batched.AsSpan(b * per, per).ToArray(), $"threads {threads}, {mode}, batch element {b}");
                }
            }
        }
    }

    [Test]
    public void SixteenThreadsShareOneModel()
    {
        var config = Small;
        (int B, int N)[] shapes = [(1, 8), (2, 16), (1, 64), (3, 24), (4, 32)];
        var inputs = shapes.Select((sh, i) => RandomWeights.Input(sh.B * sh.N * config.EmbedDim, 50 + i)).ToArray();
        using var reference = Create(config, 1);
        var expected = new float[shapes.Length][][];
        for (int i = 0; i < shapes.Length; i++)
            expected[i] = Modes.Select(m => Run(reference, inputs[i], shapes[i].B, shapes[i].N, m)).ToArray();

        // One model with 2 intra-op threads: one call at a time gets them, the others run alone.
        using var model = Create(config, 2);
        using var splits = ForceSplits();
        const int threads = 16, calls = 1000;
        var failures = new System.Collections.Concurrent.ConcurrentQueue<string>();
        long helperPhases = model.HelperPhasesJoined;
        RunThreads(threads, t =>
        {
            var outputs = new float[shapes.Length][][];
            for (int i = 0; i < shapes.Length; i++)
                outputs[i] = Modes.Select(m => new float[model.OutputLength(shapes[i].B, shapes[i].N, m)]).ToArray();
            for (int k = 0; k < calls; k++)
            {
                int i = (k * 7 + t) % shapes.Length, m = (k + t) % Modes.Length;
                var output = outputs[i][m];
                output.AsSpan().Fill(float.NaN); // reused buffer: a call that writes nothing must not pass
                model.Run(inputs[i], shapes[i].B, shapes[i].N, output, Modes[m]);
                if (!BitEqual(output, expected[i][m]))
                    failures.Enqueue($"thread {t} call {k}: shape {shapes[i]} {Modes[m]} differs");
            }
        });
        Assert.That(failures, Is.Empty);
        Assert.That(model.HelperPhasesJoined, Is.GreaterThan(helperPhases), "some calls ran on the worker threads");
    }
}
