namespace DualChunk.Core;

/// <summary>One tensor as a weights file stores it: what <see cref="CheckpointFile.Tensors"/> lists.</summary>
/// <param name="Name">The tensor's name in the file.</param>
/// <param name="Dtype">The stored element type as the format names it (e.g. <c>F32</c>, <c>f32</c>, <c>BF16</c>).</param>
/// <param name="ShapeText">The stored shape, e.g. <c>[256, 768]</c>.</param>
/// <param name="ByteLength">The bytes of stored data.</param>
/// <param name="Offset">Where the data starts in the file (.dcw, .nx), or null when the format's table gives none (safetensors).</param>
public sealed record CheckpointEntry(string Name, string Dtype, string ShapeText, long ByteLength, long? Offset);

/// <summary>
/// A weights file (.dcw, Edifice safetensors, Edifice .nx or a bare Nx.serialize payload) opened to see what it holds
/// without loading a model: its format, header, tensor table and integrity (what <c>dualchunk inspect</c> prints), then,
/// if wanted, every check a load makes (<see cref="Validate"/>). Dispose it to close the file.
/// </summary>
/// <remarks>
/// The format is told by the first bytes, not the file name. Describing reads only what it needs, except that a .dcw
/// file is read whole for its checksum. A property that reads the file may throw <see cref="ModelFormatException"/> for
/// a damaged file. Not thread-safe: use one instance from one thread at a time.
/// </remarks>
public sealed class CheckpointFile : IDisposable
{
    private readonly FileStream _stream;
    private readonly CheckpointReader _reader;

    private CheckpointFile(FileStream stream, CheckpointReader reader) => (_stream, _reader) = (stream, reader);

    /// <summary>Opens <paramref name="path"/> and tells its format by its first bytes; nothing is converted yet.</summary>
    /// <exception cref="ArgumentException">The path is empty or names a directory, a FIFO, a device or a socket.</exception>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="ModelFormatException">The file is none of the formats, or its header is damaged.</exception>
    public static CheckpointFile Open(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var stream = RegularFile.OpenRead(path); // refuses a FIFO or device instead of blocking on it
        try
        {
            return new CheckpointFile(stream, CheckpointReader.Open(stream, path));
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>The short format name: <see cref="WeightsLoader.DcwFormat"/>, <see cref="WeightsLoader.SafetensorsFormat"/> or <see cref="WeightsLoader.NxFormat"/>.</summary>
    public string Format => _reader.Format;

    /// <summary>One line: the format, its variant and sizes.</summary>
    public string Description => _reader.Description;

    /// <summary>Further header lines (<c>label: text</c>): metadata, the Edifice spec, a stored configuration.</summary>
    public IReadOnlyList<string> Header => [.. _reader.Header];

    /// <summary>The tensors as stored, in file order.</summary>
    public IReadOnlyList<CheckpointEntry> Tensors => _reader.Entries;

    /// <summary>The integrity line: <c>checksum: ok (…)</c>, <c>checksum: MISMATCH (…)</c> or <c>checksum: none (…)</c>.</summary>
    public string Integrity => _reader.Integrity;

    /// <summary>Damage found by describing the file (a checksum mismatch, non-zero padding); <see cref="Validate"/> rejects it.</summary>
    public IReadOnlyList<string> Problems => _reader.Problems;

    /// <summary>True when the file stores its chunk size (.dcw, or .nx with an Edifice spec), so a load needs none.</summary>
    public bool StoresChunkSize => _reader.StoresChunkSize;

    /// <summary>
    /// Reads every tensor and makes every check a load makes (checksum, padding, tensor set, shapes, finite values, the
    /// spec, the chunk size), and returns the configuration a model loaded from the file would have. Call it once.
    /// </summary>
    /// <param name="chunkSize">The chunk size the model was built with, or null: the file's, or Edifice's default 64.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="chunkSize"/> is not positive.</exception>
    /// <exception cref="ArgumentException"><paramref name="chunkSize"/> disagrees with the chunk size the file stores.</exception>
    /// <exception cref="ModelFormatException">The file is damaged or not a model this engine runs.</exception>
    public ModelConfig Validate(int? chunkSize = null)
    {
        if (chunkSize is <= 0)
            throw new ArgumentOutOfRangeException(nameof(chunkSize), chunkSize,
                "Chunk size must be positive; pass the chunk size the model was built with (Edifice's default is 64).");
        return _reader.Load(chunkSize).Config;
    }

    /// <summary>Closes the file.</summary>
    public void Dispose()
    {
        (_reader as NxCheckpointReader)?.Close();
        _stream.Dispose();
    }
}
