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
        if (WeightsFiles.IsDcw(path))
        {
            var info = DcwFile.Inspect(path);
            o.WriteLine(Invariant($"format:   dcw version {info.Version} ({info.FileLength:N0} bytes, table {info.TableByteLength:N0} bytes, data at {info.DataOffset})"));
            o.WriteLine($"config:   {info.Config}");
            WriteKernels(o);
            WriteTensors(o, info.Tensors.Select(t => (t.Name, t.Dtype, t.ShapeText, t.ByteLength, Invariant($"  @ {t.Offset}"))).ToList());
            if (info.ChecksumValid)
            {
                o.WriteLine(Invariant($"checksum: ok (XxHash3 {info.StoredChecksum:x16})"));
            }
            else
            {
                o.WriteLine(Invariant($"checksum: MISMATCH (stored {info.StoredChecksum:x16}, computed {info.ComputedChecksum:x16})"));
                throw new ModelFormatException(Invariant($"{path}: checksum MISMATCH (stored {info.StoredChecksum:x16}, computed {info.ComputedChecksum:x16}): the file is corrupted; convert it again from the checkpoint."));
            }
            if (info.PaddingProblem is not null)
                o.WriteLine($"padding:  NOT ZERO ({info.PaddingProblem})");
            // Everything run checks (padding, tensor set, finite values, chunk size), so inspect never passes a file run rejects.
            _ = WeightsLoader.Load(path, chunkSize);
        }
        else
        {
            var info = SafetensorsReader.Inspect(path);
            o.WriteLine(Invariant($"format:   safetensors ({info.FileLength:N0} bytes, header {info.HeaderLength:N0} bytes)"));
            foreach (var (k, v) in info.Metadata)
                o.WriteLine($"metadata: {k} = {v}");
            var (config, _, _) = WeightsLoader.Load(path, chunkSize ?? WeightsLoader.DefaultChunkSize);
            o.WriteLine($"config:   {config}{(chunkSize is null ? " (chunk size not stored in safetensors: Edifice's default 64 assumed; pass --chunk-size)" : "")}");
            WriteKernels(o);
            WriteTensors(o, info.Entries.Select(t => (t.Name, t.Dtype, t.ShapeText, t.ByteLength, "")).ToList());
            o.WriteLine("checksum: none (safetensors has no checksum)");
        }
    }

    /// <summary>The tensor table of either format: one line per tensor, then the total.</summary>
    private static void WriteTensors(TextWriter o, List<(string Name, string Dtype, string Shape, long Bytes, string Where)> tensors)
    {
        o.WriteLine($"tensors:  {tensors.Count}");
        foreach (var t in tensors)
            o.WriteLine(Invariant($"  {t.Name,-64} {t.Dtype,-4} {t.Shape,-12} {t.Bytes,12:N0} B{t.Where}"));
        o.WriteLine(Invariant($"total:    {tensors.Sum(t => t.Bytes):N0} bytes of tensor data"));
    }

    private static void WriteKernels(TextWriter o)
    {
        o.WriteLine($"kernels:  isa={KernelSelection.Isa}, gemm={Gemm.MicroKernel}, cpu offers {BuildInfo.CpuIsa}{(BuildInfo.IsNativeAot ? " (NativeAOT)" : "")}");
        o.WriteLine($"blocking: {Gemm.BlockingDescription}");
        if (BuildInfo.Shortfall is { } shortfall) o.WriteLine($"note:     {shortfall}");
    }

    private static string Invariant(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}

/// <summary>Telling weights formats apart by content.</summary>
internal static class WeightsFiles
{
    /// <summary>True when the file starts with the .dcw magic (missing or short files are not .dcw).</summary>
    public static bool IsDcw(string path)
    {
        if (!File.Exists(path)) return false;
        Span<byte> prefix = stackalloc byte[8];
        using var s = RegularFile.OpenRead(path); // refuses a FIFO or device instead of blocking on it
        int n = s.ReadAtLeast(prefix, prefix.Length, throwOnEndOfStream: false);
        return DcwFile.HasMagic(prefix[..n]);
    }
}
