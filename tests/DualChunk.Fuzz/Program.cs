using SharpFuzz;

namespace DualChunk.Fuzz;

/// <summary>
/// <c>DualChunk.Fuzz fuzz TARGET</c>: the AFL++ fork-server loop over one target (input on stdin; see run-fuzz.sh).
/// <c>DualChunk.Fuzz run TARGET FILE|DIR...</c>: replays inputs, one line per file; exit 1 if any escaped.
/// <c>DualChunk.Fuzz seed DIR</c>: writes the seed corpus (DIR/TARGET/*).
/// </summary>
internal static class Program
{
    private static int Main(string[] args)
    {
        if (args.Length >= 2 && args[0] == "fuzz")
        {
            var target = FuzzTargets.Get(args[1]);
            Fuzzer.OutOfProcess.Run(stream =>
            {
                using var ms = new MemoryStream();
                stream.CopyTo(ms);
                target.Run(ms.ToArray());
            });
            return 0;
        }
        if (args.Length >= 3 && args[0] == "run")
            return Replay(FuzzTargets.Get(args[1]), args[2..]);
        if (args.Length == 2 && args[0] == "seed")
        {
            Seeds.Write(args[1]);
            return 0;
        }
        Console.Error.WriteLine("usage: DualChunk.Fuzz fuzz TARGET | run TARGET FILE|DIR... | seed DIR");
        Console.Error.WriteLine("targets: " + string.Join(", ", FuzzTargets.All.Select(t => t.Name)));
        return 2;
    }

    private static int Replay(FuzzTarget target, string[] paths)
    {
        int bad = 0;
        var files = paths.SelectMany<string, string>(p => Directory.Exists(p) ? Directory.GetFiles(p, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal) : [p]);
        foreach (var file in files.Where(f => Path.GetFileName(f) != "README.txt")) // afl-fuzz's note in crashes/
        {
            try
            {
                bool loaded = target.Run(File.ReadAllBytes(file));
                Console.WriteLine($"{(loaded ? "loaded" : "rejected")}\t{file}");
            }
#pragma warning disable CA1031 // reporting every escape is the point
            catch (Exception ex)
#pragma warning restore CA1031
            {
                bad++;
                Console.WriteLine($"ESCAPED\t{file}\t{ex.GetType().Name}: {ex.Message}");
            }
        }
        return bad == 0 ? 0 : 1;
    }
}
