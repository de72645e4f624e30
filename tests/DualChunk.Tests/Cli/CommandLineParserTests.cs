using System.Reflection;
using System.Text.RegularExpressions;
using DualChunk.Cli;
using DualChunk.Tests.Golden;

namespace DualChunk.Tests.Cli;

/// <summary>
/// The parsing layer: --help on every command (listing every flag README.md documents), --version, unknown options and
/// commands with a suggestion, no silently ignored arguments, and the exit codes 0 / 1 (error) / 2 (usage).
/// </summary>
[TestFixture]
public sealed partial class CommandLineParserTests
{
    private static (int Code, string Out, string Err) Cli(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = CommandLine.Run(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    private static void AssertUsageError(string[] args, params string[] expect)
    {
        var r = Cli(args);
        string what = string.Join(' ', args);
        Assert.That(r.Code, Is.EqualTo(2), what + " => " + r.Err);
        var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(1), what + " => " + r.Err);
        foreach (string e in expect) Assert.That(lines[0], Does.Contain(e), what);
    }

    /// <summary>The README's command table: each command and the flags it documents.</summary>
    private static Dictionary<string, string[]> DocumentedFlags()
    {
        string readme = File.ReadAllText(Path.Combine(Loading.NpyTests.SamplesTiny, "..", "..", "README.md"));
        var table = new Dictionary<string, string[]>();
        foreach (Match row in TableRow().Matches(readme))
            table[row.Groups[1].Value] = [.. FlagName().Matches(row.Groups[2].Value).Select(m => m.Value).Distinct()];
        Assert.That(table.Keys, Is.EquivalentTo(new[] { "run", "convert", "inspect", "bench" }), "README command table");
        return table;
    }

    [Test]
    public void HelpOnEveryCommandListsEveryDocumentedFlagAndExitsZero()
    {
        foreach (var (command, flags) in DocumentedFlags())
        {
            foreach (string help in new[] { "--help", "-h" })
            {
                var r = Cli(command, help);
                Assert.That(r.Code, Is.EqualTo(0), $"{command} {help}: {r.Err}");
                Assert.That(r.Err, Is.Empty);
                Assert.That(r.Out, Does.Contain("Usage:").And.Contain(command));
                foreach (string flag in flags) Assert.That(r.Out, Does.Contain(flag), $"{command} --help lists {flag}");
            }
            Assert.That(Cli("help", command).Out, Is.EqualTo(Cli(command, "--help").Out), $"help {command}");
        }
        var top = Cli("--help");
        Assert.That(top.Code, Is.EqualTo(0));
        Assert.That(top.Out, Does.Contain("run").And.Contain("convert").And.Contain("inspect").And.Contain("bench").And.Contain("--version"));
        var none = Cli();
        Assert.That(none.Code, Is.EqualTo(2), "no command is a usage error");
        Assert.That(none.Out, Is.EqualTo(top.Out));
    }

    [Test]
    public void VersionPrintsThePackageVersion()
    {
        var r = Cli("--version");
        Assert.That(r.Code, Is.EqualTo(0), r.Err);
        string expected = typeof(CommandLine).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()!.InformationalVersion;
        Assert.That(r.Out.Trim(), Is.EqualTo(expected).And.Match(@"^\d+\.\d+\.\d+"));
    }

    [Test]
    public void UnknownOptionsAndCommandsAreUsageErrorsWithASuggestion()
    {
        AssertUsageError(["run", "--modle", "m.safetensors", "--input", "x.npy", "--output", "y.npy"], "unknown option --modle", "did you mean --model?");
        AssertUsageError(["bench", "--random-model", "20,32,4,1", "--batch", "1", "--seq", "16", "--iteratons", "3"], "--iteratons", "did you mean --iterations?");
        AssertUsageError(["inspect", "m.dcw", "--chunksize=4"], "unknown option --chunksize", "did you mean --chunk-size?");
        AssertUsageError(["bnech"], "unknown command 'bnech'", "did you mean bench?", "run, convert, inspect, bench and stream");
        AssertUsageError(["frobnicate"], "unknown command 'frobnicate'", "run, convert, inspect, bench and stream");
        var far = Cli("run", "--zzzzzzzzzz", "1");
        Assert.That(far.Err, Does.Not.Contain("did you mean"), "no suggestion when nothing is close");
    }

    [Test]
    public void NoArgumentIsSilentlyIgnored()
    {
        AssertUsageError(["run", "--model", "m.safetensors", "--input", "x.npy", "--output", "y.npy", "extra"], "unexpected argument 'extra'");
        AssertUsageError(["inspect", "a.dcw", "b.dcw"], "unexpected argument 'b.dcw'");
        AssertUsageError(["convert", "a.safetensors", "b.safetensors", "-o", "c.dcw"], "unexpected argument 'b.safetensors'");
        AssertUsageError(["bench", "--random-model", "20,32,4,1", "--batch", "1", "--batch", "2", "--seq", "16"], "--batch");
        AssertUsageError(["run", "--model"], "--model");
    }

    [Test]
    public void ExitCodesAreZeroOneAndTwo()
    {
        var golden = GoldenCase.Load("tiny");
        string dir = Path.Combine(Path.GetTempPath(), "dualchunk-parser-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            string input = Path.Combine(dir, "x.npy"), output = Path.Combine(dir, "y.npy");
            DualChunk.Core.Npy.Write(input, golden.Input, [golden.Batch, golden.SeqLen, golden.EmbedDim]);
            // --name=value, the old parser's other spelling, still works.
            var ok = Cli("run", "--model", golden.ModelPath, "--chunk-size=4", "--input", input, "--output=" + output, "--threads", "2");
            Assert.That(ok.Code, Is.EqualTo(0), ok.Err);
            Assert.That(ok.Out, Does.Contain("wrote " + output));
            Assert.That(File.Exists(output));

            AssertUsageError(["run", "--model", golden.ModelPath, "--input", input], "--output");          // required option
            AssertUsageError(["run", "--model", golden.ModelPath, "--chunk-size", "four", "--input", input, "--output", output], "--chunk-size 'four'");
            AssertUsageError(["bench", "--random-model", "20,32,4,1", "--batch", "0", "--seq", "16"], "--batch '0' must be an integer ≥ 1");
            AssertUsageError(["bench", "--random-model", "20,32,4,1", "--batch", "1", "--seq", "16", "--threads", "-1"], "--threads '-1'");
            AssertUsageError(["bench", "--random-model", "20,32", "--batch", "1", "--seq", "16"], "E,H,NH,L");

            var missing = Cli("run", "--model", Path.Combine(dir, "nope.safetensors"), "--chunk-size", "4", "--input", input, "--output", output);
            Assert.That(missing.Code, Is.EqualTo(1), "a missing file is an error, not a usage error");
            Assert.That(missing.Err.Trim().Split('\n'), Has.Length.EqualTo(1));
            var notNpy = Path.Combine(dir, "bad.npy");
            File.WriteAllText(notNpy, "not numpy");
            Assert.That(Cli("run", "--model", golden.ModelPath, "--chunk-size", "4", "--input", notNpy, "--output", output).Code, Is.EqualTo(1));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [GeneratedRegex(@"^\| `(run|convert|inspect|bench) ([^`]*)`", RegexOptions.Multiline)]
    private static partial Regex TableRow();

    [GeneratedRegex(@"(?<![\w-])--?[a-z][a-z-]*")]
    private static partial Regex FlagName();
}
