using System.Buffers.Binary;
using System.Globalization;

namespace DualChunk.Core;

/// <summary>Where a loaded model's chunk size came from.</summary>
internal enum ChunkSizeSource
{
    /// <summary>The file stores it (a .dcw preamble or an Edifice spec).</summary>
    File,

    /// <summary>The caller gave it for a file that does not store one.</summary>
    Caller,

    /// <summary>Neither: Edifice's default (<see cref="WeightsLoader.DefaultChunkSize"/>) was assumed.</summary>
    EdificeDefault,
}

/// <summary>What a load produced: the configuration, the tensors, the file's format and where the chunk size came from.</summary>
internal sealed record LoadedWeights(ModelConfig Config, Dictionary<string, CheckpointTensor> Tensors, string Format, ChunkSizeSource ChunkSize);

/// <summary>
/// The one seam between weights files and everything that reads them (<see cref="WeightsLoader"/>, <c>inspect</c> and
/// <c>convert</c>): <see cref="Open"/> tells the format by the first bytes and returns a reader of it, which describes
/// the file (header, spec, tensors, problems) without converting data, and <see cref="Load"/>s it. The chunk-size rule
/// lives here once: a file that stores one uses it (a different requested one is an error naming both), any other
/// uses the caller's or Edifice's default.
/// </summary>
internal abstract class CheckpointReader
{
    protected CheckpointReader(Stream stream, string source) => (Stream, Source) = (stream, source);

    /// <summary>A seekable stream over the whole file.</summary>
    protected Stream Stream { get; }

    /// <summary>Names the file in messages.</summary>
    public string Source { get; }

    /// <summary>The short format name: <see cref="WeightsLoader.DcwFormat"/>, <see cref="WeightsLoader.SafetensorsFormat"/> or <see cref="WeightsLoader.NxFormat"/>.</summary>
    public abstract string Format { get; }

    /// <summary>One line: the format, its variant and sizes.</summary>
    public abstract string Description { get; }

    /// <summary>Further header lines (<c>label: text</c>): metadata, the Edifice spec, a stored configuration.</summary>
    public virtual IEnumerable<string> Header => [];

    /// <summary>The tensors as stored, in file order.</summary>
    public abstract IReadOnlyList<CheckpointEntry> Entries { get; }

    /// <summary>The integrity line (<c>checksum: ...</c>).</summary>
    public abstract string Integrity { get; }

    /// <summary>Damage found by describing the file (a checksum mismatch, non-zero padding); <see cref="Load"/> rejects it.</summary>
    public virtual IReadOnlyList<string> Problems => [];

    /// <summary>True when the file stores its chunk size, so none need be given.</summary>
    public abstract bool StoresChunkSize { get; }

    /// <summary>
    /// Reads the tensors and validates them against the configuration the file stores or implies.
    /// <paramref name="chunkSize"/>: the caller's, or null.
    /// </summary>
    public LoadedWeights Load(int? chunkSize)
    {
        try
        {
            return LoadCore(chunkSize);
        }
        catch (ModelFormatException ex) when (!ex.Message.StartsWith(Source + ": ", StringComparison.Ordinal))
        {
            throw new ModelFormatException($"{Source}: {ex.Message}", ex);
        }
    }

    protected abstract LoadedWeights LoadCore(int? chunkSize);

    /// <summary>The stored chunk size wins; a different requested one is an error naming both.</summary>
    /// <param name="stored">The file's chunk size.</param>
    /// <param name="chunkSize">The requested one, or null.</param>
    /// <param name="storedHow">How the file holds it, completed by the number: e.g. "was converted with chunk size".</param>
    protected void RequireStoredChunkSize(int stored, int? chunkSize, string storedHow)
    {
        if (chunkSize is int c && c != stored)
            throw new ArgumentException(Inv($"'{Source}' {storedHow} {stored}; the requested chunk size {c} disagrees. Omit the chunk size (--chunk-size, ChunkSize): the file's is used."),
                nameof(chunkSize));
    }

    /// <summary>What a file that does not store a chunk size uses, and why.</summary>
    protected static (int ChunkSize, ChunkSizeSource Source) CallerOrDefault(int? requested)
        => requested is int c ? (c, ChunkSizeSource.Caller) : (WeightsLoader.DefaultChunkSize, ChunkSizeSource.EdificeDefault);

    /// <summary>Tells the format by the first bytes of a seekable stream and returns its reader (nothing converted yet).</summary>
    public static CheckpointReader Open(Stream stream, string source)
    {
        Span<byte> prefix = stackalloc byte[16];
        stream.Position = 0;
        int n = stream.ReadAtLeast(prefix, prefix.Length, throwOnEndOfStream: false);
        stream.Position = 0;
        prefix = prefix[..n];
        if (DcwFile.HasMagic(prefix))
            return new DcwCheckpointReader(stream, source);
        if (NxCheckpoint.IsSerializePayload(prefix) || NxCheckpoint.IsCheckpointFile(prefix))
            return new NxCheckpointReader(stream, source);
        if (LooksLikeDamagedDcw(prefix))
            throw new ModelFormatException(Inv($"{source}: the file starts like a .dcw file whose magic is damaged ({Convert.ToHexString(prefix[..8])}, expected \"DCWEIGHT\"), and is neither a valid .dcw nor a safetensors file. Re-convert it from the checkpoint or re-download it."));
        if (n > 0 && prefix[0] == 0x83)
            throw new ModelFormatException($"{source}: the file is a bare Erlang term (it starts with 0x83), not a checkpoint: Nx.serialize (Nx 0.6 and later) starts with \"nx\" and Edifice.Checkpoint.save with a flag byte. Save it with one of them (docs/from-elixir.md).");
        return new SafetensorsCheckpointReader(stream, source);
    }

    /// <summary>
    /// True when the first 8 bytes differ from <c>DCWEIGHT</c> in at most 2 places, or the bytes after them read as a
    /// known .dcw version and flags 0: a .dcw with a damaged magic rather than a safetensors file (whose first 8 bytes
    /// are a header length of at most 100 MB, so mostly zero bytes).
    /// </summary>
    private static bool LooksLikeDamagedDcw(ReadOnlySpan<byte> prefix)
    {
        if (prefix.Length < 8 || BinaryPrimitives.ReadUInt64LittleEndian(prefix) <= SafetensorsReader.MaxHeaderLength) return false;
        int same = 0;
        for (int i = 0; i < 8; i++)
            if (prefix[i] == DcwFile.Magic[i]) same++;
        return same >= 6 || (prefix.Length >= 16 && BinaryPrimitives.ReadUInt32LittleEndian(prefix[8..]) is >= 1 and <= DcwFile.CurrentVersion
            && BinaryPrimitives.ReadUInt32LittleEndian(prefix[12..]) <= 1);
    }

    protected static string Inv(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}

/// <summary>DualChunk.NET's .dcw: the whole configuration, chunk size included, is in the preamble.</summary>
internal sealed class DcwCheckpointReader(Stream stream, string source) : CheckpointReader(stream, source)
{
    private DcwFileInfo? _info;

    // Described lazily: describing reads the whole file for its checksum, which a load does anyway on its own.
    private DcwFileInfo Info => _info ??= DcwFile.Inspect(Stream, Source);

    public override string Format => WeightsLoader.DcwFormat;

    public override string Description => Inv($"dcw version {Info.Version} ({Info.FileLength:N0} bytes, table {Info.TableByteLength:N0} bytes, data at {Info.DataOffset})");

    public override IEnumerable<string> Header => [$"stored:   {Info.Config}"];

    public override IReadOnlyList<CheckpointEntry> Entries
        => [.. Info.Tensors.Select(t => new CheckpointEntry(t.Name, t.Dtype, t.ShapeText, t.ByteLength, t.Offset))];

    public override string Integrity => Info.ChecksumValid
        ? Inv($"checksum: ok (XxHash3 {Info.StoredChecksum:x16})")
        : Inv($"checksum: MISMATCH (stored {Info.StoredChecksum:x16}, computed {Info.ComputedChecksum:x16})");

    public override IReadOnlyList<string> Problems => Info.PaddingProblem is { } p ? [$"padding:  NOT ZERO ({p})"] : [];

    public override bool StoresChunkSize => true;

    protected override LoadedWeights LoadCore(int? chunkSize)
    {
        var (config, tensors) = DcwFile.Read(Stream, Source);
        RequireStoredChunkSize(config.ChunkSize, chunkSize, DcwStoredHow);
        return new LoadedWeights(config, tensors, Format, ChunkSizeSource.File);
    }

    /// <summary>The memory-mapped path's chunk-size check (<see cref="WeightsLoader"/>).</summary>
    public static void CheckChunkSize(ModelConfig stored, int? requested, string source)
        => new DcwCheckpointReader(Stream.Null, source).RequireStoredChunkSize(stored.ChunkSize, requested, DcwStoredHow);

    private const string DcwStoredHow = "is a .dcw file converted with chunk size";
}

/// <summary>Edifice's safetensors export: tensors only, so the configuration is inferred and the chunk size is the caller's.</summary>
internal sealed class SafetensorsCheckpointReader(Stream stream, string source) : CheckpointReader(stream, source)
{
    private SafetensorsInfo? _info;

    private SafetensorsInfo Info => _info ??= SafetensorsReader.ReadStructure(Stream, Source).Info;

    public override string Format => WeightsLoader.SafetensorsFormat;

    public override string Description => Inv($"safetensors ({Info.FileLength:N0} bytes, header {Info.HeaderLength:N0} bytes)");

    public override IEnumerable<string> Header => Info.Metadata.Select(m => $"metadata: {m.Key} = {m.Value}");

    public override IReadOnlyList<CheckpointEntry> Entries
        => [.. Info.Entries.Select(t => new CheckpointEntry(t.Name, t.Dtype, t.ShapeText, t.ByteLength, null))];

    public override string Integrity => "checksum: none (safetensors has no checksum)";

    public override bool StoresChunkSize => false;

    protected override LoadedWeights LoadCore(int? chunkSize)
    {
        var (chunk, from) = CallerOrDefault(chunkSize);
        ModelConfig? inferred = null;
        // Names, shapes and the configuration are checked from the header, before any data is read or converted.
        var tensors = SafetensorsReader.Read(Stream, Source, info => inferred = TensorSetValidator.InferFromShapes(ShapesOf(info), chunk));
        TensorSetValidator.Validate(tensors, inferred!);
        return new LoadedWeights(inferred!, tensors, Format, from);
    }

    private static Dictionary<string, int[]> ShapesOf(SafetensorsInfo info)
    {
        var shapes = new Dictionary<string, int[]>(info.Entries.Count, StringComparer.Ordinal);
        foreach (var e in info.Entries)
            shapes[e.Name] = [.. e.Shape.Select(d => (int)d)]; // each dimension was checked to be ≤ int.MaxValue
        return shapes;
    }
}

/// <summary>
/// Edifice's .nx checkpoints and bare Nx.serialize payloads. With an Edifice spec the architecture, chunk size and
/// dimensions come from it (checked against the tensors); without one they are inferred as for safetensors.
/// </summary>
internal sealed class NxCheckpointReader : CheckpointReader
{
    private readonly NxCheckpoint _nx;

    public NxCheckpointReader(Stream stream, string source) : base(stream, source) => _nx = NxCheckpoint.Open(stream, source);

    public override string Format => WeightsLoader.NxFormat;

    /// <summary>The Edifice build spec the file stores, if any.</summary>
    public EdificeSpec? Spec => _nx.Spec;

    public override string Description => (_nx.IsCheckpoint
            ? Inv($"nx (Edifice.Checkpoint, {(_nx.Compressed ? "zlib-compressed" : "uncompressed")}, {(_nx.Spec is null ? "no spec" : "with spec")})")
            : "nx (bare Nx.serialize payload, no spec)")
        + Inv($", {_nx.FileLength:N0} bytes; Nx term {_nx.TermLength:N0} bytes of a {_nx.Container}; {(_nx.BigEndian ? "big" : "little")}-endian buffers of {_nx.DataLength:N0} bytes");

    public override IEnumerable<string> Header
    {
        get
        {
            if (_nx.Spec is { } spec)
                return spec.Describe().Select(line => "spec:     " + line);
            return _nx.Metadata is { } meta ? [$"metadata: {meta}"] : [];
        }
    }

    public override IReadOnlyList<CheckpointEntry> Entries
        => [.. _nx.Entries.Select(t => new CheckpointEntry(t.Name, t.Dtype, t.ShapeText, t.ByteLength, t.Offset))];

    public override string Integrity => "checksum: none (.nx has no checksum)";

    public override bool StoresChunkSize => _nx.Spec is not null;

    /// <summary>Releases the inflater of a compressed file that is described but not loaded.</summary>
    public void Close() => _nx.Close();

    protected override LoadedWeights LoadCore(int? chunkSize)
    {
        try
        {
            ModelConfig config;
            ChunkSizeSource from;
            if (_nx.Spec is { } spec)
            {
                int chunk = spec.ChunkSize;
                _ = spec.Architecture; // an architecture this engine cannot run is named before the tensors are read
                RequireStoredChunkSize(chunk, chunkSize, "holds Edifice's build spec, which gives chunk size");
                config = TensorSetValidator.InferFromShapes(_nx.Shapes(), chunk);
                spec.Check(config);
                from = ChunkSizeSource.File;
            }
            else
            {
                (int chunk, from) = CallerOrDefault(chunkSize);
                config = TensorSetValidator.InferFromShapes(_nx.Shapes(), chunk);
            }
            var tensors = _nx.ReadTensors();
            TensorSetValidator.Validate(tensors, config);
            return new LoadedWeights(config, tensors, Format, from);
        }
        finally
        {
            _nx.Close();
        }
    }
}
