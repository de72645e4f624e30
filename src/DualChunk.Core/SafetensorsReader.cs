namespace DualChunk.Core;

/// <summary>
/// Reads safetensors files as <c>Edifice.Checkpoint</c> writes them (8-byte LE header length, JSON header,
/// raw LE data). F32, F16, BF16 and F64 tensors are converted to float32.
/// </summary>
public static class SafetensorsReader
{
    /// <summary>Reads every tensor of the file at <paramref name="path"/>.</summary>
    public static Dictionary<string, Tensor> Read(string path) => throw new NotImplementedException();

    /// <summary>Reads every tensor of an in-memory file; <paramref name="sourceName"/> names it in errors.</summary>
    public static Dictionary<string, Tensor> Read(ReadOnlySpan<byte> file, string sourceName) => throw new NotImplementedException();
}
