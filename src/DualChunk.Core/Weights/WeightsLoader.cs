using System.Globalization;

namespace DualChunk.Core;

/// <summary>Loads model weights from either an Edifice safetensors checkpoint or a .dcw file, detected by content.</summary>
public static class WeightsLoader
{
    /// <summary>The <c>Format</c> reported for .dcw files.</summary>
    public const string DcwFormat = "dcw";

    /// <summary>The <c>Format</c> reported for safetensors files.</summary>
    public const string SafetensorsFormat = "safetensors";

    /// <summary>Edifice's default chunk size, used for safetensors when none is given.</summary>
    public const int DefaultChunkSize = 64;

    /// <summary>
    /// Loads the weights at <paramref name="path"/>. A file starting with the .dcw magic is read as .dcw and its
    /// stored chunk size is used; anything else is read as safetensors and the configuration is inferred from the
    /// tensors with <paramref name="chunkSize"/> (default <see cref="DefaultChunkSize"/>).
    /// </summary>
    /// <param name="path">The weights file.</param>
    /// <param name="chunkSize">The chunk size the model was built with; for .dcw files it must match the stored one if given.</param>
    /// <returns>The configuration, the tensors by name, and the detected format (<see cref="DcwFormat"/> or <see cref="SafetensorsFormat"/>).</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="chunkSize"/> is not positive.</exception>
    /// <exception cref="ArgumentException"><paramref name="chunkSize"/> disagrees with a .dcw file's chunk size.</exception>
    /// <exception cref="ArgumentException">The path is empty or names a directory.</exception>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="ModelFormatException">The file is damaged or not a DualChunk model.</exception>
    public static (ModelConfig Config, Dictionary<string, Tensor> Tensors, string Format) Load(string path, int? chunkSize)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (chunkSize is <= 0)
            throw new ArgumentOutOfRangeException(nameof(chunkSize), chunkSize,
                "Chunk size must be positive; pass the chunk size the model was built with (Edifice's default is 64).");
        var (config, tensors, format, _) = Load(path, chunkSize, memoryMap: false);
        return (config, tensors, format);
    }

    /// <summary>
    /// As <see cref="Load(string, int?)"/>; with <paramref name="memoryMap"/> a .dcw file is mapped and its tensors lie in
    /// the returned mapping (owned by the caller), otherwise <c>Mapping</c> is null.
    /// </summary>
    internal static (ModelConfig Config, Dictionary<string, Tensor> Tensors, string Format, MappedFile? Mapping) Load(string path, int? chunkSize, bool memoryMap)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (chunkSize is <= 0)
            throw new ArgumentOutOfRangeException(nameof(chunkSize), chunkSize,
                "Chunk size must be positive; pass the chunk size the model was built with (Edifice's default is 64).");
        bool isDcw;
        using (var fs = SafetensorsReader.OpenFile(path))
        {
            Span<byte> prefix = stackalloc byte[8];
            int n = fs.ReadAtLeast(prefix, prefix.Length, throwOnEndOfStream: false);
            isDcw = DcwFile.HasMagic(prefix[..n]);
        }
        if (isDcw)
        {
            MappedFile? mapping = null;
            ModelConfig config;
            Dictionary<string, Tensor> tensors;
            if (memoryMap && BitConverter.IsLittleEndian)
                (config, tensors, mapping) = DcwFile.Map(path);
            else
                (config, tensors) = DcwFile.Read(path);
            if (chunkSize is int c && c != config.ChunkSize)
            {
                mapping?.Dispose();
                throw new ArgumentException(string.Create(CultureInfo.InvariantCulture,
                    $"The .dcw file '{path}' was converted with chunk size {config.ChunkSize}; --chunk-size {c} disagrees. Omit --chunk-size, or re-convert the safetensors checkpoint with chunk size {c}."),
                    nameof(chunkSize));
            }
            return (config, tensors, DcwFormat, mapping);
        }
        var st = SafetensorsReader.Read(path);
        ModelConfig inferred;
        try
        {
            inferred = TensorSetValidator.Infer(st, chunkSize ?? DefaultChunkSize);
        }
        catch (ModelFormatException ex)
        {
            throw new ModelFormatException($"{path}: {ex.Message}", ex);
        }
        return (inferred, st, SafetensorsFormat, null);
    }
}
