using System.Globalization;
using DualChunk.Core;
using DualChunk.Kernels;

namespace DualChunk.Cli;

/// <summary><c>dualchunk inspect</c>: what a weights file holds, and what this machine will run it with.</summary>
internal static class Inspector
{
    public static void Write(string path, int? chunkSize, TextWriter o)
    {
        o.WriteLine($"file:     {path}");
        using var file = CheckpointFile.Open(path);
        o.WriteLine($"format:   {file.Description}");
        foreach (var line in file.Header) o.WriteLine(line);
        WriteKernels(o);
        WriteTensors(o, file.Tensors);
        o.WriteLine(file.Integrity);
        foreach (var problem in file.Problems) o.WriteLine(problem);
        // Everything run checks (checksum, padding, tensor set, finite values, spec, chunk size), so inspect never
        // passes a file run rejects, and fails with run's message.
        var config = file.Validate(chunkSize);
        string from = file.StoresChunkSize ? " (chunk size stored in the file)"
            : chunkSize is null ? $" (chunk size not stored in the file: Edifice's default {WeightsLoader.DefaultChunkSize} assumed; pass --chunk-size)"
            : "";
        o.WriteLine($"config:   {config}{from}");
    }

    /// <summary>The tensor table of either format: one line per tensor, then the total.</summary>
    private static void WriteTensors(TextWriter o, IReadOnlyList<CheckpointEntry> tensors)
    {
        o.WriteLine($"tensors:  {tensors.Count}");
        foreach (var t in tensors)
            o.WriteLine(Invariant($"  {t.Name,-64} {t.Dtype,-4} {t.ShapeText,-12} {t.ByteLength,12:N0} B{(t.Offset is long at ? Invariant($"  @ {at}") : "")}"));
        o.WriteLine(Invariant($"total:    {tensors.Sum(t => t.ByteLength):N0} bytes of tensor data"));
    }

    private static void WriteKernels(TextWriter o)
    {
        o.WriteLine($"kernels:  isa={KernelSelection.Isa}, gemm={Gemm.MicroKernel}, cpu offers {BuildInfo.CpuIsa}{(BuildInfo.IsNativeAot ? " (NativeAOT)" : "")}");
        o.WriteLine($"blocking: {Gemm.BlockingDescription}");
        if (BuildInfo.Shortfall is { } shortfall) o.WriteLine($"note:     {shortfall}");
    }

    private static string Invariant(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
