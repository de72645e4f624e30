using System.Buffers.Binary;
using System.Globalization;
using System.IO.Compression;
using System.Text;

namespace DualChunk.Core;

/// <summary>What an <see cref="EtfTerm"/> is.</summary>
internal enum EtfKind { Atom, Integer, Float, Binary, Tuple, List, Map }

/// <summary>
/// One term of the Erlang external term format, as far as Nx and Edifice write them: atoms, integers, floats,
/// binaries, tuples, proper lists and maps. Strings (STRING_EXT) read as lists of integers.
/// </summary>
internal sealed class EtfTerm
{
    private EtfTerm(EtfKind kind) => Kind = kind;

    public EtfKind Kind { get; }

    /// <summary>An atom's name (every encoding OTP writes), else null.</summary>
    public string? Atom { get; private init; }

    /// <summary>An integer's value; <see cref="IsBig"/> says it did not fit 64 bits (the value is then 0).</summary>
    public long Integer { get; private init; }

    /// <summary>An integer beyond 64 bits, which no field of these files can hold.</summary>
    public bool IsBig { get; private init; }

    public double Float { get; private init; }

    /// <summary>A binary's bytes (a slice of the parsed buffer).</summary>
    public ReadOnlyMemory<byte> Binary { get; private init; }

    /// <summary>A tuple's or list's elements; a map's keys and values, alternating.</summary>
    public IReadOnlyList<EtfTerm> Items { get; private init; } = [];

    public bool IsAtom(string name) => Kind == EtfKind.Atom && Atom == name;

    /// <summary>A binary as UTF-8 text or an atom's name (map keys are either), else null.</summary>
    public string? Text => Kind switch
    {
        EtfKind.Atom => Atom,
        EtfKind.Binary => Etf.Utf8.GetString(Binary.Span),
        _ => null,
    };

    /// <summary>The value of <paramref name="key"/> in a map (an atom or binary key), else null.</summary>
    public EtfTerm? Get(string key)
    {
        if (Kind != EtfKind.Map) return null;
        for (int i = 0; i < Items.Count; i += 2)
        {
            var k = Items[i];
            // Compared as bytes: a key that is not valid UTF-8 is simply not this key.
            if ((k.Kind == EtfKind.Atom && k.Atom == key) || (k.Kind == EtfKind.Binary && k.Binary.Span.SequenceEqual(Encoding.UTF8.GetBytes(key))))
                return Items[i + 1];
        }
        return null;
    }

    /// <summary>The term as Elixir would print it, cut after about 200 characters: for messages and <c>inspect</c>.</summary>
    public override string ToString()
    {
        var sb = new StringBuilder();
        Render(sb, 200);
        return sb.Length > 200 ? sb.ToString(0, 197) + "..." : sb.ToString();
    }

    /// <summary>Appends the term until <paramref name="budget"/> characters are written (so a huge term costs little).</summary>
    private void Render(StringBuilder sb, int budget)
    {
        if (sb.Length > budget) return;
        switch (Kind)
        {
            case EtfKind.Atom: sb.Append(Atom is "true" or "false" or "nil" ? Atom : ":" + Atom); return;
            case EtfKind.Integer: sb.Append(IsBig ? "(an integer beyond 64 bits)" : Integer.ToString(CultureInfo.InvariantCulture)); return;
            case EtfKind.Float: sb.Append(Float.ToString("R", CultureInfo.InvariantCulture)); return;
            case EtfKind.Binary: sb.Append('"').Append(Encoding.UTF8.GetString(Binary.Span[..Math.Min(Binary.Length, budget)])).Append('"'); return;
        }
        sb.Append(Kind switch { EtfKind.Tuple => "{", EtfKind.List => "[", _ => "%{" });
        for (int i = 0; i < Items.Count && sb.Length <= budget; i++)
        {
            if (i > 0) sb.Append(Kind == EtfKind.Map && i % 2 == 1 ? " => " : ", ");
            Items[i].Render(sb, budget);
        }
        sb.Append(Kind switch { EtfKind.Tuple => "}", EtfKind.List => "]", _ => "}" });
    }

    internal static EtfTerm MakeAtom(string name) => new(EtfKind.Atom) { Atom = name };
    internal static EtfTerm MakeInteger(long value, bool big = false) => new(EtfKind.Integer) { Integer = value, IsBig = big };
    internal static EtfTerm MakeFloat(double value) => new(EtfKind.Float) { Float = value };
    internal static EtfTerm MakeBinary(ReadOnlyMemory<byte> bytes) => new(EtfKind.Binary) { Binary = bytes };
    internal static EtfTerm MakeCompound(EtfKind kind, EtfTerm[] items) => new(kind) { Items = items };
}

/// <summary>
/// A reader of the Erlang external term format (<c>:erlang.term_to_binary</c>) for hostile input: every length is
/// checked against the bytes that remain before anything is allocated from it, nesting is bounded by
/// <see cref="MaxDepth"/> (so a million nested lists is an error, not a stack overflow), the number of terms by
/// <see cref="MaxTerms"/>, and a compressed term (tag 80) inflates to at most what it claims and
/// <see cref="MaxTermBytes"/>. Every problem is a <see cref="ModelFormatException"/>.
/// </summary>
internal static class Etf
{
    /// <summary>Deepest nesting accepted. Nx's containers nest about a dozen levels for a model.</summary>
    public const int MaxDepth = 100;

    /// <summary>Most terms in one parse (a model's Nx term has about 20 per tensor).</summary>
    public const int MaxTerms = 2_000_000;

    /// <summary>Largest (inflated) term accepted: far above a model's few kilobytes per tensor.</summary>
    public const int MaxTermBytes = 64 << 20;

    internal static readonly UTF8Encoding Utf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>
    /// Parses one whole term: the version byte 131, then the term (or tag 80 and a zlib-compressed term); nothing may
    /// follow it. <paramref name="what"/> names the term in errors (e.g. "the metadata term").
    /// </summary>
    public static EtfTerm Parse(byte[] bytes, string what)
    {
        if (bytes.Length == 0 || bytes[0] != 131)
            throw new ModelFormatException($"{what} does not start with the Erlang term version byte 131 (0x83){(bytes.Length == 0 ? " (it is empty)" : Inv($" but with 0x{bytes[0]:x2}"))}.");
        if (bytes.Length >= 2 && bytes[1] == 80)
            return Parse(Inflate(bytes, what), what + " (inflated)", start: 0);
        return Parse(bytes, what, start: 1);
    }

    private static EtfTerm Parse(byte[] bytes, string what, int start)
    {
        var reader = new Reader(bytes, start, what);
        var term = reader.Term(depth: 0);
        if (reader.Position != bytes.Length)
            throw new ModelFormatException(Inv($"{what} ends at byte {reader.Position} of {bytes.Length}: {bytes.Length - reader.Position} bytes follow it."));
        return term;
    }

    /// <summary>Tag 80: <c>u32 size</c>, then a zlib stream that must inflate to exactly that many bytes.</summary>
    private static byte[] Inflate(byte[] bytes, string what)
    {
        if (bytes.Length < 6)
            throw new ModelFormatException($"{what} is compressed (tag 80) but ends inside its size field.");
        uint size = BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(2));
        if (size > MaxTermBytes)
            throw new ModelFormatException(Inv($"{what} is compressed and claims {size} bytes inflated, above the limit of {MaxTermBytes}."));
        var output = new byte[size];
        try
        {
            using var zlib = new ZLibStream(new MemoryStream(bytes, 6, bytes.Length - 6, writable: false), CompressionMode.Decompress);
            int got = zlib.ReadAtLeast(output, output.Length, throwOnEndOfStream: false);
            if (got < output.Length)
                throw new ModelFormatException(Inv($"{what} is compressed and claims {size} bytes, but inflates to only {got}."));
            if (zlib.ReadByte() >= 0)
                throw new ModelFormatException(Inv($"{what} is compressed and claims {size} bytes, but inflates to more."));
        }
        catch (InvalidDataException ex)
        {
            throw new ModelFormatException($"{what} is compressed, but its zlib stream is damaged ({ex.Message}).", ex);
        }
        return output;
    }

    private static string Inv(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);

    /// <summary>The cursor over one buffer; every read checks what remains first.</summary>
    private sealed class Reader(byte[] bytes, int start, string what)
    {
        private int _terms;

        public int Position { get; private set; } = start;

        private int Remaining => bytes.Length - Position;

        public EtfTerm Term(int depth)
        {
            if (depth > MaxDepth)
                throw Fail($"terms nest deeper than {MaxDepth} levels");
            if (++_terms > MaxTerms)
                throw Fail($"it holds more than {MaxTerms} terms");
            int at = Position;
            byte tag = U8();
            switch (tag)
            {
                case 97: // SMALL_INTEGER_EXT
                    return EtfTerm.MakeInteger(U8());
                case 98: // INTEGER_EXT
                    return EtfTerm.MakeInteger(BinaryPrimitives.ReadInt32BigEndian(Take(4)));
                case 110: // SMALL_BIG_EXT
                    return Big(U8());
                case 111: // LARGE_BIG_EXT
                    return Big(U32());
                case 70: // NEW_FLOAT_EXT
                    return EtfTerm.MakeFloat(BinaryPrimitives.ReadDoubleBigEndian(Take(8)));
                case 99: // FLOAT_EXT: 31 bytes of printf "%.20e" text
                {
                    string text = Encoding.ASCII.GetString(Take(31)).TrimEnd('\0');
                    if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double v))
                        throw Fail($"the float at byte {at} is not a number");
                    return EtfTerm.MakeFloat(v);
                }
                case 100: // ATOM_EXT (latin1)
                    return EtfTerm.MakeAtom(Encoding.Latin1.GetString(Take(U16())));
                case 115: // SMALL_ATOM_EXT (latin1)
                    return EtfTerm.MakeAtom(Encoding.Latin1.GetString(Take(U8())));
                case 118: // ATOM_UTF8_EXT (OTP 26 and later)
                    return EtfTerm.MakeAtom(Utf8Text(U16(), at));
                case 119: // SMALL_ATOM_UTF8_EXT (OTP 26 and later)
                    return EtfTerm.MakeAtom(Utf8Text(U8(), at));
                case 109: // BINARY_EXT
                {
                    int length = Length(U32(), 1, "binary");
                    var slice = new ReadOnlyMemory<byte>(bytes, Position, length);
                    Position += length;
                    return EtfTerm.MakeBinary(slice);
                }
                case 104: // SMALL_TUPLE_EXT
                    return Compound(EtfKind.Tuple, U8(), depth);
                case 105: // LARGE_TUPLE_EXT
                    return Compound(EtfKind.Tuple, U32(), depth);
                case 106: // NIL_EXT
                    return EtfTerm.MakeCompound(EtfKind.List, []);
                case 107: // STRING_EXT: a list of bytes
                {
                    var chars = Take(U16());
                    var items = new EtfTerm[chars.Length];
                    for (int i = 0; i < items.Length; i++) items[i] = EtfTerm.MakeInteger(chars[i]);
                    return EtfTerm.MakeCompound(EtfKind.List, items);
                }
                case 108: // LIST_EXT: elements, then the tail
                {
                    var list = Compound(EtfKind.List, U32(), depth);
                    if (U8() != 106)
                        throw Fail($"the list at byte {at} is improper (its tail is not []), which Nx never writes");
                    return list;
                }
                case 116: // MAP_EXT
                {
                    uint pairs = U32();
                    return Compound(EtfKind.Map, pairs > int.MaxValue / 2 ? uint.MaxValue : 2 * pairs, depth);
                }
                case 80:
                    throw Fail($"a compressed term (tag 80) sits inside another term at byte {at}; only a whole term may be compressed");
                default:
                    throw Fail($"tag {tag} at byte {at} is not a term Nx or Edifice writes (atoms, integers, floats, binaries, tuples, lists and maps)");
            }
        }

        private EtfTerm Compound(EtfKind kind, uint count, int depth)
        {
            // Every element takes at least one byte: a count above what remains is a lie, caught before allocating.
            var items = new EtfTerm[Length(count, 1, kind.ToString().ToLowerInvariant())];
            for (int i = 0; i < items.Length; i++) items[i] = Term(depth + 1);
            return EtfTerm.MakeCompound(kind, items);
        }

        /// <summary>A bignum: sign byte, then <paramref name="digits"/> little-endian bytes.</summary>
        private EtfTerm Big(uint digits)
        {
            int n = Length(digits, 1, "integer");
            bool negative = U8() != 0;
            var d = Take(n);
            int used = n;
            while (used > 0 && d[used - 1] == 0) used--;
            if (used > 8 || (used == 8 && d[7] >= 0x80))
                return EtfTerm.MakeInteger(0, big: true);
            ulong value = 0;
            for (int i = used - 1; i >= 0; i--) value = (value << 8) | d[i];
            return EtfTerm.MakeInteger(negative ? -(long)value : (long)value);
        }

        private string Utf8Text(int length, int at)
        {
            try
            {
                return Utf8.GetString(Take(length));
            }
            catch (DecoderFallbackException ex)
            {
                throw new ModelFormatException($"{what}: the atom at byte {at} is not valid UTF-8.", ex);
            }
        }

        /// <summary><paramref name="count"/> items of at least <paramref name="minSize"/> bytes must fit in what remains.</summary>
        private int Length(uint count, int minSize, string kind)
        {
            if ((ulong)count * (ulong)minSize > (ulong)Remaining)
                throw Fail($"a {kind} at byte {Position} claims {count} elements, but only {Remaining} bytes remain");
            return (int)count;
        }

        private ReadOnlySpan<byte> Take(int n)
        {
            if (n > Remaining)
                throw Fail($"it ends at byte {bytes.Length} inside a term that needs {n} bytes at byte {Position}");
            Position += n;
            return bytes.AsSpan(Position - n, n);
        }

        private byte U8() => Take(1)[0];
        private ushort U16() => BinaryPrimitives.ReadUInt16BigEndian(Take(2));
        private uint U32() => BinaryPrimitives.ReadUInt32BigEndian(Take(4));

        private ModelFormatException Fail(FormattableString problem)
            => new($"{what} is not a valid Erlang term: {problem.ToString(CultureInfo.InvariantCulture)}.");
    }
}
