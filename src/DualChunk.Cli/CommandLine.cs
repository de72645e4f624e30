namespace DualChunk.Cli;

/// <summary>The <c>dualchunk</c> commands. TODO: run, convert, inspect.</summary>
internal static class CommandLine
{
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        _ = args;
        _ = stdout;
        stderr.WriteLine("dualchunk: not implemented yet");
        return 2;
    }
}
