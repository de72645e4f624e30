using System.Text;

namespace DualChunk.Bench.Peers;

/// <summary>
/// Replaces the text between <c>&lt;!-- BEGIN GENERATED: name --&gt;</c> and <c>&lt;!-- END GENERATED: name --&gt;</c>
/// in docs/benchmarks.md, creating the file or appending the section when missing, and leaving every
/// byte outside the markers as it was (other sections are written by other people and tools).
/// </summary>
public static class Docs
{
    public static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(Directory.GetCurrentDirectory()); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "DualChunk.sln"))) return dir.FullName;
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "DualChunk.sln"))) return dir.FullName;
        throw new InvalidOperationException("Run from inside the DualChunk.NET repository (no DualChunk.sln found above the current directory).");
    }

    public static void WriteSection(string path, string name, string body, string titleIfNew)
    {
        ArgumentNullException.ThrowIfNull(body);
        string begin = $"<!-- BEGIN GENERATED: {name} -->", end = $"<!-- END GENERATED: {name} -->";
        string text = File.Exists(path) ? File.ReadAllText(path) : "# Benchmarks\n";
        string block = begin + "\n" + body.TrimEnd('\n') + "\n" + end;
        int b = text.IndexOf(begin, StringComparison.Ordinal);
        int e = b < 0 ? -1 : text.IndexOf(end, b, StringComparison.Ordinal);
        if (b >= 0 && e >= 0)
            text = string.Concat(text.AsSpan(0, b), block, text.AsSpan(e + end.Length));
        else
            text = text.TrimEnd('\n') + "\n\n" + titleIfNew + "\n\n" + block + "\n";
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, text, new UTF8Encoding(false));
    }
}
