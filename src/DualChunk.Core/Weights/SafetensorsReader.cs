using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;

namespace DualChunk.Core;

/// <summary>One tensor entry of a safetensors header, as reported by <see cref="SafetensorsReader.Inspect(string)"/>.</summary>
/// <param name="Name">The tensor's key.</param>
/// <param name="Dtype">The safetensors dtype string, e.g. <c>F32</c>.</param>
/// <param name="Shape">The shape, outermost first.</param>
/// <param name="DataBegin">Offset of the tensor's first byte, relative to the start of the data section.</param>
/// <param name="ByteLength">The tensor's size in bytes.</param>
public sealed record SafetensorsEntry(string Name, string Dtype, IReadOnlyList<long> Shape, long DataBegin, long ByteLength)
{
    /// <summary>The number of elements (product of <see cref="Shape"/>).</summary>
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);

    /// <summary>The shape as text, e.g. <c>[32, 96]</c>.</summary>
    public string ShapeText => "[" + string.Join(", ", Shape) + "]";

    /// <summary>True when <see cref="SafetensorsReader.Read(string)"/> can convert this dtype to float32.</summary>
    public bool IsSupportedDtype => SafetensorsReader.IsSupported(Dtype);
}

/// <summary>The structure of a safetensors file, as reported by <see cref="SafetensorsReader.Inspect(string)"/>.</summary>
/// <param name="FileLength">The file's size in bytes.</param>
/// <param name="HeaderLength">The JSON header's size in bytes (the value of the first 8 bytes).</param>
/// <param name="Metadata">The optional <c>__metadata__</c> map (empty when absent).</param>
/// <param name="Entries">The tensor entries in header order.</param>
public sealed record SafetensorsInfo(long FileLength, long HeaderLength, IReadOnlyDictionary<string, string> Metadata, IReadOnlyList<SafetensorsEntry> Entries);

/// <summary>
/// Reads safetensors files as <c>Edifice.Checkpoint</c> writes them (8-byte LE header length, JSON header,
/// raw LE data). F32, F16, BF16 and F64 tensors are converted to float32.
/// </summary>
/// <remarks>
/// <para>Validation is as strict as the reference (Rust) safetensors implementation: the header length must fit
/// in the file and be at most 100 MB; the header must be a UTF-8 JSON object whose entries each have a known
/// <c>dtype</c>, a <c>shape</c> of non-negative integers and <c>data_offsets</c> <c>[begin, end]</c> with
/// <c>end - begin = elements × dtype size</c>; keys must be unique; and the tensors must tile the data section
/// exactly: no overlaps, no gaps and no unused trailing bytes.</para>
/// <para>Errors: a missing file is a <see cref="FileNotFoundException"/>; everything wrong with the content is a
/// <see cref="ModelFormatException"/> whose message names the file, the tensor, and what was expected vs. found.</para>
/// </remarks>
public static class SafetensorsReader
{
    /// <summary>The largest header accepted (the reference implementation's limit).</summary>
    public const long MaxHeaderLength = 100_000_000;

    /// <summary>The dtypes that are converted to float32.</summary>
    public static IReadOnlyList<string> SupportedDtypes { get; } = ["F32", "F16", "BF16", "F64"];

    private static readonly Dictionary<string, int> DtypeSizes = new(StringComparer.Ordinal)
    {
        ["BOOL"] = 1, ["U8"] = 1, ["I8"] = 1, ["F8_E5M2"] = 1, ["F8_E4M3"] = 1, ["F8_E8M0"] = 1,
        ["I16"] = 2, ["U16"] = 2, ["F16"] = 2, ["BF16"] = 2,
        ["I32"] = 4, ["U32"] = 4, ["F32"] = 4,
        ["I64"] = 8, ["U64"] = 8, ["F64"] = 8,
    };

    internal static bool IsSupported(string dtype) => SupportedDtypes.Contains(dtype, StringComparer.Ordinal);

    /// <summary>Reads every tensor of the file at <paramref name="path"/>.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="ArgumentException">The path is empty or names a directory, a FIFO, a device or a socket.</exception>
    /// <exception cref="ModelFormatException">The file is not a valid safetensors file or holds an unsupported dtype.</exception>
    public static Dictionary<string, CheckpointTensor> Read(string path)
    {
        using var stream = OpenFile(path);
        return Read(stream, path, beforeData: null);
    }

    /// <summary>Reads every tensor of an in-memory file; <paramref name="sourceName"/> names it in errors.</summary>
    /// <exception cref="ModelFormatException">The bytes are not a valid safetensors file or hold an unsupported dtype.</exception>
    public static Dictionary<string, CheckpointTensor> Read(ReadOnlySpan<byte> file, string sourceName)
    {
        ArgumentNullException.ThrowIfNull(sourceName);
        var info = ParseStructure(file, sourceName, out long dataStart);
        RequireSupported(info, sourceName);
        var result = new Dictionary<string, CheckpointTensor>(StringComparer.Ordinal);
        foreach (var e in info.Entries)
        {
            var data = new float[e.ElementCount];
            // Every entry lies inside the span (checked by the header's validation), so these offsets fit an int.
            Convert(e.Dtype, file.Slice((int)(dataStart + e.DataBegin), (int)e.ByteLength), data, e.Name, 0, sourceName);
            result.Add(e.Name, new CheckpointTensor(e.Name, ToIntShape(e.Shape), data));
        }
        return result;
    }

    /// <summary>
    /// Reads every tensor from a readable, seekable stream positioned anywhere (the file is read from position 0 to
    /// <see cref="Stream.Length"/>). <paramref name="beforeData"/> sees the validated header before any data is read,
    /// so a caller can reject a file by its names and shapes without converting gigabytes of it.
    /// </summary>
    internal static Dictionary<string, CheckpointTensor> Read(Stream stream, string source, Action<SafetensorsInfo>? beforeData)
    {
        var (info, dataStart) = ReadStructure(stream, source);
        RequireSupported(info, source);
        beforeData?.Invoke(info);
        var result = new Dictionary<string, CheckpointTensor>(StringComparer.Ordinal);
        var buffer = new byte[1 << 20];
        try
        {
            // The tensors tile the data section, so in offset order this reads the stream front to back.
            foreach (var e in info.Entries.OrderBy(e => e.DataBegin))
            {
                var data = new float[e.ElementCount];
                stream.Position = dataStart + e.DataBegin;
                int size = DtypeSizes[e.Dtype];
                if (e.Dtype == "F32" && BitConverter.IsLittleEndian)
                {
                    // In slices: a span of bytes over more than 2 GiB of floats would overflow its int length.
                    for (long done = 0; done < data.Length; done += 1 << 28)
                    {
                        int n = (int)Math.Min(1 << 28, data.Length - done);
                        stream.ReadExactly(MemoryMarshal.AsBytes(data.AsSpan((int)done, n)));
                    }
                }
                else
                {
                    int perChunk = buffer.Length / size;
                    for (int done = 0; done < data.Length; done += perChunk)
                    {
                        int n = Math.Min(perChunk, data.Length - done);
                        var raw = buffer.AsSpan(0, n * size);
                        stream.ReadExactly(raw);
                        Convert(e.Dtype, raw, data.AsSpan(done, n), e.Name, done, source);
                    }
                }
                result.Add(e.Name, new CheckpointTensor(e.Name, ToIntShape(e.Shape), data));
            }
        }
        catch (EndOfStreamException ex)
        {
            throw new ModelFormatException($"{source}: the file ended while reading tensor data (was it truncated or modified while being read?).", ex);
        }
        return result;
    }

    /// <summary>
    /// Reads and validates the header of the file at <paramref name="path"/> without converting any data.
    /// Entries of any known safetensors dtype are reported (see <see cref="SafetensorsEntry.IsSupportedDtype"/>).
    /// </summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="ArgumentException">The path is empty or names a directory.</exception>
    /// <exception cref="ModelFormatException">The file's structure is invalid.</exception>
    public static SafetensorsInfo Inspect(string path)
    {
        using var stream = OpenFile(path);
        return ReadStructure(stream, path).Info;
    }

    /// <summary>Inspects an in-memory file; see <see cref="Inspect(string)"/>.</summary>
    /// <exception cref="ModelFormatException">The structure is invalid.</exception>
    public static SafetensorsInfo Inspect(ReadOnlySpan<byte> file, string sourceName)
    {
        ArgumentNullException.ThrowIfNull(sourceName);
        return ParseStructure(file, sourceName, out _);
    }

    internal static FileStream OpenFile(string path) => RegularFile.OpenRead(path);

    internal static (SafetensorsInfo Info, long DataStart) ReadStructure(Stream stream, string source)
    {
        long fileLength = stream.Length;
        if (fileLength < 8)
            throw new ModelFormatException(Inv($"{source}: file is {fileLength} bytes, too short for a safetensors file (at least 8 bytes of header length, then the JSON header)."));
        Span<byte> prefix = stackalloc byte[16];
        stream.Position = 0;
        int got = stream.ReadAtLeast(prefix, prefix.Length, throwOnEndOfStream: false);
        stream.Position = 8;
        long headerLength = CheckHeaderLength(prefix[..got], fileLength, source);
        var header = new byte[headerLength];
        try
        {
            stream.ReadExactly(header);
        }
        catch (EndOfStreamException ex)
        {
            throw new ModelFormatException($"{source}: the file ended inside the JSON header.", ex);
        }
        var info = ParseHeader(header, fileLength, headerLength, source);
        return (info, 8 + headerLength);
    }

    private static SafetensorsInfo ParseStructure(ReadOnlySpan<byte> file, string source, out long dataStart)
    {
        long fileLength = file.Length;
        if (fileLength < 8)
            throw new ModelFormatException(Inv($"{source}: file is {fileLength} bytes, too short for a safetensors file (at least 8 bytes of header length, then the JSON header)."));
        long headerLength = CheckHeaderLength(file[..Math.Min(16, file.Length)], fileLength, source);
        dataStart = 8 + headerLength;
        return ParseHeader(file.Slice(8, (int)headerLength).ToArray(), fileLength, headerLength, source);
    }

    /// <summary>Checks the header length in the first 8 of <paramref name="prefix"/> (the first up to 16 bytes of the file).</summary>
    private static long CheckHeaderLength(ReadOnlySpan<byte> prefix, long fileLength, string source)
    {
        ulong raw = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (raw < 2)
            throw new ModelFormatException(Inv($"{source}: header length is {raw}; a safetensors header is a JSON object of at least 2 bytes. The file is not a safetensors file or is corrupted."));
        if (raw > MaxHeaderLength)
            throw new ModelFormatException(Inv($"{source}: header length {raw} exceeds the safetensors limit of {MaxHeaderLength} bytes. The file is not a safetensors file or is corrupted."));
        if (raw > (ulong)(fileLength - 8))
            throw new ModelFormatException(Inv($"{source}: header length {raw} exceeds the {fileLength - 8} bytes after the length field. The file is truncated or not a safetensors file."));
        return (long)raw;
    }

    private static SafetensorsInfo ParseHeader(byte[] header, long fileLength, long headerLength, string source)
    {
        long dataLength = fileLength - 8 - headerLength;
        // JsonDocument does not validate UTF-8 inside strings until they are read, so check the whole header first.
        if (!System.Text.Unicode.Utf8.IsValid(header))
            throw new ModelFormatException($"{source}: the header is not valid UTF-8 JSON (it contains invalid UTF-8 bytes). The file is corrupted or not a safetensors file.");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(header, new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (JsonException ex)
        {
            throw new ModelFormatException($"{source}: the header is not valid UTF-8 JSON ({ex.Message}). The file is corrupted or not a safetensors file.", ex);
        }
        using (doc)
        {
            try
            {
                var root = doc.RootElement;
                if (root.ValueKind != JsonValueKind.Object)
                    throw new ModelFormatException($"{source}: the header is a JSON {root.ValueKind}, expected an object mapping tensor names to {{dtype, shape, data_offsets}}.");
                var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
                var entries = new List<SafetensorsEntry>();
                var seen = new HashSet<string>(StringComparer.Ordinal);
                foreach (var prop in root.EnumerateObject())
                {
                    string name = prop.Name;
                    if (!seen.Add(name))
                        throw new ModelFormatException($"{source}: the header lists '{name}' more than once; every key must be unique.");
                    if (name == "__metadata__")
                    {
                        if (prop.Value.ValueKind != JsonValueKind.Object)
                            throw new ModelFormatException($"{source}: '__metadata__' is a JSON {prop.Value.ValueKind}, expected an object of string values.");
                        foreach (var m in prop.Value.EnumerateObject())
                        {
                            if (m.Value.ValueKind != JsonValueKind.String)
                                throw new ModelFormatException($"{source}: '__metadata__' entry '{m.Name}' is a JSON {m.Value.ValueKind}, expected a string.");
                            metadata[m.Name] = m.Value.GetString()!;
                        }
                        continue;
                    }
                    entries.Add(ParseEntry(name, prop.Value, dataLength, source));
                }
                CheckTiling(entries, dataLength, source);
                return new SafetensorsInfo(fileLength, headerLength, metadata, entries);
            }
            catch (InvalidOperationException ex)
            {
                // System.Text.Json accepts a lone UTF-16 surrogate escape (e.g. "\ud800") while parsing but cannot
                // turn it into a string: the header is not valid Unicode text.
                throw new ModelFormatException($"{source}: the header holds a string that is not valid Unicode (a lone UTF-16 surrogate escape such as \\ud800). The file is corrupted or not a safetensors file.", ex);
            }
        }
    }

    private static SafetensorsEntry ParseEntry(string name, JsonElement v, long dataLength, string source)
    {
        if (v.ValueKind != JsonValueKind.Object)
            throw new ModelFormatException($"{source}: tensor '{name}': header value is a JSON {v.ValueKind}, expected an object {{dtype, shape, data_offsets}}.");
        if (!v.TryGetProperty("dtype", out var dtypeEl) || dtypeEl.ValueKind != JsonValueKind.String)
            throw new ModelFormatException($"{source}: tensor '{name}': missing or non-string 'dtype' (expected e.g. \"F32\").");
        string dtype = dtypeEl.GetString()!;
        if (!DtypeSizes.TryGetValue(dtype, out int size))
            throw new ModelFormatException($"{source}: tensor '{name}' has unknown dtype '{dtype}'. Supported dtypes: {string.Join(", ", SupportedDtypes)}.");
        if (!v.TryGetProperty("shape", out var shapeEl) || shapeEl.ValueKind != JsonValueKind.Array)
            throw new ModelFormatException($"{source}: tensor '{name}': missing or non-array 'shape' (expected a list of non-negative integers).");
        var shape = new List<long>();
        foreach (var d in shapeEl.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long dim) || dim < 0)
                throw new ModelFormatException($"{source}: tensor '{name}': shape {shapeEl.GetRawText()} holds {d.GetRawText()}, expected non-negative integers.");
            if (dim > int.MaxValue)
                throw new ModelFormatException(Inv($"{source}: tensor '{name}': shape dimension {dim} exceeds the supported maximum {int.MaxValue}."));
            shape.Add(dim);
        }
        // The product is computed in 128 bits and capped, so no shape can overflow it.
        Int128 product = 1;
        foreach (long dim in shape)
        {
            product *= dim;
            if (product > dataLength) product = (Int128)dataLength + 1;
        }
        if (product > dataLength)
            throw new ModelFormatException(Inv($"{source}: tensor '{name}': shape {shapeEl.GetRawText()} needs more elements than the {dataLength}-byte data section can hold. The header is corrupted."));
        long elements = (long)product;
        if (shape.Count > 32)
            throw new ModelFormatException(Inv($"{source}: tensor '{name}' has rank {shape.Count}; at most 32 dimensions are supported."));
        if (!v.TryGetProperty("data_offsets", out var offEl) || offEl.ValueKind != JsonValueKind.Array || offEl.GetArrayLength() != 2)
            throw new ModelFormatException($"{source}: tensor '{name}': missing or malformed 'data_offsets' (expected [begin, end]).");
        long begin = ReadOffset(offEl[0], name, source), end = ReadOffset(offEl[1], name, source);
        if (end < begin)
            throw new ModelFormatException(Inv($"{source}: tensor '{name}': data_offsets [{begin}, {end}] are out of order (end before begin)."));
        if (end > dataLength)
            throw new ModelFormatException(Inv($"{source}: tensor '{name}': data_offsets [{begin}, {end}] reach past the end of the {dataLength}-byte data section. The file is truncated or corrupted."));
        long expectedBytes = elements * size; // elements <= dataLength, size <= 8: no overflow
        if (end - begin != expectedBytes)
            throw new ModelFormatException(Inv($"{source}: tensor '{name}': data_offsets [{begin}, {end}] span {end - begin} bytes, but {dtype} shape [{string.Join(", ", shape)}] needs {expectedBytes}."));
        if (IsSupported(dtype) && elements > Array.MaxLength)
            throw new ModelFormatException(Inv($"{source}: tensor '{name}' has {elements} elements, more than a single array can hold ({Array.MaxLength})."));
        return new SafetensorsEntry(name, dtype, shape, begin, end - begin);
    }

    private static long ReadOffset(JsonElement e, string name, string source)
    {
        if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt64(out long v) || v < 0)
            throw new ModelFormatException($"{source}: tensor '{name}': data_offsets value {e.GetRawText()} is not a non-negative integer.");
        return v;
    }

    private static void CheckTiling(List<SafetensorsEntry> entries, long dataLength, string source)
    {
        var sorted = entries.OrderBy(e => e.DataBegin).ThenBy(e => e.ByteLength).ToList();
        long pos = 0;
        foreach (var e in sorted)
        {
            if (e.DataBegin < pos)
                throw new ModelFormatException(Inv($"{source}: tensor '{e.Name}': data_offsets [{e.DataBegin}, {e.DataBegin + e.ByteLength}] overlap the previous tensor, which ends at {pos}."));
            if (e.DataBegin > pos)
                throw new ModelFormatException(Inv($"{source}: tensor '{e.Name}': data_offsets begin at {e.DataBegin}, leaving a gap after byte {pos}; safetensors requires tensors to be contiguous."));
            pos = e.DataBegin + e.ByteLength;
        }
        if (pos != dataLength)
            throw new ModelFormatException(Inv($"{source}: the tensors cover {pos} bytes of the {dataLength}-byte data section; safetensors does not allow {dataLength - pos} unused trailing bytes. The file is corrupted or was appended to."));
    }

    private static void RequireSupported(SafetensorsInfo info, string source)
    {
        foreach (var e in info.Entries)
        {
            if (!IsSupported(e.Dtype))
                throw new ModelFormatException($"{source}: tensor '{e.Name}' has dtype {e.Dtype}, which cannot be loaded as weights. Supported dtypes: {string.Join(", ", SupportedDtypes)}. Re-save the checkpoint in one of them.");
        }
    }

    private static int[] ToIntShape(IReadOnlyList<long> shape)
    {
        var s = new int[shape.Count];
        for (int i = 0; i < s.Length; i++) s[i] = (int)shape[i];
        return s;
    }

    /// <summary>
    /// Converts little-endian <paramref name="dtype"/> elements to float32; <paramref name="name"/>,
    /// <paramref name="firstIndex"/> (the flat index of <c>dest[0]</c>) and <paramref name="source"/> name an F64 value
    /// too large for float32 in the error.
    /// </summary>
    internal static void Convert(string dtype, ReadOnlySpan<byte> raw, Span<float> dest, string name, long firstIndex, string source)
    {
        switch (dtype)
        {
            case "F32":
                if (BitConverter.IsLittleEndian)
                {
                    MemoryMarshal.Cast<byte, float>(raw).CopyTo(dest);
                }
                else
                {
                    for (int i = 0; i < dest.Length; i++) dest[i] = BinaryPrimitives.ReadSingleLittleEndian(raw[(4 * i)..]);
                }
                break;
            case "F16":
                for (int i = 0; i < dest.Length; i++) dest[i] = (float)BinaryPrimitives.ReadHalfLittleEndian(raw[(2 * i)..]);
                break;
            case "BF16":
                for (int i = 0; i < dest.Length; i++)
                    dest[i] = BitConverter.UInt32BitsToSingle((uint)BinaryPrimitives.ReadUInt16LittleEndian(raw[(2 * i)..]) << 16);
                break;
            case "F64":
                for (int i = 0; i < dest.Length; i++)
                {
                    double v = BinaryPrimitives.ReadDoubleLittleEndian(raw[(8 * i)..]);
                    dest[i] = (float)v;
                    if (float.IsInfinity(dest[i]) && double.IsFinite(v))
                        throw new ModelFormatException(Inv($"{source}: tensor '{name}' holds the F64 value {v:R} at flat index {firstIndex + i}, which overflows float32 (largest {float.MaxValue:R}). This engine computes in float32: rescale the weights or re-save them in a range float32 can hold."));
                }
                break;
            default:
                throw new ModelFormatException($"dtype {dtype} cannot be converted to float32. Supported dtypes: {string.Join(", ", SupportedDtypes)}.");
        }
    }

    private static string Inv(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
