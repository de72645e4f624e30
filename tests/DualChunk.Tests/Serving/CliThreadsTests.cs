using System.Text.Json;
using DualChunk.Cli;
using DualChunk.Core;
using DualChunk.Tests.Golden;
using DualChunk.Tests.Loading;

namespace DualChunk.Tests.Serving;

/// <summary><c>dualchunk run/bench --threads T</c>.</summary>
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
        foreach (string threads in new[] { "1", "2", "3" })
        {
            string output = dir.File($"y{threads}.npy");
            var run = Cli("run", "--model", golden.ModelPath, "--chunk-size", golden.ChunkSize.ToString(System.Globalization.CultureInfo.InvariantCulture),
                "--input", input, "--output", output, "--output-mode", "all", "--threads", threads);
            Assert.That(run.Code, Is.EqualTo(0), run.Err);
            var (y, _) = Npy.Read(output);
            if (first is null) first = y;
            else ServingTestSupport.AssertBitwise(first, y, $"--threads {threads}");
        }
    }

    [Test]
    public void BenchReportsThreadsFirstCallLoadAndMemory()
    {
        var bench = Cli("bench", "--random-model", "20,64,4,2", "--chunk-size", "8", "--batch", "2", "--seq", "16",
            "--threads", "2", "--output-mode", "mean", "--warmup", "1", "--iterations", "3", "--warm-up-api");
        Assert.That(bench.Code, Is.EqualTo(0), bench.Err);
        using var json = JsonDocument.Parse(bench.Out);
        var root = json.RootElement;
        Assert.Multiple(() =>
        {
            Assert.That(root.GetProperty("threads").GetInt32(), Is.EqualTo(2));
            foreach (string field in new[] { "median_ms", "p90_ms", "min_ms", "gflop", "gflops_at_median", "allocated_bytes_per_call", "kernel_isa", "first_call_ms", "load_ms", "rss_after_load_bytes" })
                Assert.That(root.TryGetProperty(field, out _), Is.True, field);
            Assert.That(root.GetProperty("warm_up_api").GetBoolean(), Is.True);
        });
        var bad = Cli("bench", "--random-model", "20,64,4,2", "--chunk-size", "8", "--batch", "1", "--seq", "8", "--threads", "0");
        Assert.That(bad.Code, Is.EqualTo(2));
    }
}
