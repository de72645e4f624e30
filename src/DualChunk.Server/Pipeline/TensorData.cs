using System.Buffers.Binary;
using System.Runtime.InteropServices;
using static DualChunk.Server.Pipeline.InferenceException;

namespace DualChunk.Server.Pipeline;

/// <summary>Tensor elements as bytes: reading a client's little-endian FP32/FP64 data, writing FP32 outputs.</summary>
internal static class TensorData
{
    public const string Fp32 = "FP32";
    public const string Fp64 = "FP64";

    /// <summary>Bytes per element of an accepted input datatype.</summary>
    public static int ElementSize(string datatype) => datatype == Fp64 ? 8 : 4;

    /// <summary>
    /// Reads little-endian elements (FP32, or FP64 narrowed to float32 as the CLI does) into <paramref name="into"/>,
    /// checking each is finite; <paramref name="bytes"/> must hold exactly <c>into.Length</c> elements.
    /// </summary>
    public static void ReadLittleEndian(ReadOnlySpan<byte> bytes, string datatype, Span<float> into, int seqLen, int e)
    {
        if (datatype == Fp64)
        {
            for (int i = 0; i < into.Length; i++)
                into[i] = Finite(BinaryPrimitives.ReadDoubleLittleEndian(bytes[(i * 8)..]), i, seqLen, e);
            return;
        }
        if (BitConverter.IsLittleEndian) MemoryMarshal.Cast<byte, float>(bytes[..(into.Length * 4)]).CopyTo(into);
        else for (int i = 0; i < into.Length; i++) into[i] = BinaryPrimitives.ReadSingleLittleEndian(bytes[(i * 4)..]);
        int bad = DualChunk.Kernels.NonFinite.IndexOf(into); // vectorised: this runs over every request's input
        if (bad >= 0) _ = Finite(into[bad], bad, seqLen, e);
    }

    /// <summary>The value as a float32, or an error naming where the non-finite value is.</summary>
    public static float Finite(double v, int i, int seqLen, int e)
    {
        float f = (float)v;
        if (float.IsFinite(f)) return f;
        long b = i / ((long)seqLen * e), n = i / e % seqLen, k = i % e;
        string what = double.IsFinite(v) ? $"{v.ToString("R", System.Globalization.CultureInfo.InvariantCulture)} (beyond float32's range)" : v.ToString(System.Globalization.CultureInfo.InvariantCulture);
        throw new InferenceException(Inv($"The input holds {what} at [{b}, {n}, {k}]; it must be finite (no NaN/∞)."));
    }
}
