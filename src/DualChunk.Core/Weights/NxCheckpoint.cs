using System.Buffers.Binary;
using System.Globalization;
using System.IO.Compression;
using System.Runtime.InteropServices;
using System.Text;

namespace DualChunk.Core;

/// <summary>One tensor of an Nx payload: its flattened name, Nx type, shape and place in the buffer area.</summary>
/// <param name="Name">The container path joined with dots, e.g. <c>final_norm.gamma</c> (the safetensors key).</param>
/// <param name="Dtype">F32, F64, F16 or BF16 for the types that load; otherwise Nx's own name (e.g. <c>s32</c>).</param>
/// <param name="Shape">The shape, outermost first.</param>
/// <param name="Offset">Offset of the first byte, relative to the start of the buffer area.</param>
/// <param name="ByteLength">The tensor's size in bytes.</param>
internal sealed record NxTensorEntry(string Name, string Dtype, int[] Shape, long Offset, long ByteLength)
{
    public string ShapeText => "[" + string.Join(", ", Shape) + "]";
}

/// <summary>
/// Edifice's <c>.nx</c> checkpoints (<c>Edifice.Checkpoint.save</c>: a compression flag, a u32 metadata size, the
/// metadata term holding the build spec, then <c>Nx.serialize</c>'s payload, zlib-compressed when the flag is 1) and
/// bare <c>Nx.serialize</c> payloads (<c>"nx"</c>, version 1, endianness, u64 term size, the term, the raw buffers).
/// Byte layouts: tests/golden/edifice-l/README.md. <see cref="Open"/> reads everything up to the tensor data;
/// <see cref="ReadTensors"/> then reads the data, front to back.
/// </summary>
internal sealed class NxCheckpoint
{
    /// <summary>
    /// A compressed file may inflate to at most this many times its compressed size (plus 1 MiB): float weights
    /// compress to about 90%, so more is a zlib bomb, refused before its data is inflated.
    /// </summary>
    public const int MaxInflationRatio = 16;

    private static readonly ReadOnlyMemory<byte> NxMagic = "nx"u8.ToArray();

    private readonly Stream _payload;    // positioned at the first byte of the buffer area
    private readonly string _source;
    private readonly Adler32? _adler;    // of the inflated bytes, for a compressed payload
    private readonly uint _storedAdler;  // the zlib trailer: the file's last 4 bytes

    private NxCheckpoint(Stream payload, string source, Adler32? adler, uint storedAdler)
        => (_payload, _source, _adler, _storedAdler) = (payload, source, adler, storedAdler);

    /// <summary>True for an <c>Edifice.Checkpoint</c> file, false for a bare <c>Nx.serialize</c> payload.</summary>
    public bool IsCheckpoint { get; private init; }

    /// <summary>True when the payload is zlib-compressed (the checkpoint's flag byte is 1).</summary>
    public bool Compressed { get; private init; }

    /// <summary>The checkpoint's metadata term (null when it has none, and for bare payloads).</summary>
    public EtfTerm? Metadata { get; private init; }

    /// <summary>The Edifice build spec stored in the metadata, if any.</summary>
    public EdificeSpec? Spec { get; private init; }

    /// <summary>The file's size in bytes.</summary>
    public long FileLength { get; private init; }

    /// <summary>The Nx term's size in bytes (as stored; compressed terms are inflated by <see cref="Etf"/>).</summary>
    public long TermLength { get; private init; }

    /// <summary>The buffer area's size: what the tensors tile.</summary>
    public long DataLength { get; private init; }

    /// <summary>True when the buffers are big-endian (the endianness byte is 1).</summary>
    public bool BigEndian { get; private init; }

    /// <summary>What the payload's container was: a map, an <c>Axon.ModelState</c>, ...</summary>
    public string Container { get; private init; } = "";

    public IReadOnlyList<NxTensorEntry> Entries { get; private init; } = [];

    /// <summary>True when <paramref name="prefix"/> (the first bytes of a file) is a bare <c>Nx.serialize</c> payload.</summary>
    public static bool IsSerializePayload(ReadOnlySpan<byte> prefix) => prefix.StartsWith(NxMagic.Span);

    /// <summary>
    /// True when <paramref name="prefix"/> starts like an <c>Edifice.Checkpoint</c> file: a flag byte 0 or 1, a size,
    /// then an Erlang term (0x83), an Nx payload ("nx") or a zlib stream (0x78). A safetensors file cannot: its byte 5
    /// is the sixth byte of a header length of at most 100 MB, so 0. Files of 5 bytes or less only need the flag.
    /// </summary>
    public static bool IsCheckpointFile(ReadOnlySpan<byte> prefix)
        => prefix.Length > 0 && prefix[0] <= 1 && (prefix.Length <= 5 || prefix[5] is 0x83 or (byte)'n' or 0x78);

    /// <summary>Reads the header, metadata and Nx term of a seekable stream positioned anywhere (read from 0).</summary>
    public static NxCheckpoint Open(Stream stream, string source)
    {
        long fileLength = stream.Length;
        stream.Position = 0;
        Span<byte> prefix = stackalloc byte[5];
        int got = stream.ReadAtLeast(prefix, 5, throwOnEndOfStream: false);
        bool checkpoint = !IsSerializePayload(prefix[..got]);
        EtfTerm? metadata = null;
        bool compressed = false;
        long payloadStart = 0;
        if (checkpoint)
        {
            if (got < 5)
                throw Err(source, $"the file is {fileLength} bytes, shorter than the 5-byte header of an Edifice .nx checkpoint (flag, metadata size). It is truncated.");
            if (prefix[0] > 1)
                throw Err(source, $"compression flag is {prefix[0]}; an Edifice .nx checkpoint has 0 (plain) or 1 (zlib).");
            compressed = prefix[0] == 1;
            uint metaSize = BinaryPrimitives.ReadUInt32BigEndian(prefix[1..]);
            if (metaSize > fileLength - 5)
                throw Err(source, $"metadata size {metaSize} exceeds the {fileLength - 5} bytes after the 5-byte header. The file is truncated or not an Edifice .nx checkpoint.");
            if (metaSize > Etf.MaxTermBytes)
                throw Err(source, $"metadata size {metaSize} is above the limit of {Etf.MaxTermBytes} bytes.");
            if (metaSize > 0)
            {
                var meta = new byte[metaSize];
                ReadExactly(stream, meta, source, "the metadata");
                metadata = Guard(source, () => Etf.Parse(meta, "the metadata term"));
            }
            payloadStart = 5 + metaSize;
        }
        stream.Position = payloadStart;
        EdificeSpec? spec = metadata is null ? null : Guard(source, () => EdificeSpec.FromMetadata(metadata));

        long compressedLength = fileLength - payloadStart;
        // Everything the payload may inflate to; a plain payload is bounded by the file.
        long payloadLimit = compressed ? (long)MaxInflationRatio * compressedLength + (1 << 20) : compressedLength;
        // .NET's inflater does not check zlib's Adler-32 trailer, so a cut or damaged stream could inflate "cleanly":
        // the sum is kept over every inflated byte and compared with the file's last 4 bytes at the end.
        uint storedAdler = 0;
        if (compressed && compressedLength >= 4)
        {
            Span<byte> trailer = stackalloc byte[4];
            stream.Position = fileLength - 4;
            ReadExactly(stream, trailer, source, "the zlib trailer");
            storedAdler = BinaryPrimitives.ReadUInt32BigEndian(trailer);
            stream.Position = payloadStart;
        }
        var adler = compressed ? new Adler32() : null;
        Stream payload = compressed
            ? new ZLibStream(stream, CompressionMode.Decompress, leaveOpen: true)
            : stream;
        try
        {
            Span<byte> head = stackalloc byte[12];
            int n = ReadPayload(payload, head, source, adler);
            if (n < 12)
                throw Err(source, $"the Nx payload ends after {n} bytes, inside its 12-byte header (\"nx\", version, endianness, term size). The file is truncated.");
            if (!head.StartsWith(NxMagic.Span))
                throw Err(source, $"the payload starts with {Convert.ToHexString(head[..2])}, not \"nx\" (6E78): it is not an Nx.serialize payload{(checkpoint ? " (the metadata size may be wrong)" : "")}.");
            if (head[2] != 1)
                throw Err(source, $"Nx.serialize format version {head[2]} is not supported; Nx 0.6 to 0.13 write version 1.");
            if (head[3] > 1)
                throw Err(source, $"endianness byte is {head[3]}; Nx writes 0 (little) or 1 (big).");
            ulong termSize = BinaryPrimitives.ReadUInt64BigEndian(head[4..]);
            if (termSize > (ulong)(payloadLimit - 12) || termSize > Etf.MaxTermBytes)
                throw Err(source, $"the Nx term claims {termSize} bytes, more than the {(compressed ? "payload may inflate to" : "file holds after the header")} ({payloadLimit - 12}) or the limit of {Etf.MaxTermBytes}. The file is truncated or corrupted.");
            var termBytes = new byte[termSize];
            if (ReadPayload(payload, termBytes, source, adler) < termBytes.Length)
                throw Err(source, $"the Nx payload ends inside its {termSize}-byte term. The file is truncated.");
            var term = Guard(source, () => Etf.Parse(termBytes, "the Nx term"));
            var (container, entries) = Guard(source, () => Flatten(term));
            long dataLength = CheckTiling(entries, source);
            long available = payloadLimit - 12 - (long)termSize;
            if (!compressed && dataLength != available)
                throw Err(source, dataLength < available
                    ? (FormattableString)$"the tensors cover {dataLength} bytes, but {available} bytes follow the term: the file has {available - dataLength} unused trailing bytes (corrupted or appended to)."
                    : $"the tensors need {dataLength} bytes, but only {available} follow the term. The file is truncated.");
            if (compressed && dataLength > available)
                throw Err(source, $"the tensors claim {dataLength} bytes inflated from {compressedLength} compressed bytes, more than {MaxInflationRatio}× (+1 MiB): refused as a zlib bomb before inflating it.");
            return new NxCheckpoint(payload, source, adler, storedAdler)
            {
                IsCheckpoint = checkpoint, Compressed = compressed, Metadata = metadata, Spec = spec, FileLength = fileLength,
                TermLength = (long)termSize, DataLength = dataLength, BigEndian = head[3] == 1, Container = container, Entries = entries,
            };
        }
        catch
        {
            if (compressed) payload.Dispose();
            throw;
        }
    }

    /// <summary>The tensors' names and shapes (for configuring the model before any data is read).</summary>
    public Dictionary<string, int[]> Shapes()
    {
        var shapes = new Dictionary<string, int[]>(Entries.Count, StringComparer.Ordinal);
        foreach (var e in Entries) shapes[e.Name] = e.Shape;
        return shapes;
    }

    /// <summary>Reads and converts every tensor's data (F32, F64, F16 and BF16 to float32; anything else is refused by name).</summary>
    public Dictionary<string, CheckpointTensor> ReadTensors()
    {
        foreach (var e in Entries)
        {
            if (!SafetensorsReader.IsSupported(e.Dtype))
                throw Err(_source, $"tensor '{e.Name}' has Nx type {e.Dtype}, which cannot be loaded as weights. Supported: f32, f64, f16, bf16. Cast it (Nx.as_type) and save again.");
        }
        var result = new Dictionary<string, CheckpointTensor>(Entries.Count, StringComparer.Ordinal);
        var buffer = new byte[1 << 20];
        try
        {
            // The tensors tile the buffer area, so in offset order this reads the payload front to back.
            foreach (var e in Entries.OrderBy(e => e.Offset))
            {
                var data = new float[e.ByteLength / DtypeSize(e.Dtype)];
                if (e.Dtype == "F32" && BitConverter.IsLittleEndian && !BigEndian)
                {
                    for (long done = 0; done < data.Length; done += 1 << 28)
                        Fill(MemoryMarshal.AsBytes(data.AsSpan((int)done, (int)Math.Min(1 << 28, data.Length - done))), e);
                }
                else
                {
                    int size = DtypeSize(e.Dtype), perChunk = buffer.Length / size;
                    for (int done = 0; done < data.Length; done += perChunk)
                    {
                        int n = Math.Min(perChunk, data.Length - done);
                        var raw = buffer.AsSpan(0, n * size);
                        Fill(raw, e);
                        if (BigEndian) ReverseEach(raw, size);
                        SafetensorsReader.Convert(e.Dtype, raw, data.AsSpan(done, n), e.Name, done, _source);
                    }
                }
                result.Add(e.Name, new CheckpointTensor(e.Name, e.Shape, data));
            }
            if (Compressed)
            {
                Span<byte> one = stackalloc byte[1];
                if (ReadPayload(_payload, one, _source, null) > 0)
                    throw Err(_source, $"the compressed payload inflates to more than the {DataLength} bytes its tensors claim: corrupted, or a zlib bomb.");
                if (_adler!.Value != _storedAdler)
                    throw Err(_source, $"the compressed payload's Adler-32 is 0x{_adler.Value:x8}, but its zlib trailer says 0x{_storedAdler:x8}: the file is truncated or corrupted.");
            }
        }
        finally
        {
            if (Compressed) _payload.Dispose();
        }
        return result;
    }

    /// <summary>Releases the inflater of a compressed file that was opened but not read.</summary>
    public void Close()
    {
        if (Compressed) _payload.Dispose();
    }

    private void Fill(Span<byte> dest, NxTensorEntry e)
    {
        if (ReadPayload(_payload, dest, _source, _adler) < dest.Length)
            throw Err(_source, $"the file ended while reading tensor '{e.Name}' (truncated, or changed while being read).");
    }

    private static int ReadPayload(Stream payload, Span<byte> dest, string source, Adler32? adler)
    {
        try
        {
            int n = payload.ReadAtLeast(dest, dest.Length, throwOnEndOfStream: false);
            adler?.Append(dest[..n]);
            return n;
        }
        catch (InvalidDataException ex)
        {
            // The inflater's own text names a cause that is often not the one (a wrong Adler-32 trailer reads as "an
            // unsupported compression method"); it stays in InnerException.
            throw new ModelFormatException($"{source}: the compressed payload is not a valid zlib stream (a damaged deflate block or a wrong Adler-32 checksum). The file is truncated or corrupted; write it again.", ex);
        }
    }

    private static void ReverseEach(Span<byte> raw, int size)
    {
        for (int i = 0; i < raw.Length; i += size) raw.Slice(i, size).Reverse();
    }

    private static int DtypeSize(string dtype) => dtype switch { "F64" => 8, "F32" => 4, _ => 2 };

    /// <summary>The tensors, sorted by offset, must tile [0, end) with no gap or overlap; returns end.</summary>
    private static long CheckTiling(List<NxTensorEntry> entries, string source)
    {
        // A tensor whose claimed bytes pass everything the tensors hold together cannot tile: name it, rather than the
        // tensor after whose start the tiling walk would then find a gap.
        Int128 total = 0;                    // sizes are ≤ 2^63 each, so no count of them overflows this
        foreach (var e in entries) total += e.ByteLength;
        if (total > long.MaxValue)
            throw Err(source, $"the tensors claim {total} bytes together, more than any file holds. The file is corrupted.");
        foreach (var e in entries)
            if (e.Offset > total - e.ByteLength)
                throw Err(source, $"tensor '{e.Name}' claims bytes {e.Offset}..{(Int128)e.Offset + e.ByteLength} of the buffer area, but the tensors hold {total} bytes together, so it ends past them. The file is corrupted.");
        long pos = 0;
        foreach (var e in entries.OrderBy(e => e.Offset).ThenBy(e => e.ByteLength))
        {
            if (e.Offset != pos)
                throw Err(source, e.Offset < pos
                    ? (FormattableString)$"tensor '{e.Name}' at bytes {e.Offset}..{e.Offset + e.ByteLength} overlaps the previous tensor, which ends at {pos}. The file is corrupted."
                    : $"tensor '{e.Name}' starts at byte {e.Offset} of the buffer area, leaving a gap after byte {pos}; Nx writes its buffers back to back. The file is corrupted.");
            pos += e.ByteLength;
        }
        return pos;
    }

    /// <summary>Walks Nx.serialize's containers to the tensors, naming each by its path (docs: the README's term shapes).</summary>
    private static (string Container, List<NxTensorEntry> Entries) Flatten(EtfTerm root)
    {
        var entries = new List<NxTensorEntry>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        string container = Describe(root);
        Walk(root, "", entries, names);
        if (entries.Count == 0)
            throw new ModelFormatException($"the Nx term ({container}) holds no tensors.");
        return (container, entries);
    }

    private static string Describe(EtfTerm t) => t.Kind == EtfKind.Tuple && t.Items.Count == 3 && t.Items[0].Atom is { } m && m.StartsWith("Elixir.Nx.Container.", StringComparison.Ordinal)
        ? m["Elixir.Nx.Container.".Length..] : IsTensor(t) ? "a tensor" : "a " + t.Kind.ToString().ToLowerInvariant();

    private static bool IsTensor(EtfTerm t) => t.Kind == EtfKind.Tuple && t.Items.Count == 7 && t.Items[0].IsAtom("t");

    private static void Walk(EtfTerm t, string path, List<NxTensorEntry> entries, HashSet<string> names)
    {
        if (IsTensor(t))
        {
            if (path.Length == 0) path = "tensor";
            if (!names.Add(path))
                throw new ModelFormatException($"the name '{path}' is given to two tensors.");
            entries.Add(ReadTensorTerm(t, path));
            return;
        }
        if (t.Kind != EtfKind.Tuple || t.Items.Count != 3 || t.Items[0].Atom is not { } module || !module.StartsWith("Elixir.Nx.Container.", StringComparison.Ordinal)
            || t.Items[1].Kind != EtfKind.List)
            throw new ModelFormatException($"'{(path.Length == 0 ? "(the root)" : path)}' holds {Short(t)}, which is neither an Nx tensor {{:t, ...}} nor a container {{module, [{{key, value}}, ...], meta}}.");
        var fields = t.Items[1].Items;
        for (int i = 0; i < fields.Count; i++)
        {
            var pair = fields[i];
            if (pair.Kind != EtfKind.Tuple || pair.Items.Count != 2)
                throw new ModelFormatException($"field {i} of the container at '{path}' is {Short(pair)}, not a {{key, value}} pair.");
            string key;
            if (module == "Elixir.Nx.Container.Tuple")
            {
                key = i.ToString(CultureInfo.InvariantCulture);
            }
            else
            {
                try
                {
                    key = pair.Items[0].Text ?? throw new ModelFormatException($"a key of the container at '{path}' is {Short(pair.Items[0])}, not a string or an atom.");
                }
                catch (DecoderFallbackException ex)
                {
                    throw new ModelFormatException($"a key of the container at '{path}' is not valid UTF-8.", ex);
                }
            }
            // An Axon.ModelState's parameters live under its data field, named as in the plain map.
            string child = module == "Elixir.Nx.Container.Axon.ModelState" && key == "data" ? path
                : path.Length == 0 ? key : path + "." + key;
            Walk(pair.Items[1], child, entries, names);
        }
    }

    /// <summary><c>{:t, shape, {kind, bits}, names, vectorized_axes, offset, size}</c>.</summary>
    private static NxTensorEntry ReadTensorTerm(EtfTerm t, string name)
    {
        var shapeTerm = t.Items[1];
        if (shapeTerm.Kind != EtfKind.Tuple || shapeTerm.Items.Count > 32)
            throw new ModelFormatException($"tensor '{name}': shape {Short(shapeTerm)} is not a tuple of at most 32 dimensions.");
        var shape = new int[shapeTerm.Items.Count];
        Int128 elements = 1;
        for (int i = 0; i < shape.Length; i++)
        {
            var d = shapeTerm.Items[i];
            if (d.Kind != EtfKind.Integer || d.IsBig || d.Integer is < 0 or > int.MaxValue)
                throw new ModelFormatException($"tensor '{name}': shape {Short(shapeTerm)} holds {Short(d)}, expected integers 0..{int.MaxValue}.");
            shape[i] = (int)d.Integer;
            elements = Int128.Min(elements * shape[i], (Int128)long.MaxValue); // saturates: no shape overflows it
        }
        var type = t.Items[2];
        if (type.Kind != EtfKind.Tuple || type.Items.Count != 2 || type.Items[0].Atom is not { } kind || type.Items[1].Kind != EtfKind.Integer || type.Items[1].Integer is < 1 or > 1024)
            throw new ModelFormatException($"tensor '{name}': type {Short(type)} is not an Nx type {{kind, bits}}.");
        long bits = type.Items[1].Integer;
        string dtype = (kind, bits) switch
        {
            ("f", 32) => "F32",
            ("f", 64) => "F64",
            ("f", 16) => "F16",
            ("bf", 16) => "BF16",
            _ => kind + bits.ToString(CultureInfo.InvariantCulture),
        };
        if (t.Items[3].Kind != EtfKind.List)
            throw new ModelFormatException($"tensor '{name}': axis names {Short(t.Items[3])} are not a list.");
        if (t.Items[4].Kind != EtfKind.List || t.Items[4].Items.Count != 0)
            throw new ModelFormatException($"tensor '{name}' is vectorized ({Short(t.Items[4])}); a weight tensor is not. Devectorize it before saving.");
        long offset = NonNegative(t.Items[5], name, "offset"), size = NonNegative(t.Items[6], name, "size");
        // Bits per element times elements, saturated: compared with the stored size, never overflowing.
        Int128 expected = elements * bits;
        if (expected % 8 != 0 || expected / 8 != size)
            throw new ModelFormatException($"tensor '{name}': size {size} bytes does not match its type {kind}{bits} and shape {Short(shapeTerm)} ({(expected > long.MaxValue ? "more than 2^63 bits" : (expected / 8).ToString(CultureInfo.InvariantCulture) + " bytes")}).");
        if (SafetensorsReader.IsSupported(dtype) && elements > Array.MaxLength)
            throw new ModelFormatException($"tensor '{name}' has {elements} elements, more than a single array can hold ({Array.MaxLength}).");
        return new NxTensorEntry(name, dtype, shape, offset, size);
    }

    private static long NonNegative(EtfTerm v, string name, string field)
        => v.Kind == EtfKind.Integer && !v.IsBig && v.Integer >= 0 ? v.Integer
            : throw new ModelFormatException($"tensor '{name}': {field} {Short(v)} is not a non-negative integer.");

    private static string Short(EtfTerm t)
    {
        string s = t.ToString();
        return s.Length <= 80 ? s : s[..77] + "...";
    }

    /// <summary>Runs a parse whose messages do not name the file yet, and prefixes them with <paramref name="source"/>.</summary>
    private static T Guard<T>(string source, Func<T> parse)
    {
        try
        {
            return parse();
        }
        catch (ModelFormatException ex)
        {
            throw new ModelFormatException($"{source}: {ex.Message}", ex);
        }
    }

    private static void ReadExactly(Stream s, Span<byte> dest, string source, string what)
    {
        if (s.ReadAtLeast(dest, dest.Length, throwOnEndOfStream: false) < dest.Length)
            throw Err(source, $"the file ended while reading {what}. It is truncated.");
    }

    private static ModelFormatException Err(string source, FormattableString message)
        => new(source + ": " + message.ToString(CultureInfo.InvariantCulture));
}

/// <summary>zlib's Adler-32 (RFC 1950), over bytes as they are inflated.</summary>
internal sealed class Adler32
{
    private uint _a = 1, _b;

    public uint Value => (_b << 16) | _a;

    public void Append(ReadOnlySpan<byte> data)
    {
        // 5552 bytes is the most that keep b below 2^32 before the modulo (RFC 1950's NMAX).
        while (data.Length > 0)
        {
            int n = Math.Min(data.Length, 5552);
            foreach (byte x in data[..n])
            {
                _a += x;
                _b += _a;
            }
            _a %= 65521;
            _b %= 65521;
            data = data[n..];
        }
    }
}
