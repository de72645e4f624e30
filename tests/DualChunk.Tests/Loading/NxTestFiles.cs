using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using DualChunk.Core;

namespace DualChunk.Tests.Loading;

/// <summary>
/// Test-only writers of Erlang terms and Edifice .nx files: take Edifice's own files apart and put them back
/// together changed (other atom encodings, lying sizes, contradicting specs), so each test changes one thing.
/// </summary>
internal static class NxTestFiles
{
    /// <summary>An Edifice file taken apart: its metadata term (or null), whether compressed, the Nx term and the buffers.</summary>
    public sealed record Parts(bool Checkpoint, bool Compressed, EtfTerm? Metadata, EtfTerm Term, byte[] Buffers, byte Endianness = 0);

    public static Parts Split(byte[] file)
    {
        bool checkpoint = !(file[0] == 'n' && file[1] == 'x');
        EtfTerm? meta = null;
        bool compressed = false;
        byte[] payload = file;
        if (checkpoint)
        {
            compressed = file[0] == 1;
            int metaSize = (int)BinaryPrimitives.ReadUInt32BigEndian(file.AsSpan(1));
            if (metaSize > 0) meta = Etf.Parse(file[5..(5 + metaSize)], "meta");
            payload = file[(5 + metaSize)..];
            if (compressed) payload = Inflate(payload);
        }
        long termSize = (long)BinaryPrimitives.ReadUInt64BigEndian(payload.AsSpan(4));
        var term = Etf.Parse(payload[12..(12 + (int)termSize)], "term");
        return new Parts(checkpoint, compressed, meta, term, payload[(12 + (int)termSize)..], payload[3]);
    }

    public static byte[] Join(Parts p, byte atomTag = 100)
    {
        var term = Encode(p.Term, atomTag);
        var payload = new MemoryStream();
        payload.Write("nx"u8);
        payload.WriteByte(1);
        payload.WriteByte(p.Endianness);
        var size = new byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(size, (ulong)term.Length);
        payload.Write(size);
        payload.Write(term);
        payload.Write(p.Buffers);
        var body = payload.ToArray();
        if (!p.Checkpoint) return body;
        if (p.Compressed) body = Deflate(body);
        var meta = p.Metadata is null ? [] : Encode(p.Metadata, atomTag);
        var file = new byte[5 + meta.Length + body.Length];
        file[0] = (byte)(p.Compressed ? 1 : 0);
        BinaryPrimitives.WriteUInt32BigEndian(file.AsSpan(1), (uint)meta.Length);
        meta.CopyTo(file, 5);
        body.CopyTo(file, 5 + meta.Length);
        return file;
    }

    public static byte[] Inflate(byte[] zlib)
    {
        using var z = new ZLibStream(new MemoryStream(zlib), CompressionMode.Decompress);
        var ms = new MemoryStream();
        z.CopyTo(ms);
        return ms.ToArray();
    }

    public static byte[] Deflate(byte[] data)
    {
        var ms = new MemoryStream();
        using (var z = new ZLibStream(ms, CompressionLevel.Optimal, leaveOpen: true)) z.Write(data);
        return ms.ToArray();
    }

    /// <summary>term_to_binary of <paramref name="t"/> (version byte included), atoms written with <paramref name="atomTag"/>.</summary>
    public static byte[] Encode(EtfTerm t, byte atomTag = 100)
    {
        var ms = new MemoryStream();
        ms.WriteByte(131);
        Write(ms, t, atomTag);
        return ms.ToArray();
    }

    private static void Write(MemoryStream ms, EtfTerm t, byte atomTag)
    {
        var b = new byte[8];
        switch (t.Kind)
        {
            case EtfKind.Atom:
            {
                var name = atomTag is 100 or 115 ? Encoding.Latin1.GetBytes(t.Atom!) : Encoding.UTF8.GetBytes(t.Atom!);
                ms.WriteByte(atomTag);
                if (atomTag is 115 or 119) ms.WriteByte((byte)name.Length);
                else { BinaryPrimitives.WriteUInt16BigEndian(b, (ushort)name.Length); ms.Write(b, 0, 2); }
                ms.Write(name);
                break;
            }
            case EtfKind.Integer when t.Integer is >= 0 and <= 255:
                ms.WriteByte(97);
                ms.WriteByte((byte)t.Integer);
                break;
            case EtfKind.Integer when t.Integer is >= int.MinValue and <= int.MaxValue:
                ms.WriteByte(98);
                BinaryPrimitives.WriteInt32BigEndian(b, (int)t.Integer);
                ms.Write(b, 0, 4);
                break;
            case EtfKind.Integer:
                ms.WriteByte(110);
                ms.WriteByte(8);
                ms.WriteByte((byte)(t.Integer < 0 ? 1 : 0));
                BinaryPrimitives.WriteUInt64LittleEndian(b, (ulong)Math.Abs(t.Integer));
                ms.Write(b, 0, 8);
                break;
            case EtfKind.Float:
                ms.WriteByte(70);
                BinaryPrimitives.WriteDoubleBigEndian(b, t.Float);
                ms.Write(b, 0, 8);
                break;
            case EtfKind.Binary:
                ms.WriteByte(109);
                BinaryPrimitives.WriteUInt32BigEndian(b, (uint)t.Binary.Length);
                ms.Write(b, 0, 4);
                ms.Write(t.Binary.Span);
                break;
            case EtfKind.Tuple:
                ms.WriteByte(104);
                ms.WriteByte((byte)t.Items.Count);
                foreach (var i in t.Items) Write(ms, i, atomTag);
                break;
            case EtfKind.List when t.Items.Count == 0:
                ms.WriteByte(106);
                break;
            case EtfKind.List:
                ms.WriteByte(108);
                BinaryPrimitives.WriteUInt32BigEndian(b, (uint)t.Items.Count);
                ms.Write(b, 0, 4);
                foreach (var i in t.Items) Write(ms, i, atomTag);
                ms.WriteByte(106);
                break;
            default:
                ms.WriteByte(116);
                BinaryPrimitives.WriteUInt32BigEndian(b, (uint)(t.Items.Count / 2));
                ms.Write(b, 0, 4);
                foreach (var i in t.Items) Write(ms, i, atomTag);
                break;
        }
    }

    /// <summary>A copy of <paramref name="t"/> where <paramref name="replace"/> rewrites every subterm it returns non-null for.</summary>
    public static EtfTerm Rewrite(EtfTerm t, Func<EtfTerm, EtfTerm?> replace)
    {
        if (replace(t) is { } r) return r;
        if (t.Kind is not (EtfKind.Tuple or EtfKind.List or EtfKind.Map)) return t;
        return EtfTerm.MakeCompound(t.Kind, [.. t.Items.Select(i => Rewrite(i, replace))]);
    }

    /// <summary>The spec's build option <paramref name="key"/> set to <paramref name="value"/> (the metadata term rewritten).</summary>
    public static EtfTerm WithOption(EtfTerm metadata, string key, EtfTerm value)
        => Rewrite(metadata, t => t.Kind == EtfKind.Tuple && t.Items.Count == 2 && t.Items[0].IsAtom(key) ? EtfTerm.MakeCompound(EtfKind.Tuple, [t.Items[0], value]) : null);

    /// <summary>An Erlang term (version byte included) of <paramref name="depth"/> lists nested one in another.</summary>
    public static byte[] NestedLists(int depth)
    {
        var term = new byte[1 + 5 * depth + 1 + depth];
        term[0] = 131;
        for (int i = 0; i < depth; i++)
        {
            term[1 + 5 * i] = 108;
            BinaryPrimitives.WriteUInt32BigEndian(term.AsSpan(2 + 5 * i), 1);
        }
        term.AsSpan(1 + 5 * depth).Fill(106);
        return term;
    }

    /// <summary>An Nx.serialize payload (format 1, little-endian) of <paramref name="term"/> with no buffers.</summary>
    public static byte[] SerializePayload(byte[] term)
    {
        var file = new byte[12 + term.Length];
        "nx"u8.CopyTo(file);
        file[2] = 1;
        BinaryPrimitives.WriteUInt64BigEndian(file.AsSpan(4), (ulong)term.Length);
        term.CopyTo(file, 12);
        return file;
    }

    /// <summary>An uncompressed checkpoint whose metadata is <paramref name="term"/> (an Erlang term with its version byte), and no payload.</summary>
    public static byte[] CheckpointWithMetadata(byte[] term)
    {
        var file = new byte[5 + term.Length + 12];
        BinaryPrimitives.WriteUInt32BigEndian(file.AsSpan(1), (uint)term.Length);
        term.CopyTo(file, 5);
        return file;
    }

    public static EtfTerm Atom(string name) => EtfTerm.MakeAtom(name);

    public static EtfTerm Int(long v) => EtfTerm.MakeInteger(v);
}
