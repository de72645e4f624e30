using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using DualChunk.Server.Pipeline;
using static DualChunk.Server.InputLimits;

namespace DualChunk.Server;

/// <summary>
/// A thin, bounded .npy reader for request bodies: little-endian float32, C order, format
/// 1.0–3.0. The shape is checked against the limits and against the bytes the body actually holds before anything
/// is allocated from it.
/// The service parses bodies here rather than with <c>DualChunk.Core.Npy</c> because it checks the claimed shape
/// against the request limits (batch, length, E) before it allocates anything; responses are written with
/// <c>Npy.Write</c>, like the CLI's output files.
/// </summary>
internal static class NpyBody
{
    public const string ContentType = "application/x-npy";
    private const int MaxHeaderBytes = 4096;
    private static ReadOnlySpan<byte> Magic => [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    public static ParsedInput Parse(ReadOnlySpan<byte> body, InputLimits limits)
    {
        if (body.Length < 10 || !body[..6].SequenceEqual(Magic))
            throw new InferenceException("The body is not a .npy file (it does not start with \\x93NUMPY); send the bytes numpy.save writes.");
        byte major = body[6];
        int headerStart, headerLength;
        if (major == 1)
        {
            headerLength = BinaryPrimitives.ReadUInt16LittleEndian(body[8..]);
            headerStart = 10;
        }
        else if (major is 2 or 3)
        {
            if (body.Length < 12) throw new InferenceException("The .npy header is truncated.");
            uint len = BinaryPrimitives.ReadUInt32LittleEndian(body[8..]);
            headerLength = len > MaxHeaderBytes ? int.MaxValue : (int)len;
            headerStart = 12;
        }
        else
        {
            throw new InferenceException(Inv($".npy format version {major} is not supported (1.0, 2.0 and 3.0 are)."));
        }
        if (headerLength > MaxHeaderBytes)
            throw new InferenceException(Inv($"The .npy header claims more than {MaxHeaderBytes} bytes; a float32 array's header is under 128."));
        if (headerLength > body.Length - headerStart)
            throw new InferenceException(Inv($"The .npy body is truncated: its header needs {headerLength} bytes, {body.Length - headerStart} follow."));
        string header = Encoding.Latin1.GetString(body.Slice(headerStart, headerLength));
        string descr = Value(header, "descr").Trim().Trim('\'', '"');
        if (descr != "<f4")
            throw new InferenceException($"The .npy dtype is '{descr}'; send little-endian float32 ('<f4'): x.astype(numpy.float32).");
        if (Value(header, "fortran_order").Trim() != "False")
            throw new InferenceException("The .npy array is in Fortran order; send a C-order array (numpy.ascontiguousarray).");
        long[] shape = Shape(Value(header, "shape").Trim());
        int e = limits.EmbedDim;
        long batch, seqLen;
        bool batched = shape.Length == 3;
        if (shape.Length == 3 && shape[2] == e) (batch, seqLen) = (shape[0], shape[1]);
        else if (shape.Length == 2 && shape[1] == e) (batch, seqLen) = (1, shape[0]);
        else
            throw new InferenceException(Inv($"The .npy shape ({string.Join(", ", shape)}) does not fit the model: send [B, N, {e}] or [N, {e}] (E = {e})."));
        limits.CheckShape(batch, seqLen);
        long floats = batch * seqLen * e; // within the limits: no overflow
        var data = body[(headerStart + headerLength)..];
        if (data.Length != floats * 4)
            throw new InferenceException(Inv($"The .npy shape ({string.Join(", ", shape)}) needs {floats * 4} data bytes; the body has {data.Length}. The body is truncated or corrupt."));

        var input = ParsedInput.Allocate((int)batch, (int)seqLen, e, batched);
        try
        {
            TensorData.ReadLittleEndian(data, TensorData.Fp32, input.Writable, (int)seqLen, e);
            return input;
        }
        catch
        {
            input.Dispose();
            throw;
        }
    }

    private static string Value(string header, string key)
    {
        int k = header.IndexOf($"'{key}'", StringComparison.Ordinal);
        if (k < 0) k = header.IndexOf($"\"{key}\"", StringComparison.Ordinal);
        if (k < 0) throw new InferenceException($"The .npy header has no '{key}' entry.");
        int colon = header.IndexOf(':', k);
        if (colon < 0) throw new InferenceException($"The .npy header is malformed near '{key}'.");
        int start = colon + 1;
        while (start < header.Length && header[start] == ' ') start++;
        int end = start < header.Length && header[start] == '(' ? header.IndexOf(')', start) + 1 : header.IndexOfAny([',', '}'], start);
        if (end <= start) throw new InferenceException($"The .npy header is malformed near '{key}'.");
        return header[start..end];
    }

    private static long[] Shape(string text)
    {
        if (!text.StartsWith('(') || !text.EndsWith(')'))
            throw new InferenceException($"The .npy shape '{text}' is malformed.");
        var parts = text[1..^1].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (parts.Length is < 2 or > 3)
            throw new InferenceException($"The .npy array has rank {parts.Length}; send [B, N, E] or [N, E].");
        var shape = new long[parts.Length];
        for (int i = 0; i < parts.Length; i++)
        {
            if (!int.TryParse(parts[i].TrimEnd('L'), NumberStyles.None, CultureInfo.InvariantCulture, out int d))
                throw new InferenceException($"The .npy shape {text} has a malformed dimension '{parts[i]}'.");
            shape[i] = d;
        }
        return shape;
    }
}
