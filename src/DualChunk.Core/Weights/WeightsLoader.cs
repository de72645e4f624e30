using System.Globalization;
using System.Runtime.InteropServices;

namespace DualChunk.Core;

/// <summary>
/// Loads model weights from an Edifice checkpoint (<c>.nx</c> from <c>Edifice.Checkpoint.save</c>, a bare
/// <c>Nx.serialize</c> payload, or safetensors) or a .dcw file, the format detected by content.
/// </summary>
public static class WeightsLoader
{
    /// <summary>The <c>Format</c> reported for .dcw files.</summary>
    public const string DcwFormat = "dcw";

    /// <summary>The <c>Format</c> reported for safetensors files.</summary>
    public const string SafetensorsFormat = "safetensors";

    /// <summary>The <c>Format</c> reported for Edifice .nx checkpoints and bare Nx.serialize payloads.</summary>
    public const string NxFormat = "nx";

    /// <summary>Edifice's default chunk size, used for a file that does not store one (safetensors, .nx without a spec) when none is given.</summary>
    public const int DefaultChunkSize = 64;

    /// <summary>
    /// Loads the weights at <paramref name="path"/>. A file that stores its chunk size (.dcw, or a .nx checkpoint with
    /// Edifice's spec, which also gives the architecture and dimensions) uses it; for any other (safetensors, .nx
    /// without a spec, a bare Nx.serialize payload) the configuration is inferred from the tensors with
    /// <paramref name="chunkSize"/> (default <see cref="DefaultChunkSize"/>).
    /// </summary>
    /// <param name="path">The weights file.</param>
    /// <param name="chunkSize">The chunk size the model was built with; for a file that stores one it must match if given.</param>
    /// <returns>The configuration, the tensors by name, and the detected format (<see cref="DcwFormat"/>, <see cref="NxFormat"/> or <see cref="SafetensorsFormat"/>).</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="chunkSize"/> is not positive.</exception>
    /// <exception cref="ArgumentException"><paramref name="chunkSize"/> disagrees with the chunk size the file stores.</exception>
    /// <exception cref="ArgumentException">The path is empty or names a directory, a FIFO, a device or a socket.</exception>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="ModelFormatException">The file is damaged or not a DualChunk model.</exception>
    public static (ModelConfig Config, Dictionary<string, CheckpointTensor> Tensors, string Format) Load(string path, int? chunkSize)
    {
        var (loaded, _) = Load(path, chunkSize, memoryMap: false);
        return (loaded.Config, loaded.Tensors, loaded.Format);
    }

    /// <summary>The default bound on the bytes <see cref="Load(Stream, int?, string, long)"/> reads (2 GB, just under the largest array).</summary>
    public const long DefaultMaxStreamLength = 2_000_000_000;

    /// <summary>
    /// Loads weights from <paramref name="stream"/> (from its current position to its end), as
    /// <see cref="Load(string, int?)"/> does from a file. The stream need not be seekable; it is read into memory, and
    /// never more than <paramref name="maxLength"/> bytes: a longer stream is an error, whatever its
    /// <see cref="Stream.Length"/> claims. Memory is allocated as bytes arrive, not from that claim.
    /// </summary>
    /// <param name="stream">A readable stream holding one weights file (.nx, Nx.serialize, safetensors or .dcw). Not disposed.</param>
    /// <param name="chunkSize">As for <see cref="Load(string, int?)"/>.</param>
    /// <param name="sourceName">Names the stream in error messages, e.g. its origin.</param>
    /// <param name="maxLength">The most bytes to read, at most <see cref="DefaultMaxStreamLength"/>.</param>
    /// <exception cref="ArgumentException">The stream is not readable, or <paramref name="chunkSize"/> disagrees with the chunk size the file stores.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="chunkSize"/> or <paramref name="maxLength"/> is out of range.</exception>
    /// <exception cref="ModelFormatException">The stream is longer than <paramref name="maxLength"/>, damaged, or not a DualChunk model.</exception>
    public static (ModelConfig Config, Dictionary<string, CheckpointTensor> Tensors, string Format) Load(Stream stream, int? chunkSize,
        string sourceName = "stream", long maxLength = DefaultMaxStreamLength)
    {
        CheckStreamArguments(stream, chunkSize, sourceName, maxLength);
        var bytes = ReadBounded(stream, maxLength, sourceName);
        return Load(new ReadOnlyMemory<byte>(bytes.Buffer, 0, bytes.Length), chunkSize, sourceName);
    }

    /// <summary>
    /// As <see cref="Load(Stream, int?, string, long)"/>, reading <paramref name="stream"/> asynchronously (e.g. an
    /// ASP.NET Core request body, which refuses synchronous reads); the bytes are then parsed on the calling thread.
    /// </summary>
    /// <param name="stream">A readable stream holding one weights file (.nx, Nx.serialize, safetensors or .dcw). Not disposed.</param>
    /// <param name="chunkSize">As for <see cref="Load(string, int?)"/>.</param>
    /// <param name="sourceName">Names the stream in error messages, e.g. its origin.</param>
    /// <param name="maxLength">The most bytes to read, at most <see cref="DefaultMaxStreamLength"/>.</param>
    /// <param name="cancellationToken">Cancels the reading.</param>
    /// <exception cref="ArgumentException">The stream is not readable, or <paramref name="chunkSize"/> disagrees with the chunk size the file stores.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="chunkSize"/> or <paramref name="maxLength"/> is out of range.</exception>
    /// <exception cref="ModelFormatException">The stream is longer than <paramref name="maxLength"/>, damaged, or not a DualChunk model.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public static async Task<(ModelConfig Config, Dictionary<string, CheckpointTensor> Tensors, string Format)> LoadAsync(Stream stream, int? chunkSize,
        string sourceName = "stream", long maxLength = DefaultMaxStreamLength, CancellationToken cancellationToken = default)
    {
        CheckStreamArguments(stream, chunkSize, sourceName, maxLength);
        var bytes = await ReadBoundedAsync(stream, maxLength, sourceName, cancellationToken).ConfigureAwait(false);
        return Load(new ReadOnlyMemory<byte>(bytes.Buffer, 0, bytes.Length), chunkSize, sourceName);
    }

    /// <summary>Loads weights held in memory (a whole weights file of any format <see cref="Load(string, int?)"/> reads), as <see cref="Load(string, int?)"/> does from a file.</summary>
    /// <param name="file">The file's bytes. Only read during the call; the result does not refer to them.</param>
    /// <param name="chunkSize">As for <see cref="Load(string, int?)"/>.</param>
    /// <param name="sourceName">Names the bytes in error messages.</param>
    /// <exception cref="ArgumentException"><paramref name="chunkSize"/> disagrees with the chunk size the file stores.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="chunkSize"/> is not positive.</exception>
    /// <exception cref="ModelFormatException">The bytes are damaged or not a DualChunk model.</exception>
    public static (ModelConfig Config, Dictionary<string, CheckpointTensor> Tensors, string Format) Load(ReadOnlyMemory<byte> file, int? chunkSize,
        string sourceName = "memory")
    {
        ArgumentNullException.ThrowIfNull(sourceName);
        CheckChunkSize(chunkSize);
        var array = MemoryMarshal.TryGetArray(file, out var segment) ? segment : new ArraySegment<byte>(file.ToArray());
        using var memory = new MemoryStream(array.Array!, array.Offset, array.Count, writable: false);
        var loaded = CheckpointReader.Open(memory, sourceName).Load(chunkSize);
        return (loaded.Config, loaded.Tensors, loaded.Format);
    }

    /// <summary>
    /// As <see cref="Load(string, int?)"/>; with <paramref name="memoryMap"/> a .dcw file is mapped and its tensors lie in
    /// the returned mapping (owned by the caller), otherwise <c>Mapping</c> is null and nothing refers to the file.
    /// </summary>
    internal static (LoadedWeights Weights, MappedFile? Mapping) Load(string path, int? chunkSize, bool memoryMap)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        CheckChunkSize(chunkSize);
        using (var fs = RegularFile.OpenRead(path))
        {
            var reader = CheckpointReader.Open(fs, path);
            if (!(memoryMap && BitConverter.IsLittleEndian && reader is DcwCheckpointReader))
                return (reader.Load(chunkSize), null);
        }
        var (config, tensors, mapping) = DcwFile.Map(path);
        try
        {
            DcwCheckpointReader.CheckChunkSize(config, chunkSize, path);
        }
        catch
        {
            mapping.Dispose();
            throw;
        }
        return (new LoadedWeights(config, tensors, DcwFormat, ChunkSizeSource.File), mapping);
    }

    private static void CheckChunkSize(int? chunkSize)
    {
        if (chunkSize is <= 0)
            throw new ArgumentOutOfRangeException(nameof(chunkSize), chunkSize,
                "Chunk size must be positive; pass the chunk size the model was built with (Edifice's default is 64).");
    }

    /// <summary>The checks both stream overloads make before reading anything.</summary>
    private static void CheckStreamArguments(Stream stream, int? chunkSize, string sourceName, long maxLength)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(sourceName);
        CheckChunkSize(chunkSize);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxLength);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxLength, DefaultMaxStreamLength);
        if (!stream.CanRead)
            throw new ArgumentException("The stream must be readable.", nameof(stream));
    }

    /// <summary>Reads at most <paramref name="maxLength"/> bytes, growing the buffer with what arrives.</summary>
    private static (byte[] Buffer, int Length) ReadBounded(Stream stream, long maxLength, string source)
    {
        var reader = new BoundedReader(stream, maxLength, source);
        while (reader.Read(stream.Read(reader.Free))) { }
        return reader.Result();
    }

    /// <summary>As <see cref="ReadBounded"/>, with asynchronous reads.</summary>
    private static async Task<(byte[] Buffer, int Length)> ReadBoundedAsync(Stream stream, long maxLength, string source, CancellationToken cancellationToken)
    {
        var reader = new BoundedReader(stream, maxLength, source);
        while (reader.Read(await stream.ReadAsync(reader.FreeMemory, cancellationToken).ConfigureAwait(false))) { }
        return reader.Result();
    }

    /// <summary>The buffer of a bounded read: grows with what arrives, never past maxLength + 1 bytes.</summary>
    private sealed class BoundedReader
    {
        private readonly long _maxLength;
        private readonly string _source;
        private byte[] _buffer;
        private int _length;

        public BoundedReader(Stream stream, long maxLength, string source)
        {
            _maxLength = maxLength;
            _source = source;
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
            _buffer = new byte[hint];
        }

        /// <summary>Where the next read goes (empty once the limit is passed).</summary>
        public Span<byte> Free => FreeMemory.Span;

        /// <summary>Where the next read goes, as memory (empty once the limit is passed).</summary>
        public Memory<byte> FreeMemory
        {
            get
            {
                if (_length == _buffer.Length && _length <= _maxLength)
                {
                    // The buffer reaches maxLength + 1 at most: one byte past the limit tells a stream of exactly
                    // maxLength bytes from a longer one.
                    Array.Resize(ref _buffer, (int)Math.Min(2L * _buffer.Length, _maxLength + 1));
                }
                return _buffer.AsMemory(_length);
            }
        }

        /// <summary>Counts <paramref name="read"/> bytes; false when the stream ended or the limit was passed.</summary>
        public bool Read(int read)
        {
            _length += read;
            return read > 0 && _length <= _maxLength;
        }

        public (byte[] Buffer, int Length) Result()
        {
            if (_length > _maxLength)
                throw new ModelFormatException(string.Create(CultureInfo.InvariantCulture,
                    $"{_source}: the stream is longer than the limit of {_maxLength} bytes. Raise maxLength, or load the model from a file path."));
            return (_buffer, _length);
        }
    }
}
