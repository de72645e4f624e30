using System.Buffers.Binary;
using System.Globalization;
using System.IO.Hashing;
using System.Runtime.InteropServices;
using System.Text;

namespace DualChunk.Core;

/// <summary>
/// DualChunk.NET's own flat weights format (.dcw), specified in weights-format.md: a 64-byte preamble holding the
/// full model configuration (chunk size included), a tensor table, then float32 tensor data aligned to 64 bytes,
/// protected by an XxHash3 checksum of the whole file.
/// </summary>
/// <remarks>
/// Errors: a missing file is a <see cref="FileNotFoundException"/>; everything wrong with the content is a
/// <see cref="ModelFormatException"/> naming the file and the problem.
/// </remarks>
public static partial class DcwFile
{
    /// <summary>The 8 magic bytes at offset 0: ASCII <c>DCWEIGHT</c>.</summary>
    public static ReadOnlySpan<byte> Magic => "DCWEIGHT"u8;

    /// <summary>The format version this build writes; it reads this one and version 1 (which has no architecture field: DualChunk).</summary>
    public const int CurrentVersion = 2;

    /// <summary>Size of the fixed preamble.</summary>
    public const int PreambleSize = 64;

    /// <summary>Alignment of the data section and of every tensor's data.</summary>
    public const int Alignment = 64;

    /// <summary>Offset of the 8-byte checksum field inside the preamble.</summary>
    public const int ChecksumOffset = 56;

    internal const uint DtypeF32 = 1;
    internal const int MaxNameBytes = 1024;
    internal const int MaxRank = 8;
    internal const int MaxTensorCount = 1_000_000;
    internal const long MaxTableBytes = 64L << 20;

    /// <summary>
    /// Reads a .dcw file, verifying its structure and checksum, then validating the tensors against the stored
    /// configuration with <see cref="TensorSetValidator.Validate"/>.
    /// </summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="ArgumentException">The path is empty or names a directory.</exception>
    /// <exception cref="ModelFormatException">The file is damaged, of an unsupported version, or fails validation.</exception>
    public static (ModelConfig Config, Dictionary<string, CheckpointTensor> Tensors) Read(string path)
    {
        using var fs = SafetensorsReader.OpenFile(path);
        return Read(fs, path);
    }

    /// <summary>Reads a .dcw file from a readable, seekable stream; <paramref name="sourceName"/> names it in errors.</summary>
    /// <exception cref="ArgumentException">The stream is not readable and seekable.</exception>
    /// <exception cref="ModelFormatException">The content is damaged, of an unsupported version, or fails validation.</exception>
    public static (ModelConfig Config, Dictionary<string, CheckpointTensor> Tensors) Read(Stream stream, string sourceName)
    {
        CheckStream(stream, sourceName);
        var (info, tensors) = Scan(stream, sourceName, load: true);
        Check(info, tensors!, sourceName);
        return (info.Config, tensors!);
    }

    /// <summary>
    /// Maps a .dcw file read-only and returns tensors whose data lies in the mapping, in place (no copy), after the same
    /// checks as <see cref="Read(string)"/>. The tensors are valid until <c>Mapping</c> is disposed. Little-endian only.
    /// </summary>
    internal static (ModelConfig Config, Dictionary<string, CheckpointTensor> Tensors, MappedFile Mapping) Map(string path)
    {
        var mapping = MappedFile.Open(path);
        try
        {
            DcwFileInfo info;
            using (var stream = mapping.OpenStream())
                info = Scan(stream, path, load: false).Info;
            var tensors = new Dictionary<string, CheckpointTensor>(StringComparer.Ordinal);
            foreach (var e in info.Tensors)
                tensors.Add(e.Name, new CheckpointTensor(e.Name, [.. e.Shape], mapping.Floats(e.Offset, (int)(e.ByteLength / 4))));
            Check(info, tensors, path);
            return (info.Config, tensors, mapping);
        }
        catch
        {
            mapping.Dispose();
            throw;
        }
    }

    private static void Check(DcwFileInfo info, Dictionary<string, CheckpointTensor> tensors, string sourceName)
    {
        if (!info.ChecksumValid)
            throw new ModelFormatException(Inv($"{sourceName}: the file is corrupted: its checksum is 0x{info.StoredChecksum:x16} but its contents hash to 0x{info.ComputedChecksum:x16}. Re-convert or re-download it."));
        if (info.PaddingProblem is not null)
            throw new ModelFormatException($"{sourceName}: {info.PaddingProblem}; the format requires zero padding. The file is corrupted or from a non-conforming writer.");
        try
        {
            TensorSetValidator.Validate(tensors, info.Config);
        }
        catch (ModelFormatException ex)
        {
            throw new ModelFormatException($"{sourceName}: {ex.Message}", ex);
        }
    }

    /// <summary>
    /// Reads the structure of a .dcw file and computes its checksum without loading the tensors. A checksum failure
    /// is reported through <see cref="DcwFileInfo.ChecksumValid"/> (and non-zero padding through
    /// <see cref="DcwFileInfo.PaddingProblem"/>); structural damage still throws.
    /// </summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="ArgumentException">The path is empty or names a directory.</exception>
    /// <exception cref="ModelFormatException">The file's structure is damaged or its version unsupported.</exception>
    public static DcwFileInfo Inspect(string path)
    {
        using var fs = SafetensorsReader.OpenFile(path);
        return Inspect(fs, path);
    }

    /// <summary>Inspects a .dcw file held in a readable, seekable stream; see <see cref="Inspect(string)"/>.</summary>
    /// <exception cref="ArgumentException">The stream is not readable and seekable.</exception>
    /// <exception cref="ModelFormatException">The structure is damaged or the version unsupported.</exception>
    public static DcwFileInfo Inspect(Stream stream, string sourceName)
    {
        CheckStream(stream, sourceName);
        return Scan(stream, sourceName, load: false).Info;
    }

    /// <summary>True when <paramref name="prefix"/> starts with the .dcw magic.</summary>
    public static bool HasMagic(ReadOnlySpan<byte> prefix) => prefix.StartsWith(Magic);

    private static void CheckStream(Stream stream, string sourceName)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(sourceName);
        if (!stream.CanRead || !stream.CanSeek)
            throw new ArgumentException("The stream must be readable and seekable.", nameof(stream));
    }

    private static (DcwFileInfo Info, Dictionary<string, CheckpointTensor>? Tensors) Scan(Stream s, string src, bool load)
    {
        long fileLength = s.Length;
        if (fileLength < PreambleSize)
            throw Err(src, $"file is {fileLength} bytes, shorter than the {PreambleSize}-byte .dcw preamble. It is truncated or not a .dcw file.");
        s.Position = 0;
        var preamble = new byte[PreambleSize];
        ReadExactly(s, preamble, src, "the preamble");
        var p = preamble.AsSpan();
        if (!p.StartsWith(Magic))
            throw Err(src, $"wrong magic {Hex(p[..8])} (expected \"DCWEIGHT\" = {Hex(Magic)}): not a .dcw file.");
        uint version = U32(p, 8);
        if (version is not (1 or CurrentVersion))
            throw Err(src, $"format version {version} is not supported; this build reads versions 1 and {CurrentVersion}. Use a matching DualChunk.NET build or re-convert the checkpoint.");
        // Offset 12: version 1's flags (always 0: the model is a DualChunk.build one), version 2's architecture code.
        uint flags = version == 1 ? U32(p, 12) : 0;
        if (flags != 0)
            throw Err(src, $"flags field is 0x{flags:x8}; version 1 defines no flags and requires 0. The file is corrupted or from an incompatible writer.");
        uint architecture = version == 1 ? 0 : U32(p, 12);
        if (architecture > (uint)ModelArchitecture.DecoderOnly)
            throw Err(src, $"architecture code {architecture} is unknown; version {version} defines 0 (DualChunk) and 1 (DecoderOnly). The file is corrupted or from a newer writer.");
        string[] fieldNames = ["embed_dim (E)", "hidden_size (H)", "num_heads (NH)", "num_layers (L)", "chunk_size (C)", "ffn_size (F)"];
        var dims = new int[6];
        for (int i = 0; i < 6; i++)
        {
            uint v = U32(p, 16 + 4 * i);
            if (v == 0 || v > int.MaxValue)
                throw Err(src, $"config field {fieldNames[i]} at offset {16 + 4 * i} is {v}; expected 1..{int.MaxValue}. The file is corrupted.");
            dims[i] = (int)v;
        }
        var config = ModelConfig.FromFile($"{src}: the stored model configuration is invalid", dims[0], dims[1], dims[2], dims[3], dims[4], dims[5])
            with { Architecture = (ModelArchitecture)architecture };
        uint count = U32(p, 40);
        uint tableLength = U32(p, 44);
        ulong dataOffset = BinaryPrimitives.ReadUInt64LittleEndian(p[48..]);
        ulong storedChecksum = BinaryPrimitives.ReadUInt64LittleEndian(p[56..]);
        if (count == 0 || count > MaxTensorCount)
            throw Err(src, $"tensor count is {count}; expected 1..{MaxTensorCount}. The file is corrupted.");
        // Checked before anything is sized from the configuration: a corrupt layer count must not cost memory or time.
        if (count != config.TensorCount)
            throw Err(src, $"tensor count is {count}, but the stored configuration ({config}) has {config.TensorCount} tensors. The file is corrupted.");
        const int minEntry = 4 + 1 + 4 + 4 + 8 + 8;
        if (tableLength < (long)count * minEntry || tableLength > MaxTableBytes || tableLength > fileLength - PreambleSize)
            throw Err(src, $"tensor table length {tableLength} is impossible: {count} entries need at least {(long)count * minEntry} bytes, and the table must fit in the {fileLength - PreambleSize} bytes after the preamble (limit {MaxTableBytes}). The file is truncated or corrupted.");
        long expectedDataOffset = AlignUp(PreambleSize + (long)tableLength);
        if (dataOffset != (ulong)expectedDataOffset)
            throw Err(src, $"data offset is {dataOffset}; expected {expectedDataOffset} (the end of the {tableLength}-byte table rounded up to {Alignment}). The file is corrupted.");

        var table = new byte[tableLength];
        ReadExactly(s, table, src, "the tensor table");
        var entries = ParseTable(table, (int)count, expectedDataOffset, fileLength, src);

        var hash = new XxHash3();
        hash.Append(p[..ChecksumOffset]);
        hash.Append(new byte[8]); // the checksum field counts as zero
        hash.Append(table);

        var tensors = load ? new Dictionary<string, CheckpointTensor>(StringComparer.Ordinal) : null;
        var buffer = new byte[1 << 16];
        long at = PreambleSize + (long)tableLength;
        string? badPadding = null;
        foreach (var e in entries)
        {
            var pad = buffer.AsSpan(0, (int)(e.Offset - at));
            ReadExactly(s, pad, src, "padding");
            if (pad.ContainsAnyExcept((byte)0))
                badPadding ??= Inv($"padding bytes {at}..{e.Offset - 1} before tensor '{e.Name}' are not all zero");
            hash.Append(pad);
            if (load)
            {
                var data = new float[e.ByteLength / 4];
                // In slices: a span of bytes over more than 2 GiB of floats would overflow its int length.
                for (int done = 0; done < data.Length; done += 1 << 28)
                {
                    var slice = data.AsSpan(done, Math.Min(1 << 28, data.Length - done));
                    var bytes = MemoryMarshal.AsBytes(slice);
                    ReadExactly(s, bytes, src, $"tensor '{e.Name}'");
                    hash.Append(bytes);
                    if (!BitConverter.IsLittleEndian)
                    {
                        for (int i = 0; i < slice.Length; i++)
                            slice[i] = BinaryPrimitives.ReadSingleLittleEndian(bytes[(4 * i)..]);
                    }
                }
                tensors!.Add(e.Name, new CheckpointTensor(e.Name, [.. e.Shape], data));
            }
            else
            {
                for (long left = e.ByteLength; left > 0;)
                {
                    int n = (int)Math.Min(left, buffer.Length);
                    ReadExactly(s, buffer.AsSpan(0, n), src, $"tensor '{e.Name}'");
                    hash.Append(buffer.AsSpan(0, n));
                    left -= n;
                }
            }
            at = e.Offset + e.ByteLength;
        }
        var info = new DcwFileInfo((int)version, flags, config, entries, fileLength, tableLength, expectedDataOffset,
            storedChecksum, hash.GetCurrentHashAsUInt64(), badPadding);
        return (info, tensors);
    }

    private static List<DcwTensorEntry> ParseTable(byte[] table, int count, long dataOffset, long fileLength, string src)
    {
        var entries = new List<DcwTensorEntry>(Math.Min(count, 4096));
        var names = new HashSet<string>(StringComparer.Ordinal);
        var utf8 = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
        int pos = 0;
        long nextFree = dataOffset;
        for (int i = 0; i < count; i++)
        {
            int entryStart = pos;
            string where = Inv($"tensor table entry {i} (table byte {entryStart})");
            uint nameLength = TableU32(table, ref pos, src, where, "name length");
            if (nameLength == 0 || nameLength > MaxNameBytes)
                throw Err(src, $"{where}: name length {nameLength}; expected 1..{MaxNameBytes}. The file is corrupted.");
            if (nameLength > table.Length - pos)
                throw Err(src, $"{where}: the {nameLength}-byte name runs past the end of the {table.Length}-byte table. The file is corrupted.");
            string name;
            try
            {
                name = utf8.GetString(table, pos, (int)nameLength);
            }
            catch (DecoderFallbackException ex)
            {
                throw new ModelFormatException($"{src}: {where}: the name is not valid UTF-8. The file is corrupted.", ex);
            }
            pos += (int)nameLength;
            where = Inv($"tensor '{name}' (table entry {i})");
            if (!names.Add(name))
                throw Err(src, $"{where}: the name appears more than once in the table. The file is corrupted.");
            uint dtype = TableU32(table, ref pos, src, where, "dtype");
            if (dtype != DtypeF32)
                throw Err(src, $"{where}: dtype code {dtype} is unknown; versions 1 and 2 support only code {DtypeF32} (F32).");
            uint rank = TableU32(table, ref pos, src, where, "rank");
            if (rank > MaxRank)
                throw Err(src, $"{where}: rank {rank} exceeds the maximum {MaxRank}. The file is corrupted.");
            var shape = new int[rank];
            for (int d = 0; d < rank; d++)
            {
                uint dim = TableU32(table, ref pos, src, where, "shape");
                if (dim > int.MaxValue)
                    throw Err(src, $"{where}: shape dimension {d} is {dim}, above the maximum {int.MaxValue}. The file is corrupted.");
                shape[d] = (int)dim;
            }
            ulong offset = TableU64(table, ref pos, src, where, "offset");
            ulong byteLength = TableU64(table, ref pos, src, where, "byte length");
            long elements = ElementCount(shape, fileLength / 4);
            if (elements < 0)
                throw Err(src, $"{where}: F32 shape [{string.Join(", ", shape)}] needs more bytes than the whole {fileLength}-byte file holds. The file is corrupted.");
            if ((ulong)elements * 4 != byteLength)
                throw Err(src, $"{where}: byte length {byteLength} does not match F32 shape [{string.Join(", ", shape)}], which needs {elements * 4} bytes. The file is corrupted.");
            if (elements > Array.MaxLength)
                throw Err(src, $"{where}: {elements} elements are more than this reader can hold in one tensor ({Array.MaxLength}).");
            long expectedOffset = AlignUp(nextFree);
            if (offset != (ulong)expectedOffset)
                throw Err(src, $"{where}: data offset {offset}; expected {expectedOffset} (the previous tensor's end rounded up to {Alignment}, tensors packed in table order without overlap). The file is corrupted.");
            if (byteLength > (ulong)(fileLength - expectedOffset))
                throw Err(src, $"{where}: data [{offset}, {offset + byteLength}) lies beyond the end of the {fileLength}-byte file. The file is truncated.");
            entries.Add(new DcwTensorEntry(name, "F32", shape, (long)offset, (long)byteLength));
            nextFree = (long)offset + (long)byteLength;
        }
        if (pos != table.Length)
            throw Err(src, $"the tensor table holds {pos} bytes of entries but its header says {table.Length}. The file is corrupted.");
        if (nextFree != fileLength)
            throw Err(src, $"the last tensor ends at byte {nextFree} but the file is {fileLength} bytes; {(nextFree < fileLength ? "extra bytes were appended" : "it is truncated")}.");
        return entries;
    }

    /// <summary>
    /// product(shape), or −1 when it exceeds <paramref name="limit"/>: weights-format.md rule 8's overflow-free product
    /// (a zero dimension makes it 0; otherwise each step checks <c>product ≤ limit / dim</c> before multiplying).
    /// </summary>
    internal static long ElementCount(ReadOnlySpan<int> shape, long limit)
    {
        if (shape.Contains(0)) return 0;
        long product = 1;
        foreach (int dim in shape)
        {
            if (product > limit / dim) return -1;
            product *= dim;
        }
        return product;
    }

    private static uint TableU32(byte[] table, ref int pos, string src, string where, string field)
        => BinaryPrimitives.ReadUInt32LittleEndian(TableField(table, ref pos, 4, src, where, field));

    private static ulong TableU64(byte[] table, ref int pos, string src, string where, string field)
        => BinaryPrimitives.ReadUInt64LittleEndian(TableField(table, ref pos, 8, src, where, field));

    /// <summary>The next <paramref name="size"/> bytes of the table at <paramref name="pos"/>, which advances past them.</summary>
    private static ReadOnlySpan<byte> TableField(byte[] table, ref int pos, int size, string src, string where, string field)
    {
        if (table.Length - pos < size)
            throw Err(src, $"{where}: the {field} field runs past the end of the {table.Length}-byte table. The file is corrupted.");
        pos += size;
        return table.AsSpan(pos - size, size);
    }

    private static void ReadExactly(Stream s, Span<byte> dest, string src, string what)
    {
        try
        {
            s.ReadExactly(dest);
        }
        catch (EndOfStreamException ex)
        {
            throw new ModelFormatException($"{src}: the file ended while reading {what}. It is truncated (or changed while being read).", ex);
        }
    }

    internal static long AlignUp(long v) => (v + (Alignment - 1)) & ~(long)(Alignment - 1);

    private static uint U32(ReadOnlySpan<byte> p, int at) => BinaryPrimitives.ReadUInt32LittleEndian(p[at..]);

    private static string Hex(ReadOnlySpan<byte> b) => Convert.ToHexString(b);

    private static ModelFormatException Err(string src, FormattableString message)
        => new(src + ": " + message.ToString(CultureInfo.InvariantCulture));

    private static string Inv(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);

}
