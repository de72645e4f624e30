using System.Text.RegularExpressions;

namespace DualChunk.Tests.Cli;

/// <summary>
/// The C# samples in README.md and docs/api.md (three: Embedder.cs, Scorer.cs, the ASP.NET Core sample) are the code of samples/DocSamples, which DualChunk.sln builds:
/// every csharp block must appear verbatim in one of its files, so a sample that stops compiling breaks the build.
/// </summary>
[TestFixture]
public sealed partial class DocSamplesTests
{
    [TestCase("README.md", 1)]
    [TestCase("docs/api.md", 3)]
    public void EveryCSharpBlockIsInTheCompiledSamples(string document, int expectedBlocks)
    {
        string root = Path.GetFullPath(Path.Combine(Loading.NpyTests.SamplesTiny, "..", ".."));
        string text = Normalize(File.ReadAllText(Path.Combine(root, document)));
        var sources = Directory.EnumerateFiles(Path.Combine(root, "samples", "DocSamples"), "*.cs", SearchOption.AllDirectories)
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal))
            .Select(f => Normalize(File.ReadAllText(f))).ToList();
        var blocks = CSharpBlock().Matches(text).Select(m => m.Groups[1].Value.Trim()).ToList();
        Assert.That(blocks, Has.Count.EqualTo(expectedBlocks), $"csharp blocks in {document}");
        foreach (string block in blocks)
            Assert.That(sources.Any(s => s.Contains(block, StringComparison.Ordinal)), Is.True,
                $"{document}: this block is not in samples/DocSamples (copy it there, or the docs there):\n{block}");
    }

    private static string Normalize(string s) => s.ReplaceLineEndings("\n");

    [GeneratedRegex(@"^```csharp\n(.*?)^```", RegexOptions.Multiline | RegexOptions.Singleline)]
    private static partial Regex CSharpBlock();
}
