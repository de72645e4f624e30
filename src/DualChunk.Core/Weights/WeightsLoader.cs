using System.Globalization;
using System.Runtime.InteropServices;

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
    /// <exception cref="ArgumentException">The path is empty or names a directory, a FIFO, a device or a socket.</exception>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="ModelFormatException">The file is damaged or not a DualChunk model.</exception>
    public static (ModelConfig Config, Dictionary<string, CheckpointTensor> Tensors, string Format) Load(string path, int? chunkSize)
    {
        var (config, tensors, format, _) = Load(path, chunkSize, memoryMap: false);
        return (config, tensors, format);
    }

    /// <summary>The default bound on the bytes <see cref="Load(Stream, int?, string, long)"/> reads (2 GB, just under the largest array).</summary>
    public const long DefaultMaxStreamLength = 2_000_000_000;

    /// <summary>
    /// Loads weights from <paramref name="stream"/> (from its current position to its end), as
    /// <see cref="Load(string, int?)"/> does from a file. The stream need not be seekable; it is read into memory, and
    /// never more than <paramref name="maxLength"/> bytes: a longer stream is an error, whatever its
    /// <see cref="Stream.Length"/> claims. Memory is allocated as bytes arrive, not from that claim.
    /// </summary>
    /// <param name="stream">A readable stream holding one safetensors or .dcw file. Not disposed.</param>
    /// <param name="chunkSize">As for <see cref="Load(string, int?)"/>.</param>
    /// <param name="sourceName">Names the stream in error messages, e.g. its origin.</param>
    /// <param name="maxLength">The most bytes to read, at most <see cref="DefaultMaxStreamLength"/>.</param>
    /// <exception cref="ArgumentException">The stream is not readable, or <paramref name="chunkSize"/> disagrees with a .dcw file's.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="chunkSize"/> or <paramref name="maxLength"/> is out of range.</exception>
    /// <exception cref="ModelFormatException">The stream is longer than <paramref name="maxLength"/>, damaged, or not a DualChunk model.</exception>
    public static (ModelConfig Config, Dictionary<string, CheckpointTensor> Tensors, string Format) Load(Stream stream, int? chunkSize,
        string sourceName = "stream", long maxLength = DefaultMaxStreamLength)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(sourceName);
        CheckChunkSize(chunkSize);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxLength);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxLength, DefaultMaxStreamLength);
        if (!stream.CanRead)
            throw new ArgumentException("The stream must be readable.", nameof(stream));
        var bytes = ReadBounded(stream, maxLength, sourceName);
        using var memory = new MemoryStream(bytes.Buffer, 0, bytes.Length, writable: false);
        return LoadSeekable(memory, sourceName, chunkSize);
    }

    /// <summary>Loads weights held in memory (a whole safetensors or .dcw file), as <see cref="Load(string, int?)"/> does from a file.</summary>
    /// <param name="file">The file's bytes. Only read during the call; the result does not refer to them.</param>
    /// <param name="chunkSize">As for <see cref="Load(string, int?)"/>.</param>
    /// <param name="sourceName">Names the bytes in error messages.</param>
    /// <exception cref="ArgumentException"><paramref name="chunkSize"/> disagrees with a .dcw file's.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="chunkSize"/> is not positive.</exception>
    /// <exception cref="ModelFormatException">The bytes are damaged or not a DualChunk model.</exception>
    public static (ModelConfig Config, Dictionary<string, CheckpointTensor> Tensors, string Format) Load(ReadOnlyMemory<byte> file, int? chunkSize,
        string sourceName = "memory")
    {
        ArgumentNullException.ThrowIfNull(sourceName);
        CheckChunkSize(chunkSize);
        var array = MemoryMarshal.TryGetArray(file, out var segment) ? segment : new ArraySegment<byte>(file.ToArray());
        using var memory = new MemoryStream(array.Array!, array.Offset, array.Count, writable: false);
        return LoadSeekable(memory, sourceName, chunkSize);
    }

    /// <summary>
    /// As <see cref="Load(string, int?)"/>; with <paramref name="memoryMap"/> a .dcw file is mapped and its tensors lie in
    /// the returned mapping (owned by the caller), otherwise <c>Mapping</c> is null and nothing refers to the file.
    /// </summary>
    internal static (ModelConfig Config, Dictionary<string, CheckpointTensor> Tensors, string Format, MappedFile? Mapping) Load(string path, int? chunkSize, bool memoryMap)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        CheckChunkSize(chunkSize);
        using (var fs = RegularFile.OpenRead(path))
        {
            if (!(memoryMap && BitConverter.IsLittleEndian && IsDcw(fs)))
            {
                var (config, tensors, format) = LoadSeekable(fs, path, chunkSize);
                return (config, tensors, format, null);
            }
        }
        var (mappedConfig, mappedTensors, mapping) = DcwFile.Map(path);
        try
        {
            CheckDcwChunkSize(mappedConfig, chunkSize, path);
        }
        catch
        {
            mapping.Dispose();
            throw;
        }
        return (mappedConfig, mappedTensors, DcwFormat, mapping);
    }

    /// <summary>The shared path: a seekable stream over a whole file, the format detected by its first 8 bytes.</summary>
    private static (ModelConfig Config, Dictionary<string, CheckpointTensor> Tensors, string Format) LoadSeekable(Stream s, string source, int? chunkSize)
    {
        if (IsDcw(s))
        {
            var (config, tensors) = DcwFile.Read(s, source);
            CheckDcwChunkSize(config, chunkSize, source);
            return (config, tensors, DcwFormat);
        }
        int chunk = chunkSize ?? DefaultChunkSize;
        ModelConfig? inferred = null;
        try
        {
            // Names, shapes and the configuration are checked from the header, before any data is read or converted.
            var st = SafetensorsReader.Read(s, source, info => inferred = TensorSetValidator.InferFromShapes(ShapesOf(info), chunk));
            TensorSetValidator.Validate(st, inferred!);
            return (inferred!, st, SafetensorsFormat);
        }
        catch (ModelFormatException ex) when (!ex.Message.StartsWith(source + ": ", StringComparison.Ordinal))
        {
            throw new ModelFormatException($"{source}: {ex.Message}", ex);
        }
    }

    private static Dictionary<string, int[]> ShapesOf(SafetensorsInfo info)
    {
        var shapes = new Dictionary<string, int[]>(info.Entries.Count, StringComparer.Ordinal);
        foreach (var e in info.Entries)
            shapes[e.Name] = [.. e.Shape.Select(d => (int)d)]; // each dimension was checked to be ≤ int.MaxValue
        return shapes;
    }

    private static bool IsDcw(Stream s)
    {
        Span<byte> prefix = stackalloc byte[8];
        s.Position = 0;
        int n = s.ReadAtLeast(prefix, prefix.Length, throwOnEndOfStream: false);
        s.Position = 0;
        return DcwFile.HasMagic(prefix[..n]);
    }

    private static void CheckChunkSize(int? chunkSize)
    {
        if (chunkSize is <= 0)
            throw new ArgumentOutOfRangeException(nameof(chunkSize), chunkSize,
                "Chunk size must be positive; pass the chunk size the model was built with (Edifice's default is 64).");
    }

    private static void CheckDcwChunkSize(ModelConfig config, int? chunkSize, string source)
    {
        if (chunkSize is int c && c != config.ChunkSize)
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture,
                $"The .dcw file '{source}' was converted with chunk size {config.ChunkSize}; the requested chunk size {c} disagrees. Omit the chunk size (--chunk-size), or re-convert the safetensors checkpoint with chunk size {c}."),
                nameof(chunkSize));
    }

    /// <summary>Reads at most <paramref name="maxLength"/> bytes, growing the buffer with what arrives.</summary>
    private static (byte[] Buffer, int Length) ReadBounded(Stream stream, long maxLength, string source)
    {
        // A seekable stream's length is a hint for the first buffer only, capped: it is not trusted to allocate.
        long hint = 1 << 16;
        if (stream.CanSeek)
        {
            long remaining = stream.Length - stream.Position;
            if (remaining > maxLength)
                throw new ModelFormatException(string.Create(CultureInfo.InvariantCulture,
                    $"{source}: the stream holds {remaining} bytes, more than the limit of {maxLength}. Raise maxLength, or load the model from a file path."));
            hint = Math.Clamp(remaining + 1, 1, 64L << 20);
        }
        var buffer = new byte[hint];
        int length = 0;
        while (true)
        {
            if (length == buffer.Length)
            {
                // The buffer reaches maxLength + 1 at most: one byte past the limit tells a stream of exactly maxLength
                // bytes from a longer one.
                if (length > maxLength) break;
                Array.Resize(ref buffer, (int)Math.Min(2L * buffer.Length, maxLength + 1));
            }
            int n = stream.Read(buffer, length, buffer.Length - length);
            if (n == 0) break;
            length += n;
        }
        if (length > maxLength)
            throw new ModelFormatException(string.Create(CultureInfo.InvariantCulture,
                $"{source}: the stream is longer than the limit of {maxLength} bytes. Raise maxLength, or load the model from a file path."));
        return (buffer, length);
    }
}
