namespace DualChunk.Core;

/// <summary>DualChunk.NET's own flat weights format (.dcw), specified in weights-format.md.</summary>
public static class DcwFile
{
    /// <summary>Writes <paramref name="tensors"/> (validated against <paramref name="config"/>) to <paramref name="path"/>.</summary>
    public static void Write(string path, ModelConfig config, IReadOnlyDictionary<string, Tensor> tensors) => throw new NotImplementedException();

    /// <summary>Reads a .dcw file, verifying its structure and checksum.</summary>
    public static (ModelConfig Config, Dictionary<string, Tensor> Tensors) Read(string path) => throw new NotImplementedException();
}
