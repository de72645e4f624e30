using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace DualChunk.Cli;

/// <summary>A .npy file that cannot be read as a little-endian float32/float64 C-order array.</summary>
internal sealed class NpyFormatException(string message) : Exception(message);

/// <summary>Reads and writes NumPy .npy files (format 1.0–3.0), float32 and float64, C order.</summary>
internal static class Npy
{
    private static readonly byte[] Magic = [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    /// <summary>Reads a float32 or float64 array as float32 (float64 rounded to nearest).</summary>
    public static (float[] Data, int[] Shape) Read(string path)
    {
        var bytes = File.ReadAllBytes(path);
        return Read(bytes, path);
    }

    public static (float[] Data, int[] Shape) Read(ReadOnlySpan<byte> file, string name)
    {
        if (file.Length < 10 || !file[..6].SequenceEqual(Magic))
            throw new NpyFormatException($"{name}: not a .npy file (it does not start with \\x93NUMPY). Save the array with numpy.save.");
        byte major = file[6];
        int headerLength, headerStart;
        if (major == 1)
        {
            headerLength = BinaryPrimitives.ReadUInt16LittleEndian(file[8..]);
            headerStart = 10;
        }
        else if (major is 2 or 3)
        {
            if (file.Length < 12) throw new NpyFormatException($"{name}: truncated .npy header.");
            uint len = BinaryPrimitives.ReadUInt32LittleEndian(file[8..]);
            if (len > int.MaxValue) throw new NpyFormatException($"{name}: .npy header length {len} is invalid.");
            headerLength = (int)len;
            headerStart = 12;
        }
        else
        {
            throw new NpyFormatException($"{name}: .npy format version {major}.{file[7]} is not supported (1.0, 2.0 and 3.0 are).");
        }
        if (headerLength > file.Length - headerStart)
            throw new NpyFormatException($"{name}: truncated .npy file: the header says {headerLength} header bytes but only {file.Length - headerStart} follow.");
        string header = Encoding.UTF8.GetString(file.Slice(headerStart, headerLength));
        string descr = DictValue(header, "descr", name).Trim().Trim('\'', '"');
        string fortran = DictValue(header, "fortran_order", name).Trim();
        string shapeText = DictValue(header, "shape", name).Trim();

        int elementSize = descr switch
        {
            "<f4" => 4,
            "<f8" => 8,
            _ => throw new NpyFormatException($"{name}: dtype '{descr}' is not supported; the input must be little-endian float32 ('<f4') or float64 ('<f8'). Convert with x.astype(numpy.float32)."),
        };
        if (fortran != "False")
            throw new NpyFormatException($"{name}: fortran_order arrays are not supported; save a C-order array (numpy.ascontiguousarray).");
        int[] shape = ParseShape(shapeText, name);
        long count = 1;
        foreach (int d in shape)
        {
            count *= d;
            if (count > int.MaxValue) throw new NpyFormatException($"{name}: array of shape ({string.Join(", ", shape)}) is too large.");
        }
        var data = file[(headerStart + headerLength)..];
        if (data.Length != count * elementSize)
            throw new NpyFormatException($"{name}: shape ({string.Join(", ", shape)}) of {descr} needs {count * elementSize} data bytes but the file has {data.Length}; the file is truncated or corrupt.");
        var result = new float[count];
        for (int i = 0; i < result.Length; i++)
        {
            result[i] = elementSize == 4
                ? BinaryPrimitives.ReadSingleLittleEndian(data[(i * 4)..])
                : (float)BinaryPrimitives.ReadDoubleLittleEndian(data[(i * 8)..]);
        }
        return (result, shape);
    }

    /// <summary>Writes a float32 C-order .npy (format 1.0).</summary>
    public static void Write(string path, ReadOnlySpan<float> data, ReadOnlySpan<int> shape)
    {
        string shapeText = shape.Length == 1 ? $"({shape[0]},)" : "(" + string.Join(", ", shape.ToArray()) + ")";
        string dict = $"{{'descr': '<f4', 'fortran_order': False, 'shape': {shapeText}, }}";
        int total = 10 + dict.Length + 1;
        int pad = (64 - total % 64) % 64;
        string header = dict + new string(' ', pad) + "\n";
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write);
        stream.Write(Magic);
        stream.Write([1, 0]);
        Span<byte> len = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(len, (ushort)header.Length);
        stream.Write(len);
        stream.Write(Encoding.ASCII.GetBytes(header));
        var buffer = new byte[data.Length * 4];
        for (int i = 0; i < data.Length; i++)
            BinaryPrimitives.WriteSingleLittleEndian(buffer.AsSpan(i * 4), data[i]);
        stream.Write(buffer);
    }

    private static string DictValue(string header, string key, string name)
    {
        int k = header.IndexOf($"'{key}'", StringComparison.Ordinal);
        if (k < 0) k = header.IndexOf($"\"{key}\"", StringComparison.Ordinal);
        if (k < 0) throw new NpyFormatException($"{name}: .npy header has no '{key}' entry.");
        int colon = header.IndexOf(':', k);
        if (colon < 0) throw new NpyFormatException($"{name}: malformed .npy header near '{key}'.");
        int start = colon + 1;
        while (start < header.Length && header[start] == ' ') start++;
        int end;
        if (start < header.Length && header[start] == '(')
        {
            end = header.IndexOf(')', start);
            if (end < 0) throw new NpyFormatException($"{name}: malformed shape in .npy header.");
            return header[start..(end + 1)];
        }
        end = header.IndexOfAny([',', '}'], start);
        if (end < 0) throw new NpyFormatException($"{name}: malformed .npy header near '{key}'.");
        return header[start..end];
    }

    private static int[] ParseShape(string text, string name)
    {
        if (!text.StartsWith('(') || !text.EndsWith(')'))
            throw new NpyFormatException($"{name}: malformed shape '{text}' in .npy header.");
        var parts = text[1..^1].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var shape = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
        {
            if (!int.TryParse(parts[i].TrimEnd('L'), NumberStyles.None, CultureInfo.InvariantCulture, out shape[i]))
                throw new NpyFormatException($"{name}: malformed dimension '{parts[i]}' in .npy shape {text}.");
        }
        return shape;
    }
}
