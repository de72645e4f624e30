using System.Globalization;
using System.IO.Hashing;
using System.Runtime.InteropServices;
using DualChunk.Core;
using DualChunk.Kernels;
using static DualChunk.Tests.Serving.ServingTestSupport;

namespace DualChunk.Tests.Model;

/// <summary>
/// Pins the exact output bits of the forward pass, so a refactoring of the model or the scheduler cannot change a
/// single bit unnoticed. The expected XxHash64 of each output's bytes was produced by commit b017315 (main before
/// the issue 14 restructuring) on the Vector256 and portable paths; there is no Vector512 machine to pin that path,
/// so it is skipped there (its bits are covered by the thread-count and golden tests).
/// </summary>
/// <remarks>
/// Each case runs on 1 thread, and on 2 threads with every split forced (so the helper thread computes items of
/// every operation); both must give the pinned bits. The shapes cover E ≠ H and E == H, H that is and is not a
/// multiple of the GEMM's column split, B > 1 and several row groups, every output mode.
/// Set DUALCHUNK_PRINT_PINS=1 to print the actual hashes (to pin a new case; never to "fix" a failing one).
/// </remarks>
[TestFixture]
public sealed class BitwisePinTests
{
    private static readonly (ModelConfig Config, int N, int B)[] Shapes =
    [
        (new(20, 24, 3, 2, 5, 96), 15, 2),
        (new(64, 64, 4, 2, 8, 256), 32, 3),
        (new(33, 200, 5, 2, 8, 800), 64, 3),
        (new(96, 128, 4, 1, 16, 512), 320, 2),
        (new(128, 128, 2, 2, 32, 512), 96, 1),
    ];

    // [shape][mode: last, all, mean] for each ISA path.
    private static readonly Dictionary<KernelIsa, string[][]> Pins = new()
    {
        [KernelIsa.Vector256] =
        [
            ["aa59aa25bcded5d3", "d7a320a9e8f6399a", "6617957450a9a68a"],
            ["4bc2bce1d25248dc", "ca94754042afa622", "af0e1568d2f29048"],
            ["910fe8df08bdba5f", "294a307c0ccef3b2", "ce02b0f19aa824a7"],
            ["4439cea3665ef99c", "9fbb6bdbd1dcda65", "83d782540b7d75ff"],
            ["8926a6140d704df2", "b20ac43204b05f63", "41e607517effc830"],
        ],
        [KernelIsa.Portable] =
        [
            ["02d99dcd0e2dcda5", "b3f7493410f93f86", "8d2a2d6afd66ed3e"],
            ["04636e4a3111cd18", "5e47a07eb7bb23c6", "92252d8dad9e976f"],
            ["3b557ddc29c62339", "ede4ed38b40731d4", "aa84e67a151a656b"],
            ["e929a6c20ec6291b", "629191290efe990c", "99aae6f65c90e7e5"],
            ["eb08213b94eef42d", "04e5c6cec103ebde", "73618de7d13a610d"],
        ],
    };

    private static IEnumerable<TestCaseData> Cases() => Shapes.Select((s, i) => new TestCaseData(i).SetName(
        $"OutputBitsArePinned_E{s.Config.EmbedDim}_H{s.Config.HiddenSize}_NH{s.Config.NumHeads}_L{s.Config.NumLayers}_C{s.Config.ChunkSize}_N{s.N}_B{s.B}"));

    [TestCaseSource(nameof(Cases))]
    public void OutputBitsArePinned(int shapeIndex)
    {
        bool print = Environment.GetEnvironmentVariable("DUALCHUNK_PRINT_PINS") == "1";
        if (!print && !Pins.ContainsKey(KernelSelection.Isa))
            Assert.Ignore($"No pinned bits for the {KernelSelection.Isa} path (pinned on an AVX2 machine).");
        var (config, n, batch) = Shapes[shapeIndex];
        var tensors = RandomWeights.Create(config, seed: 900 + shapeIndex);
        var input = RandomWeights.Input(batch * n * config.EmbedDim, seed: 950 + shapeIndex);
        foreach (int threads in new[] { 1, 2 })
        {
            using var splits = threads > 1 ? ForceSplits() : null;
            using var model = DualChunkModel.FromTensors(tensors, config, new DualChunkModelOptions { MaxDegreeOfParallelism = threads });
            for (int m = 0; m < Modes.Length; m++)
            {
                string hash = Hash(Run(model, input, batch, n, Modes[m]));
                if (print)
                {
                    TestContext.Out.WriteLine($"PIN {KernelSelection.Isa} shape {shapeIndex} {Modes[m]} threads {threads}: \"{hash}\"");
                    continue;
                }
                Assert.That(hash, Is.EqualTo(Pins[KernelSelection.Isa][shapeIndex][m]),
                    $"{KernelSelection.Isa}, {Modes[m]}, threads {threads}: the output bits changed");
            }
        }
    }

    private static string Hash(float[] output)
        => XxHash64.HashToUInt64(MemoryMarshal.AsBytes(output.AsSpan())).ToString("x16", CultureInfo.InvariantCulture);
}
