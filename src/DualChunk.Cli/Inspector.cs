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
        using var fs = RegularFile.OpenRead(path); // refuses a FIFO or device instead of blocking on it
        var reader = CheckpointReader.Open(fs, path);
        try
        {
            o.WriteLine($"format:   {reader.Description}");
            foreach (var line in reader.Header) o.WriteLine(line);
            WriteKernels(o);
            WriteTensors(o, reader.Entries);
            o.WriteLine(reader.Integrity);
            foreach (var problem in reader.Problems) o.WriteLine(problem);
            // Everything run checks (checksum, padding, tensor set, finite values, spec, chunk size), so inspect never
            // passes a file run rejects, and fails with run's message.
            var loaded = reader.Load(chunkSize);
            string from = loaded.ChunkSize switch
            {
                ChunkSizeSource.File => " (chunk size stored in the file)",
                ChunkSizeSource.EdificeDefault => $" (chunk size not stored in the file: Edifice's default {WeightsLoader.DefaultChunkSize} assumed; pass --chunk-size)",
                _ => "",
            };
            o.WriteLine($"config:   {loaded.Config}{from}");
        }
        finally
        {
            (reader as NxCheckpointReader)?.Close();
        }
    }

    /// <summary>The tensor table of either format: one line per tensor, then the total.</summary>
    private static void WriteTensors(TextWriter o, IReadOnlyList<CheckpointEntry> tensors)
    {
        o.WriteLine($"tensors:  {tensors.Count}");
        foreach (var t in tensors)
            o.WriteLine(Invariant($"  {t.Name,-64} {t.Dtype,-4} {t.ShapeText,-12} {t.ByteLength,12:N0} B{t.Where}"));
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
