using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;

namespace DualChunk.Core;

/// <summary>
/// A <c>.npy</c> file or stream that cannot be read as a little-endian float32/float64 C-order array: not a .npy,
/// truncated, an unsupported version, dtype or order, a malformed header, or not a regular file.
/// The message names the problem and the fix.
/// </summary>
public sealed class NpyFormatException : FormatException
{
    /// <summary>Creates the exception with a message that names the problem.</summary>
    public NpyFormatException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and the underlying cause.</summary>
    public NpyFormatException(string message, Exception innerException) : base(message, innerException) { }

    /// <summary>Creates an empty exception (prefer the message overloads).</summary>
    public NpyFormatException() { }
}

/// <summary>
/// Reads and writes NumPy <c>.npy</c> files (format 1.0, 2.0 and 3.0): float32 (<c>&lt;f4</c>) and float64
/// (<c>&lt;f8</c>), C order — the model's input and output tensors. Files written here are byte-for-byte what
/// <c>numpy.save</c> writes for the same array.
/// </summary>
/// <remarks>
/// Reading is safe on untrusted input: the header is bounded (<see cref="MaxHeaderLength"/>, like numpy's own
/// <c>max_header_size</c>), the data must be exactly what the header's dtype and shape claim, and nothing is allocated
/// from a claim before the file's real length (or, for a stream without a length, the bytes actually received)
/// shows it can hold it. A path that is not a regular file (a FIFO, a device such as <c>/dev/zero</c>, a directory)
/// is refused before it is opened, so it can neither block nor stream without end.
/// </remarks>
/// <example>
/// <code>
/// var (x, shape) = Npy.Read("input.npy");            // shape [B, N, E] (float64 is rounded to float32)
/// Npy.Write("output.npy", y, [batch, hidden]);       // float32 [B, H]
/// </code>
/// </example>
public static class Npy
{
    /// <summary>The largest header accepted, in bytes (numpy's default <c>max_header_size</c> is 10,000).</summary>
    public const int MaxHeaderLength = 65536;

    private const int AlignTo = 64;              // numpy's ARRAY_ALIGN
    private const int GrowthAxisMaxDigits = 21;  // numpy's spare room after the header dict
    private static ReadOnlySpan<byte> Magic => [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    /// <summary>Reads a float32 or float64 array from a file as float32 (float64 rounded to nearest).</summary>
    /// <param name="path">A regular .npy file.</param>
    /// <returns>The elements in C order, and the shape (empty for a 0-d array).</returns>
    /// <exception cref="NpyFormatException">The file is not a regular file or not a readable .npy array.</exception>
    /// <exception cref="IOException">The file cannot be read.</exception>
    public static (float[] Data, int[] Shape) Read(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        RegularFile.Check(path, "a .npy file", e => new NpyFormatException(e));
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1 << 16);
        return Read(stream, path);
    }

    /// <summary>Reads a float32 or float64 array from a stream, which is read to the end of the array and no further.</summary>
    /// <param name="stream">The .npy bytes. A seekable stream's length bounds what is read before anything is allocated;
    /// from any other stream the array is received in bounded steps, so a header that claims more than the stream
    /// holds costs at most twice what arrived.</param>
    /// <param name="name">What to call the stream in messages (e.g. a file name or "request body").</param>
    /// <returns>The elements in C order, and the shape (empty for a 0-d array).</returns>
    /// <exception cref="NpyFormatException">The bytes are not a readable .npy array.</exception>
    public static (float[] Data, int[] Shape) Read(Stream stream, string name = "stream")
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(name);
        long available = stream.CanSeek ? stream.Length - stream.Position : long.MaxValue;

        Span<byte> prefix = stackalloc byte[12];
        int got = stream.ReadAtLeast(prefix[..10], 10, throwOnEndOfStream: false);
        if (got < 10 || !prefix[..6].SequenceEqual(Magic))
        {
            if (got >= 6 && !prefix[..6].SequenceEqual(Magic) || got < 6 && !Magic[..got].SequenceEqual(prefix[..got]))
                throw NotNpy(name);
            throw new NpyFormatException($"{name}: truncated .npy file: {got} bytes, shorter than the 10-byte preamble.");
        }
        var (major, minor) = (prefix[6], prefix[7]);
        long headerLength;
        int preamble;
        if (major == 1 && minor == 0)
        {
            headerLength = BinaryPrimitives.ReadUInt16LittleEndian(prefix[8..]);
            preamble = 10;
        }
        else if (major is 2 or 3 && minor == 0)
        {
            if (stream.ReadAtLeast(prefix[10..12], 2, throwOnEndOfStream: false) < 2)
                throw new NpyFormatException($"{name}: truncated .npy file: it ends inside the version {major}.0 preamble.");
            headerLength = BinaryPrimitives.ReadUInt32LittleEndian(prefix[8..]);
            preamble = 12;
        }
        else
        {
            throw new NpyFormatException($"{name}: .npy format version {major}.{minor} is not supported (1.0, 2.0 and 3.0 are); save the array with numpy.save.");
        }
        if (headerLength > MaxHeaderLength)
            throw new NpyFormatException($"{name}: .npy header length {headerLength} is over the {MaxHeaderLength}-byte limit; the file is corrupt or not written by numpy.save.");
        if (headerLength > available - preamble)
            throw new NpyFormatException($"{name}: truncated .npy file: the header says {headerLength} header bytes but only {Math.Max(0, available - preamble)} follow.");
        var headerBytes = new byte[headerLength];
        int headerGot = stream.ReadAtLeast(headerBytes, headerBytes.Length, throwOnEndOfStream: false);
        if (headerGot < headerBytes.Length)
            throw new NpyFormatException($"{name}: truncated .npy file: the header says {headerLength} header bytes but only {headerGot} follow.");

        var header = ParseHeader(headerBytes, major, name);
        long dataBytes = header.Count * header.ElementSize;
        long dataAvailable = available - preamble - headerLength;
        if (stream.CanSeek && dataAvailable != dataBytes)
            throw DataLengthMismatch(name, header, dataAvailable);
        var data = stream.CanSeek ? ReadKnownLength(stream, header, name) : ReadGrowing(stream, header, name);
        return (data, header.Shape);
    }

    /// <summary>Reads a float32 or float64 array held in memory.</summary>
    /// <param name="bytes">The whole .npy file.</param>
    /// <param name="name">What to call the bytes in messages.</param>
    /// <returns>The elements in C order, and the shape.</returns>
    /// <exception cref="NpyFormatException">The bytes are not a readable .npy array.</exception>
    public static unsafe (float[] Data, int[] Shape) Read(ReadOnlySpan<byte> bytes, string name = "buffer")
    {
        if (bytes.IsEmpty) return Read(Stream.Null, name);
        fixed (byte* p = bytes)
        {
            using var stream = new UnmanagedMemoryStream(p, bytes.Length);
            return Read(stream, name);
        }
    }

    /// <summary>Writes a float32 C-order array, exactly as <c>numpy.save</c> writes it.</summary>
    /// <param name="path">The file to create or replace.</param>
    /// <param name="data">The elements in C order; as many as the shape's product.</param>
    /// <param name="shape">The dimensions (each ≥ 0; empty for a 0-d array).</param>
    /// <exception cref="ArgumentException">The shape does not describe <paramref name="data"/>.</exception>
    public static void Write(string path, ReadOnlySpan<float> data, ReadOnlySpan<int> shape)
    {
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, bufferSize: 1 << 16);
        Write(stream, data, shape);
    }

    /// <summary>Writes a float64 C-order array, exactly as <c>numpy.save</c> writes it.</summary>
    /// <param name="path">The file to create or replace.</param>
    /// <param name="data">The elements in C order; as many as the shape's product.</param>
    /// <param name="shape">The dimensions (each ≥ 0; empty for a 0-d array).</param>
    /// <exception cref="ArgumentException">The shape does not describe <paramref name="data"/>.</exception>
    public static void Write(string path, ReadOnlySpan<double> data, ReadOnlySpan<int> shape)
    {
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, bufferSize: 1 << 16);
        Write(stream, data, shape);
    }

    /// <summary>Writes a float32 C-order array to a stream, exactly as <c>numpy.save</c> writes it.</summary>
    /// <param name="stream">Where to write.</param>
    /// <param name="data">The elements in C order; as many as the shape's product.</param>
    /// <param name="shape">The dimensions (each ≥ 0; empty for a 0-d array).</param>
    /// <exception cref="ArgumentException">The shape does not describe <paramref name="data"/>.</exception>
    public static void Write(Stream stream, ReadOnlySpan<float> data, ReadOnlySpan<int> shape)
    {
        ArgumentNullException.ThrowIfNull(stream);
        WriteHeader(stream, "<f4", data.Length, shape);
        stream.Write(BitConverter.IsLittleEndian ? MemoryMarshal.AsBytes(data) : ToLittleEndian(data));
    }

    /// <summary>Writes a float64 C-order array to a stream, exactly as <c>numpy.save</c> writes it.</summary>
    /// <param name="stream">Where to write.</param>
    /// <param name="data">The elements in C order; as many as the shape's product.</param>
    /// <param name="shape">The dimensions (each ≥ 0; empty for a 0-d array).</param>
    /// <exception cref="ArgumentException">The shape does not describe <paramref name="data"/>.</exception>
    public static void Write(Stream stream, ReadOnlySpan<double> data, ReadOnlySpan<int> shape)
    {
        ArgumentNullException.ThrowIfNull(stream);
        WriteHeader(stream, "<f8", data.Length, shape);
        stream.Write(BitConverter.IsLittleEndian ? MemoryMarshal.AsBytes(data) : ToLittleEndian(data));
    }

    private readonly record struct Header(int ElementSize, string Descr, int[] Shape, long Count)
    {
        public string ShapeText => "(" + string.Join(", ", Shape) + ")";
    }

    private static NpyFormatException NotNpy(string name)
        => new($"{name}: not a .npy file (it does not start with \\x93NUMPY). Save the array with numpy.save.");

    private static NpyFormatException DataLengthMismatch(string name, Header h, long actual)
        => new($"{name}: shape {h.ShapeText} of {h.Descr} needs {h.Count * h.ElementSize} data bytes but the file has {actual}; the file is truncated or corrupt.");

    private static Header ParseHeader(byte[] bytes, int major, string name)
    {
        string text;
        try
        {
            // 1.0 and 2.0 headers are latin-1; 3.0 is UTF-8.
            text = major == 3 ? new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes) : Encoding.Latin1.GetString(bytes);
        }
        catch (DecoderFallbackException ex)
        {
            throw new NpyFormatException($"{name}: .npy header is not valid UTF-8.", ex);
        }
        string dict = text.TrimEnd(' ', '\n', '\r', '\t', '\0');
        if (!dict.StartsWith('{') || !dict.EndsWith('}'))
            throw new NpyFormatException($"{name}: malformed .npy header (not a {{...}} dict); save the array with numpy.save.");
        string descr = Unquote(DictValue(dict, "descr", name), "descr", name);
        string fortran = DictValue(dict, "fortran_order", name);
        string shapeText = DictValue(dict, "shape", name);

        int elementSize = descr switch
        {
            "<f4" => 4,
            "<f8" => 8,
            _ => throw new NpyFormatException($"{name}: dtype '{descr}' is not supported; the array must be little-endian float32 ('<f4') or float64 ('<f8'). Convert with x.astype(numpy.float32)."),
        };
        if (fortran == "True")
            throw new NpyFormatException($"{name}: fortran_order arrays are not supported; save a C-order array (numpy.ascontiguousarray).");
        if (fortran != "False")
            throw new NpyFormatException($"{name}: fortran_order '{fortran}' in the .npy header is neither True nor False.");
        int[] shape = ParseShape(shapeText, name);
        long count = 1;
        foreach (int d in shape)
        {
            count *= d;
            if (count > Array.MaxLength)
                throw new NpyFormatException($"{name}: array of shape ({string.Join(", ", shape)}) has more elements than a .NET array can hold ({Array.MaxLength}).");
        }
        return new Header(elementSize, descr, shape, count);
    }

    private static string Unquote(string value, string key, string name)
    {
        if (value.Length >= 2 && (value[0] == '\'' || value[0] == '"') && value[^1] == value[0])
            return value[1..^1];
        throw new NpyFormatException($"{name}: .npy header '{key}' value {value} is not a quoted string.");
    }

    /// <summary>The text of one value of the header dict (a tuple kept whole), trimmed.</summary>
    private static string DictValue(string dict, string key, string name)
    {
        int k = dict.IndexOf($"'{key}'", StringComparison.Ordinal);
        if (k < 0) k = dict.IndexOf($"\"{key}\"", StringComparison.Ordinal);
        if (k < 0) throw new NpyFormatException($"{name}: .npy header has no '{key}' entry.");
        int colon = dict.IndexOf(':', k + key.Length + 2);
        if (colon < 0) throw new NpyFormatException($"{name}: malformed .npy header near '{key}'.");
        int start = colon + 1;
        while (start < dict.Length && dict[start] == ' ') start++;
        int end = start < dict.Length && dict[start] == '(' ? dict.IndexOf(')', start) + 1 : dict.IndexOfAny([',', '}'], start);
        if (end <= start) throw new NpyFormatException($"{name}: malformed .npy header near '{key}'.");
        return dict[start..end].Trim();
    }

    private static int[] ParseShape(string text, string name)
    {
        if (!text.StartsWith('(') || !text.EndsWith(')'))
            throw new NpyFormatException($"{name}: malformed shape '{text}' in .npy header.");
        var parts = text[1..^1].Split(',', StringSplitOptions.TrimEntries);
        // "(5,)" and "()" are the 1-d and 0-d spellings: only a trailing empty part is allowed.
        int count = parts.Length > 0 && parts[^1].Length == 0 ? parts.Length - 1 : parts.Length;
        if (count > 64)
            throw new NpyFormatException($"{name}: shape {text} has {count} dimensions; numpy allows at most 64.");
        var shape = new int[count];
        for (int i = 0; i < count; i++)
        {
            if (!int.TryParse(parts[i].TrimEnd('L'), NumberStyles.None, CultureInfo.InvariantCulture, out shape[i]))
                throw new NpyFormatException($"{name}: malformed dimension '{parts[i]}' in .npy shape {text} (each must be an integer 0…{int.MaxValue}).");
        }
        return shape;
    }

    private static float[] ReadKnownLength(Stream stream, Header h, string name)
    {
        var result = new float[h.Count];
        if (h.ElementSize == 4)
        {
            ReadExactly(stream, MemoryMarshal.AsBytes(result.AsSpan()), h, name);
            if (!BitConverter.IsLittleEndian) FromLittleEndian(result);
            return result;
        }
        var buffer = new byte[Math.Min(h.Count * 8, 1 << 16)];
        for (long done = 0; done < h.Count;)
        {
            int n = (int)Math.Min(buffer.Length / 8, h.Count - done);
            ReadExactly(stream, buffer.AsSpan(0, n * 8), h, name);
            for (int i = 0; i < n; i++)
                result[done + i] = (float)BinaryPrimitives.ReadDoubleLittleEndian(buffer.AsSpan(i * 8));
            done += n;
        }
        return result;
    }

    /// <summary>For streams of unknown length: the array grows with the bytes that arrive, never ahead of them.</summary>
    private static float[] ReadGrowing(Stream stream, Header h, string name)
    {
        var result = new float[Math.Min(h.Count, 1 << 16)];
        var buffer = new byte[1 << 16];
        long done = 0;
        while (done < h.Count)
        {
            int want = (int)Math.Min(buffer.Length / h.ElementSize, h.Count - done) * h.ElementSize;
            int got = stream.ReadAtLeast(buffer.AsSpan(0, want), want, throwOnEndOfStream: false);
            if (got < want)
                throw DataLengthMismatch(name, h, done * h.ElementSize + got);
            int n = want / h.ElementSize;
            if (done + n > result.Length)
                Array.Resize(ref result, (int)Math.Min(h.Count, Math.Max(done + n, 2L * result.Length)));
            for (int i = 0; i < n; i++)
            {
                result[done + i] = h.ElementSize == 4
                    ? BinaryPrimitives.ReadSingleLittleEndian(buffer.AsSpan(i * 4))
                    : (float)BinaryPrimitives.ReadDoubleLittleEndian(buffer.AsSpan(i * 8));
            }
            done += n;
        }
        return result;
    }

    private static void ReadExactly(Stream stream, Span<byte> target, Header h, string name)
    {
        // The file may shrink after its length was checked: that is a truncated file, not an EndOfStreamException.
        for (int done = 0; done < target.Length;)
        {
            int n = stream.Read(target[done..]);
            if (n == 0) throw new NpyFormatException($"{name}: truncated .npy file: it ended while reading the data of shape {h.ShapeText} ({h.Descr}); was it changed while being read?");
            done += n;
        }
    }

    private static void WriteHeader(Stream stream, string descr, int length, ReadOnlySpan<int> shape)
    {
        long count = 1;
        foreach (int d in shape)
        {
            if (d < 0) throw new ArgumentException($"shape dimension {d} is negative.", nameof(shape));
            count *= d;
            if (count > Array.MaxLength) throw new ArgumentException("shape describes more elements than an array can hold.", nameof(shape));
        }
        if (count != length)
            throw new ArgumentException($"shape ({string.Join(", ", shape.ToArray())}) describes {count} elements but the data has {length}.", nameof(shape));

        // numpy's format.py: repr of the dict with sorted keys, room for the first axis to grow to 21 digits,
        // then spaces and '\n' so that the data starts at a multiple of 64 (1 to 64 spaces: never 0).
        string shapeText = shape.Length == 1 ? $"({shape[0]},)" : "(" + string.Join(", ", shape.ToArray()) + ")";
        var dict = new StringBuilder(128).Append(CultureInfo.InvariantCulture, $"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shapeText}, }}");
        if (shape.Length > 0)
            dict.Append(' ', Math.Max(0, GrowthAxisMaxDigits - shape[0].ToString(CultureInfo.InvariantCulture).Length));
        int headerLength = dict.Length + 1;
        bool v2 = 10 + headerLength + AlignTo > ushort.MaxValue;
        int preamble = v2 ? 12 : 10;
        int pad = AlignTo - (preamble + headerLength) % AlignTo;
        dict.Append(' ', pad).Append('\n');

        Span<byte> start = stackalloc byte[12];
        Magic.CopyTo(start);
        start[6] = v2 ? (byte)2 : (byte)1;
        start[7] = 0;
        if (v2) BinaryPrimitives.WriteUInt32LittleEndian(start[8..], (uint)dict.Length);
        else BinaryPrimitives.WriteUInt16LittleEndian(start[8..], (ushort)dict.Length);
        stream.Write(start[..preamble]);
        stream.Write(Encoding.Latin1.GetBytes(dict.ToString()));
    }

    private static byte[] ToLittleEndian(ReadOnlySpan<float> data)
    {
        var bytes = new byte[data.Length * 4];
        for (int i = 0; i < data.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * 4), data[i]);
        return bytes;
    }

    private static byte[] ToLittleEndian(ReadOnlySpan<double> data)
    {
        var bytes = new byte[data.Length * 8];
        for (int i = 0; i < data.Length; i++) BinaryPrimitives.WriteDoubleLittleEndian(bytes.AsSpan(i * 8), data[i]);
        return bytes;
    }

    private static void FromLittleEndian(Span<float> data)
    {
        var ints = MemoryMarshal.Cast<float, int>(data);
        BinaryPrimitives.ReverseEndianness(ints, ints);
    }
}
