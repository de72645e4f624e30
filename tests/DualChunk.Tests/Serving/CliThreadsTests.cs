using System.Text.Json;
using DualChunk.Cli;
using DualChunk.Core;
using DualChunk.Kernels;
using DualChunk.Tests.Golden;
using DualChunk.Tests.Loading;

namespace DualChunk.Tests.Serving;

/// <summary><c>dualchunk run/bench --threads T [--no-spinning]</c>.</summary>
[TestFixture]
public sealed class CliThreadsTests
{
    private static (int Code, string Out, string Err) Cli(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = CommandLine.Run(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    [Test]
    public void RunWithThreadsWritesTheSameBits()
    {
        var golden = GoldenCase.Load("long");
        using var dir = new TempDir();
        string input = dir.File("x.npy");
        Npy.Write(input, golden.Input, [golden.Batch, golden.SeqLen, golden.EmbedDim]);
        float[]? first = null;
        foreach (string[] threads in new string[][] { ["1"], ["2"], ["3"], ["2", "--no-spinning"] })
        {
            string output = dir.File($"y{string.Concat(threads)}.npy");
            var run = Cli(["run", "--model", golden.ModelPath, "--chunk-size", golden.ChunkSize.ToString(System.Globalization.CultureInfo.InvariantCulture),
                "--input", input, "--output", output, "--output-mode", "all", "--threads", .. threads]);
            Assert.That(run.Code, Is.EqualTo(0), run.Err);
            var (y, _) = Npy.Read(output);
            if (first is null) first = y;
            else ServingTestSupport.AssertBitwise(first, y, $"--threads {string.Join(' ', threads)}");
        }
    }

    [Test]
    public void BenchReportsThreadsFirstCallLoadAndMemory()
    {
        var bench = Cli("bench", "--random-model", "20,64,4,2", "--chunk-size", "8", "--batch", "2", "--seq", "16",
            "--threads", "2", "--output-mode", "mean", "--warmup", "3", "--iterations", "3", "--warm-up-api");
        Assert.That(bench.Code, Is.EqualTo(0), bench.Err);
        using var json = JsonDocument.Parse(bench.Out);
        var root = json.RootElement;
        double median = root.GetProperty("median_ms").GetDouble(), p90 = root.GetProperty("p90_ms").GetDouble(), min = root.GetProperty("min_ms").GetDouble();
        double gflop = root.GetProperty("gflop").GetDouble(), gflops = root.GetProperty("gflops_at_median").GetDouble();
        var config = new ModelConfig(20, 64, 4, 2, 8, 4 * 64);
        Assert.Multiple(() =>
        {
            Assert.That(root.GetProperty("threads").GetInt32(), Is.EqualTo(2), "threads = --threads");
            Assert.That(root.GetProperty("allow_spinning").GetBoolean(), Is.True, "spinning is the default");
            Assert.That(root.GetProperty("kernel_isa").GetString(), Is.EqualTo(KernelSelection.Isa.ToString()), "the path this process selected");
            Assert.That(root.GetProperty("batch").GetInt32(), Is.EqualTo(2));
            Assert.That(root.GetProperty("seq_len").GetInt32(), Is.EqualTo(16));
            Assert.That(root.GetProperty("chunk_size").GetInt32(), Is.EqualTo(8));
            Assert.That(root.GetProperty("output_mode").GetString(), Is.EqualTo("mean"));
            Assert.That(root.GetProperty("iterations").GetInt32(), Is.EqualTo(3));
            Assert.That(root.GetProperty("warmup").GetInt32(), Is.EqualTo(3));
            Assert.That(min, Is.GreaterThan(0), "min_ms");
            Assert.That(median, Is.GreaterThanOrEqualTo(min), "median_ms ≥ min_ms");
            Assert.That(p90, Is.GreaterThanOrEqualTo(median), "p90_ms ≥ median_ms");
            Assert.That(gflop, Is.EqualTo(BenchCommand.NominalGflop(config, 2, 16)).Within(1e-6), "gflop of E=20 H=64 NH=4 L=2, B=2, N=16");
            double expectedGflops = gflop / (median / 1000); // both printed rounded: median to 1e-4 ms, GFLOP/s to 0.01
            Assert.That(gflops, Is.EqualTo(expectedGflops).Within(0.006 + 1e-3 * expectedGflops), "gflops_at_median = gflop / median");
            Assert.That(root.GetProperty("allocated_bytes_per_call").GetInt64(), Is.Zero, "steady state allocates nothing");
            Assert.That(root.GetProperty("first_call_ms").GetDouble(), Is.GreaterThan(0));
            Assert.That(root.GetProperty("load_ms").GetDouble(), Is.GreaterThanOrEqualTo(0));
            Assert.That(root.GetProperty("rss_after_load_bytes").GetInt64(), Is.GreaterThan(1 << 20), "RSS of a running .NET process");
            Assert.That(root.GetProperty("warm_up_api").GetBoolean(), Is.True);
            Assert.That(root.GetProperty("warm_up_api_ms").GetDouble(), Is.GreaterThan(0), "the WarmUp call was timed");
        });
        var blocking = Cli("bench", "--random-model", "20,64,4,2", "--chunk-size", "8", "--batch", "1", "--seq", "16",
            "--threads", "2", "--no-spinning", "--warmup", "3", "--iterations", "3");
        Assert.That(blocking.Code, Is.EqualTo(0), blocking.Err);
        using (var blockingJson = JsonDocument.Parse(blocking.Out))
        {
            Assert.That(blockingJson.RootElement.GetProperty("allow_spinning").GetBoolean(), Is.False, "--no-spinning reaches the model");
            Assert.That(blockingJson.RootElement.GetProperty("allocated_bytes_per_call").GetInt64(), Is.Zero, "blocking hand-offs allocate nothing either");
        }
        var bad = Cli("bench", "--random-model", "20,64,4,2", "--chunk-size", "8", "--batch", "1", "--seq", "8", "--threads", "0");
        Assert.That(bad.Code, Is.EqualTo(2));
    }
}
