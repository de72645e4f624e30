using System.Buffers.Binary;
using System.IO.Hashing;
using System.Runtime.InteropServices;
using System.Text;

namespace DualChunk.Core;

/// <summary>Writing .dcw files (the reader is in DcwFile.cs).</summary>
public static partial class DcwFile
{
    /// <summary>
    /// Writes <paramref name="tensors"/> (validated against <paramref name="config"/>) to <paramref name="path"/>, as
    /// float32 in the canonical order of <see cref="CheckpointNames.Expected(ModelConfig)"/>. The file is written to a
    /// temporary file in the same directory and renamed into place, so a crash never leaves a partial file. A symbolic
    /// link at <paramref name="path"/> is written through (its final target is replaced, the link kept).
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="path"/> is a directory, a FIFO, a device or a socket.</exception>
    /// <exception cref="ModelFormatException">The tensors do not match <paramref name="config"/> or are not finite.</exception>
    public static void Write(string path, ModelConfig config, IReadOnlyDictionary<string, CheckpointTensor> tensors)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(tensors);
        TensorSetValidator.Validate(tensors, config);

        var expected = CheckpointNames.Expected(config);
        var ordered = expected.Select(e => tensors[e.Name]).ToList();

        // Table: computed first, since it fixes where the data starts.
        var table = new MemoryStream();
        long tableLength = 0;
        foreach (var t in ordered) tableLength += EntrySize(t);
        long dataOffset = AlignUp(PreambleSize + tableLength);
        long pos = dataOffset;
        var offsets = new long[ordered.Count];
        for (int i = 0; i < ordered.Count; i++)
        {
            var t = ordered[i];
            pos = AlignUp(pos);
            offsets[i] = pos;
            long bytes = 4L * t.Data.Length;
            byte[] name = Encoding.UTF8.GetBytes(t.Name);
            WriteU32(table, (uint)name.Length);
            table.Write(name);
            WriteU32(table, DtypeF32);
            WriteU32(table, (uint)t.Shape.Count);
            foreach (int d in t.Shape) WriteU32(table, (uint)d);
            WriteU64(table, (ulong)pos);
            WriteU64(table, (ulong)bytes);
            pos += bytes;
        }

        var preamble = new byte[PreambleSize];
        Magic.CopyTo(preamble);
        var p = preamble.AsSpan();
        BinaryPrimitives.WriteUInt32LittleEndian(p[8..], CurrentVersion);
        BinaryPrimitives.WriteUInt32LittleEndian(p[12..], (uint)config.Architecture);
        BinaryPrimitives.WriteUInt32LittleEndian(p[16..], (uint)config.EmbedDim);
        BinaryPrimitives.WriteUInt32LittleEndian(p[20..], (uint)config.HiddenSize);
        BinaryPrimitives.WriteUInt32LittleEndian(p[24..], (uint)config.NumHeads);
        BinaryPrimitives.WriteUInt32LittleEndian(p[28..], (uint)config.NumLayers);
        BinaryPrimitives.WriteUInt32LittleEndian(p[32..], (uint)config.ChunkSize);
        BinaryPrimitives.WriteUInt32LittleEndian(p[36..], (uint)config.FfnSize);
        BinaryPrimitives.WriteUInt32LittleEndian(p[40..], (uint)ordered.Count);
        BinaryPrimitives.WriteUInt32LittleEndian(p[44..], (uint)tableLength);
        BinaryPrimitives.WriteUInt64LittleEndian(p[48..], (ulong)dataOffset);
        // p[56..64] (checksum) is zero while hashing, then filled in.

        string full = OutputTarget(path);
        string dir = Path.GetDirectoryName(full) ?? ".";
        string temp = Path.Combine(dir, "." + Path.GetFileName(full) + "." + Guid.NewGuid().ToString("N") + ".tmp");
        try
        {
            var hash = new XxHash3();
            using (var fs = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                void Emit(ReadOnlySpan<byte> bytes)
                {
                    fs.Write(bytes);
                    hash.Append(bytes);
                }

                Emit(preamble);
                Emit(table.GetBuffer().AsSpan(0, (int)table.Length));
                long at = PreambleSize + tableLength;
                Span<byte> zeros = stackalloc byte[Alignment];
                zeros.Clear();
                var convert = BitConverter.IsLittleEndian ? null : new byte[1 << 16];
                for (int i = 0; i < ordered.Count; i++)
                {
                    Emit(zeros[..(int)(offsets[i] - at)]);
                    var data = ordered[i].Data.Span;
                    if (convert is null)
                    {
                        Emit(MemoryMarshal.AsBytes(data));
                    }
                    else
                    {
                        for (int done = 0; done < data.Length; done += convert.Length / 4)
                        {
                            int n = Math.Min(convert.Length / 4, data.Length - done);
                            for (int k = 0; k < n; k++) BinaryPrimitives.WriteSingleLittleEndian(convert.AsSpan(4 * k), data[done + k]);
                            Emit(convert.AsSpan(0, 4 * n));
                        }
                    }
                    at = offsets[i] + 4L * data.Length;
                }
                Span<byte> sum = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(sum, hash.GetCurrentHashAsUInt64());
                fs.Position = ChecksumOffset;
                fs.Write(sum);
                fs.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
    }

    /// <summary>
    /// Where <see cref="Write"/> puts the file: through symbolic links to their final target (so the link stays a link and
    /// the temporary file is in the target's folder, where the rename is atomic). Refuses anything but a regular file.
    /// </summary>
    private static string OutputTarget(string path)
    {
        string full = Path.GetFullPath(path);
        if (new FileInfo(full).LinkTarget is not null)
        {
            var target = File.ResolveLinkTarget(full, returnFinalTarget: true)
                ?? throw new IOException($"'{path}' is a symbolic link whose target cannot be resolved; pass the real output path.");
            full = Path.GetFullPath(target.FullName);
        }
        if (Directory.Exists(full))
            throw new ArgumentException($"'{path}' is a directory; pass a file path for the .dcw output (e.g. '{Path.Combine(path, "model.dcw")}').", nameof(path));
        if (RegularFile.NonRegularKind(full) is { } kind)
            throw new ArgumentException($"'{path}' is {kind}, not a regular file; the .dcw output must be a regular file, so pass another output path.", nameof(path));
        return full;
    }

    private static long EntrySize(CheckpointTensor t) => 4 + Encoding.UTF8.GetByteCount(t.Name) + 4 + 4 + 4L * t.Shape.Count + 8 + 8;

    private static void WriteU32(Stream s, uint v)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, v);
        s.Write(b);
    }

    private static void WriteU64(Stream s, ulong v)
    {
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, v);
        s.Write(b);
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
