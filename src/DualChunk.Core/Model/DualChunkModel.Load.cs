namespace DualChunk.Core;

// The ways to get a model: from a file, a stream, bytes, or named tensors. Each validates its options first and
// leaves nothing behind (a mapping, a half-built model) when it throws.
public sealed partial class DualChunkModel
{
    /// <summary>
    /// Loads an Edifice safetensors checkpoint or a .dcw file (detected by content) into memory, single-threaded calls. For safetensors <paramref name="chunkSize"/> defaults to Edifice's 64; a .dcw file
    /// carries its own, and a different <paramref name="chunkSize"/> is an error.
    /// </summary>
    /// <exception cref="ModelFormatException">The file is malformed or is not a DualChunk model.</exception>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="ArgumentException">The path is empty, or <paramref name="chunkSize"/> disagrees with a .dcw file's.</exception>
    public static DualChunkModel Load(string path, int? chunkSize = null)
        => Load(path, new DualChunkModelOptions { ChunkSize = chunkSize });

    /// <summary>Loads a safetensors checkpoint or a .dcw file with <paramref name="options"/>.</summary>
    /// <exception cref="ModelFormatException">The file is malformed or is not a DualChunk model.</exception>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="ArgumentException">The path is empty, an option is out of range, or the chunk size disagrees with a .dcw file's.</exception>
    public static DualChunkModel Load(string path, DualChunkModelOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var (weights, mapping) = WeightsLoader.Load(path, options.ChunkSize, options.MemoryMap);
        try
        {
            return new DualChunkModel(weights.Config, weights.Tensors, copy: false, options, mapping);
        }
        catch
        {
            mapping?.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Loads a safetensors or .dcw file from <paramref name="stream"/> (read to its end, at most
    /// <paramref name="maxLength"/> bytes; see <see cref="WeightsLoader.Load(Stream, int?, string, long)"/>).
    /// <see cref="DualChunkModelOptions.MemoryMap"/> is ignored.
    /// </summary>
    /// <exception cref="ModelFormatException">The content is malformed, not a DualChunk model, or longer than <paramref name="maxLength"/>.</exception>
    /// <exception cref="ArgumentException">The stream is not readable, an option is out of range, or the chunk size disagrees with a .dcw file's.</exception>
    public static DualChunkModel Load(Stream stream, DualChunkModelOptions options, long maxLength = WeightsLoader.DefaultMaxStreamLength)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var (config, tensors, _) = WeightsLoader.Load(stream, options.ChunkSize, "stream", maxLength);
        return new DualChunkModel(config, tensors, copy: false, options, null);
    }

    /// <summary>
    /// As <see cref="Load(Stream, DualChunkModelOptions, long)"/>, reading <paramref name="stream"/> asynchronously: use it
    /// for an ASP.NET Core request body (Kestrel refuses synchronous reads) or any stream whose reads should not block
    /// a thread. Parsing and packing the weights then run on the thread the read completes on.
    /// </summary>
    /// <exception cref="ModelFormatException">The content is malformed, not a DualChunk model, or longer than <paramref name="maxLength"/>.</exception>
    /// <exception cref="ArgumentException">The stream is not readable, an option is out of range, or the chunk size disagrees with a .dcw file's.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while reading.</exception>
    public static async Task<DualChunkModel> LoadAsync(Stream stream, DualChunkModelOptions options, long maxLength = WeightsLoader.DefaultMaxStreamLength,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var (config, tensors, _) = await WeightsLoader.LoadAsync(stream, options.ChunkSize, "stream", maxLength, cancellationToken).ConfigureAwait(false);
        return new DualChunkModel(config, tensors, copy: false, options, null);
    }

    /// <summary>
    /// As <see cref="Load(string, DualChunkModelOptions)"/>, reading the file asynchronously. With
    /// <see cref="DualChunkModelOptions.MemoryMap"/> a .dcw file is mapped, which reads nothing up front: that load
    /// completes synchronously.
    /// </summary>
    /// <exception cref="ModelFormatException">The file is malformed or is not a DualChunk model.</exception>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="ArgumentException">The path is empty or not a regular file, an option is out of range, or the chunk size disagrees with a .dcw file's.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while reading.</exception>
    public static async Task<DualChunkModel> LoadAsync(string path, DualChunkModelOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (options.MemoryMap) return Load(path, options);
        (ModelConfig Config, Dictionary<string, CheckpointTensor> Tensors, string Format) loaded;
        using (var file = RegularFile.OpenRead(path))
            loaded = await WeightsLoader.LoadAsync(file, options.ChunkSize, path, WeightsLoader.DefaultMaxStreamLength, cancellationToken).ConfigureAwait(false);
        return new DualChunkModel(loaded.Config, loaded.Tensors, copy: false, options, null);
    }

    /// <summary>Loads a safetensors or .dcw file held in memory; the model does not refer to <paramref name="file"/> afterwards.</summary>
    /// <exception cref="ModelFormatException">The bytes are malformed or not a DualChunk model.</exception>
    /// <exception cref="ArgumentException">An option is out of range, or the chunk size disagrees with a .dcw file's.</exception>
    public static DualChunkModel Load(ReadOnlyMemory<byte> file, DualChunkModelOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var (config, tensors, _) = WeightsLoader.Load(file, options.ChunkSize);
        return new DualChunkModel(config, tensors, copy: false, options, null);
    }

    /// <summary>Builds a model from named tensors, validating them against <paramref name="config"/>.</summary>
    /// <exception cref="ModelFormatException">A tensor is missing, unexpected, mis-shaped or not finite.</exception>
    public static DualChunkModel FromTensors(IReadOnlyDictionary<string, CheckpointTensor> tensors, ModelConfig config)
        => FromTensors(tensors, config, new DualChunkModelOptions());

    /// <summary>
    /// Builds a model from named tensors with <paramref name="options"/> (its <see cref="DualChunkModelOptions.ChunkSize"/>
    /// and <see cref="DualChunkModelOptions.MemoryMap"/> are ignored: <paramref name="config"/> has the chunk size).
    /// The tensors' data is copied (packed or cloned): later changes to them do not affect the model.
    /// </summary>
    /// <exception cref="ModelFormatException">A tensor is missing, unexpected, mis-shaped or not finite.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range.</exception>
    public static DualChunkModel FromTensors(IReadOnlyDictionary<string, CheckpointTensor> tensors, ModelConfig config, DualChunkModelOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        TensorSetValidator.Validate(tensors, config);
        return new DualChunkModel(config, tensors, copy: true, options, null);
    }
}
