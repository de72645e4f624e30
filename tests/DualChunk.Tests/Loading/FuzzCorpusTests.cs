using System.Diagnostics;
using DualChunk.Core;
using DualChunk.Fuzz;
using NUnit.Framework;

namespace DualChunk.Tests.Loading;

/// <summary>
/// Replays tests/DualChunk.Fuzz's corpus and crash reproducers through the same targets the fuzzer runs
/// (<see cref="FuzzTargets"/>): every input must end in a clean load or the parser's documented exception, quickly.
/// The seed files (corpus/TARGET/*) are valid and must load; AFL's saved queue (corpus/TARGET/queue/*) and the
/// reproducers (reproducers/TARGET/*) may load or be rejected. Weights files are also loaded from disk by
/// <see cref="WeightsLoader"/>, which must reach the same verdict.
/// </summary>
[TestFixture]
public class FuzzCorpusTests
{
    /// <summary>Small inputs parse in milliseconds; a second (JIT-warm) run slower than this is a slow hang.</summary>
    private static readonly TimeSpan PerInputBudget = TimeSpan.FromSeconds(1);

    public static IEnumerable<TestCaseData> Inputs()
    {
        foreach (var root in new[] { "fuzz-corpus", "fuzz-reproducers" })
        {
            foreach (var target in FuzzTargets.All)
            {
                string dir = Path.Combine(AppContext.BaseDirectory, root, target.Name);
                if (!Directory.Exists(dir)) continue;
                foreach (var file in Directory.GetFiles(dir, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
                {
                    string rel = Path.GetRelativePath(AppContext.BaseDirectory, file);
                    bool seed = root == "fuzz-corpus" && Path.GetDirectoryName(file) == dir;
                    yield return new TestCaseData(target.Name, rel, seed).SetName($"{{m}}({rel.Replace('\\', '/')})");
                }
            }
        }
    }

    [TestCaseSource(nameof(Inputs))]
    public void InputEndsInCleanLoadOrTypedException(string targetName, string relativePath, bool isSeed)
    {
        var target = FuzzTargets.Get(targetName);
        string path = Path.Combine(AppContext.BaseDirectory, relativePath);
        var bytes = File.ReadAllBytes(path);
        bool loaded = target.Run(bytes);
        if (isSeed)
            Assert.That(loaded, Is.True, $"seed {relativePath} is a valid input and must load");

        long start = Stopwatch.GetTimestamp();
        Assert.That(target.Run(bytes), Is.EqualTo(loaded), "the same input must reach the same verdict twice");
        var elapsed = Stopwatch.GetElapsedTime(start);
        Assert.That(elapsed, Is.LessThan(PerInputBudget), $"{relativePath} took {elapsed.TotalMilliseconds:F0} ms");

        if (targetName is "safetensors" or "dcw" or "nx")
        {
            bool fromDisk;
            try
            {
                WeightsLoader.Load(path, targetName == "safetensors" ? 1 + (bytes.Length % 8) : null);
                fromDisk = true;
            }
            catch (ModelFormatException)
            {
                fromDisk = false;
            }
            Assert.That(fromDisk, Is.EqualTo(loaded), "WeightsLoader.Load from disk must agree with the in-memory parse");
        }
    }

    [Test]
    public void EveryTargetHasSeedsAndTheReproducersAreThere()
    {
        var cases = Inputs().Select(c => ((string)c.Arguments[0]!, (string)c.Arguments[1]!, (bool)c.Arguments[2]!)).ToList();
        foreach (var target in FuzzTargets.All)
            Assert.That(cases.Count(c => c.Item1 == target.Name && c.Item3), Is.GreaterThanOrEqualTo(2), $"seeds of {target.Name}");
        // The crashes the fuzzer found must stay replayed (a lost folder would pass silently otherwise).
        Assert.That(cases.Count(c => c.Item2.StartsWith("fuzz-reproducers", StringComparison.Ordinal)), Is.GreaterThanOrEqualTo(4));
    }
}
