using DualChunk.Core;
using DualChunk.Kernels;

namespace DualChunk.Tests.Model;

/// <summary>
/// A batch row's output does not depend on the other rows of its batch, bit for bit: a client that sends several
/// sequences in one call (B &gt; 1) gets for each what a call on it alone gives, and a server may join requests into
/// one call without changing an answer. Random models of several shapes (row counts that are and are not multiples of the GEMM's
/// row tiles, one chunk and many, C = 1), every output mode, 1 and 2 threads.
/// </summary>
[TestFixture]
public sealed class BatchRowTests
{
    // E, H, NH, L, C, N
    private static readonly int[][] Shapes =
    [
        [287, 256, 8, 4, 64, 64],  // config a
        [20, 24, 3, 2, 5, 15],
        [33, 70, 7, 2, 7, 21],
        [13, 40, 5, 1, 1, 5],
        [31, 64, 2, 2, 4, 36],
        [64, 96, 3, 1, 96, 96],
    ];

    private static IEnumerable<TestCaseData> Cases()
    {
        for (int i = 0; i < Shapes.Length; i++)
            foreach (int threads in new[] { 1, 2 })
            {
                var s = Shapes[i];
                yield return new TestCaseData(i, threads).SetName($"EachRowIsItsOwnCall_E{s[0]}_H{s[1]}_NH{s[2]}_L{s[3]}_C{s[4]}_N{s[5]}_T{threads}");
            }
    }

    [TestCaseSource(nameof(Cases))]
    public void EachRowIsItsOwnCall(int shapeIndex, int threads)
    {
        var s = Shapes[shapeIndex];
        var config = new ModelConfig(s[0], s[1], s[2], s[3], s[4], 4 * s[1]);
        int n = s[5], e = config.EmbedDim;
        var tensors = RandomWeights.Create(config, seed: 300 + shapeIndex);
        using var model = DualChunkModel.FromTensors(tensors, config, new DualChunkModelOptions { MaxDegreeOfParallelism = threads });
        foreach (int batch in new[] { 2, 3, 5, 8 })
        {
            var input = RandomWeights.Input(batch * n * e, seed: 400 + 10 * shapeIndex + batch);
            foreach (var mode in new[] { OutputMode.LastTimestep, OutputMode.All, OutputMode.MeanPool })
            {
                var joined = model.Run(input, batch, n, mode);
                int rowOut = joined.Length / batch;
                for (int b = 0; b < batch; b++)
                {
                    var alone = model.Run(input.AsSpan(b * n * e, n * e).ToArray(), 1, n, mode);
                    var row = joined.AsSpan(b * rowOut, rowOut).ToArray();
                    Assert.That(row, Is.EqualTo(alone).AsCollection,
                        $"{KernelSelection.Isa}, B={batch}, row {b}, {mode}: the row's bits depend on the rest of the batch");
                }
            }
        }
    }
}
