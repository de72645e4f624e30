using System.Buffers.Binary;
using System.Diagnostics;
using DualChunk.Core;
using static DualChunk.Tests.Loading.NxTestFiles;

namespace DualChunk.Tests.Loading;

/// <summary>
/// The .nx / Nx.serialize reader on hostile input (issue 20): truncations at every boundary, lying sizes, zlib bombs,
/// deep nesting, specs that contradict the tensors, other dtypes, and valid files written by a newer OTP (atom tags
/// 118/119), built by taking Edifice's own files apart (<see cref="NxTestFiles"/>). Every bad file is one
/// <see cref="ModelFormatException"/> naming the file; every valid one loads to the same tensors.
/// </summary>
[TestFixture]
public sealed class NxCheckpointTests
{
    private static string Golden(string c, string file) => Path.Combine(TestContext.CurrentContext.TestDirectory, "golden", "edifice-l", c, file);

    private static LoadedWeightsView Load(byte[] file, int? chunk = null)
    {
        var (config, tensors, format) = WeightsLoader.Load(file, chunk, "t.nx");
        return new LoadedWeightsView(config, tensors, format);
    }

    private sealed record LoadedWeightsView(ModelConfig Config, Dictionary<string, CheckpointTensor> Tensors, string Format);

    private static void Rejected(byte[] file, params string[] expect)
    {
        var ex = Assert.Throws<ModelFormatException>(() => Load(file))!;
        Assert.That(ex.Message, Does.StartWith("t.nx: "));
        foreach (var e in expect) Assert.That(ex.Message, Does.Contain(e));
    }

    [TestCase("d1", "model.nx")]
    [TestCase("d1", "model_c6.nx")]
    [TestCase("x1", "model_serialize.nx")]
    [TestCase("x1", "model_nospec.nx")]
    public void EveryTruncationIsOneTypedError(string c, string variant)
    {
        var file = File.ReadAllBytes(Golden(c, variant));
        Assert.That(Load(file, 4).Tensors, Is.Not.Empty);
        var parts = Split(file);
        int meta = file[0] <= 1 && !(file[0] == 'n') ? (int)BinaryPrimitives.ReadUInt32BigEndian(file.AsSpan(1)) : 0;
        // The boundaries of every part, then every 97th byte.
        var cuts = new SortedSet<int> { 0, 1, 4, 5, 6, 5 + meta - 1, 5 + meta, 5 + meta + 11, 5 + meta + 12, file.Length - 1 };
        for (int i = 0; i < file.Length; i += 97) cuts.Add(i);
        foreach (int cut in cuts.Where(x => x >= 0 && x < file.Length))
        {
            var ex = Assert.Throws<ModelFormatException>(() => Load(file[..cut], 4), $"cut at {cut}")!;
            Assert.That(ex.Message, Does.StartWith("t.nx: "), $"cut at {cut}");
        }
        Assert.That(parts.Term.Kind, Is.EqualTo(EtfKind.Tuple));
    }

    [Test]
    public void ValidFilesWrittenByNewerOtpLoad()
    {
        // OTP 26+ writes atoms as SMALL_ATOM_UTF8 (119) or ATOM_UTF8 (118); OTP 25 (the golden files) ATOM_EXT (100).
        foreach (var variant in new[] { "model.nx", "model_c6.nx", "model_serialize.nx" })
        {
            var file = File.ReadAllBytes(Golden("x2", variant));
            var original = Load(file, variant == "model_serialize.nx" ? 8 : null);
            foreach (byte tag in new byte[] { 119, 118, 115, 100 })
            {
                var rewritten = Join(Split(file), tag);
                var loaded = Load(rewritten, variant == "model_serialize.nx" ? 8 : null);
                Assert.That(loaded.Config, Is.EqualTo(original.Config), $"{variant} tag {tag}");
                LoadingTestData.AssertBitwiseEqual(original.Tensors, loaded.Tensors);
            }
        }
    }

    [Test]
    public void LyingSizesAreRefusedBeforeAllocating()
    {
        var file = File.ReadAllBytes(Golden("d1", "model.nx"));
        var meta = (byte[])file.Clone();
        BinaryPrimitives.WriteUInt32BigEndian(meta.AsSpan(1), uint.MaxValue);
        Rejected(meta, "metadata size 4294967295 exceeds");
        int payload = 5 + (int)BinaryPrimitives.ReadUInt32BigEndian(file.AsSpan(1));
        foreach (ulong claim in new[] { ulong.MaxValue, 1UL << 40, (ulong)file.Length })
        {
            var term = (byte[])file.Clone();
            BinaryPrimitives.WriteUInt64BigEndian(term.AsSpan(payload + 4), claim);
            Rejected(term, $"the Nx term claims {claim} bytes");
        }
        // A list, a map and a binary claiming 2^31 elements in a 20-byte term.
        foreach (var lie in new byte[][] { [131, 108, 0x80, 0, 0, 0, 106], [131, 116, 0x7f, 0xff, 0xff, 0xff], [131, 109, 0xff, 0xff, 0xff, 0xf0, 1, 2] })
            Assert.That(() => Etf.Parse(lie, "lie"), Throws.TypeOf<ModelFormatException>().With.Message.Contains("claims"));
        // A tensor whose offset or size lies about the buffer area.
        var parts = Split(file);
        Rejected(Join(parts with { Term = ChangeTensor(parts.Term, "final_norm", "beta", t => WithItem(t, 5, Int(1L << 40))) }), "final_norm");
        Rejected(Join(parts with { Term = ChangeTensor(parts.Term, "final_norm", "beta", t => WithItem(t, 6, Int(12))) }), "final_norm.beta", "does not match its type");
        Rejected(Join(parts with { Buffers = [.. parts.Buffers, 0, 0, 0, 0] }), "unused trailing bytes");
    }

    [Test]
    public void ZlibBombsFailFastHoldingNothing()
    {
        var parts = Split(File.ReadAllBytes(Golden("d1", "model_c6.nx")));
        // Tensors claiming 4 GB in a small compressed file: refused before any data is inflated.
        var clock = Stopwatch.StartNew();
        Rejected(HugeTensorCompressed(), "zlib bomb");
        // A payload that inflates to far more than its tensors claim (256 MB of zeros after them, ~0.3 MB compressed).
        var body = Inflate(File.ReadAllBytes(Golden("d1", "model_c6.nx"))[(5 + (int)BinaryPrimitives.ReadUInt32BigEndian(File.ReadAllBytes(Golden("d1", "model_c6.nx")).AsSpan(1)))..]);
        var zeros = new MemoryStream();
        using (var z = new System.IO.Compression.ZLibStream(zeros, System.IO.Compression.CompressionLevel.Optimal, leaveOpen: true))
        {
            z.Write(body);
            var chunk = new byte[1 << 20];
            for (int i = 0; i < 256; i++) z.Write(chunk);
        }
        var meta = Encode(parts.Metadata!);
        var bomb = new byte[5 + meta.Length + zeros.Length];
        bomb[0] = 1;
        BinaryPrimitives.WriteUInt32BigEndian(bomb.AsSpan(1), (uint)meta.Length);
        meta.CopyTo(bomb, 5);
        zeros.ToArray().CopyTo(bomb, 5 + meta.Length);
        Assert.That(bomb.Length, Is.LessThan(8 << 20));
        Rejected(bomb, "inflates to more than");
        Assert.That(clock.Elapsed, Is.LessThan(TimeSpan.FromSeconds(20)));
        // Damaged zlib data.
        var damaged = Join(parts);
        damaged[^20] ^= 0xFF;
        Assert.That(() => Load(damaged), Throws.TypeOf<ModelFormatException>());
    }

    [Test]
    public void AMillionNestedListsIsAnErrorNotAStackOverflow()
    {
        var term = NestedLists(1_000_000);
        Assert.That(() => Etf.Parse(term, "deep"), Throws.TypeOf<ModelFormatException>().With.Message.Contains("nest deeper than 100"));
        Rejected(CheckpointWithMetadata(term), "the metadata term", "nest deeper");
        var serialize = SerializePayload(term);
        Rejected(serialize, "the Nx term", "nest deeper");
    }

    [TestCase("hidden_size", 64L, "hidden_size = 64", "32")]
    [TestCase("num_heads", 8L, "num_heads = 8", "4")]
    [TestCase("num_layers", 3L, "num_layers = 3", "2")]
    [TestCase("embed_dim", 16L, "embed_dim = 16", "32")]
    [TestCase("chunk_size", 0L, "chunk_size is 0", "1..")]
    [TestCase("chunk_size", 2147483647L, "chunk_size is 2147483647", "1..")]
    public void ASpecContradictingTheTensorsNamesTheFieldAndBothValues(string key, long value, string says, string other)
    {
        var parts = Split(File.ReadAllBytes(Golden("d1", "model.nx")));
        Rejected(Join(parts with { Metadata = WithOption(parts.Metadata!, key, Int(value)) }), says, other);
    }

    [Test]
    public void ASpecNamingAnotherArchitectureIsNamed()
    {
        var parts = Split(File.ReadAllBytes(Golden("d1", "model.nx")));
        var mamba = Rewrite(parts.Metadata!, t => t.IsAtom("dual_chunk_attention") ? Atom("mamba") : null);
        Rejected(Join(parts with { Metadata = mamba }), ":mamba", "cannot run");
        var x = Split(File.ReadAllBytes(Golden("x1", "model.nx")));
        Rejected(Join(x with { Metadata = WithOption(x.Metadata!, "attention_type", Atom("gqa")) }), "attention_type :gqa");
        // The spec says DecoderOnly, the tensors are DualChunk's.
        var swapped = Rewrite(parts.Metadata!, t => t.IsAtom("dual_chunk_attention") ? Atom("decoder_only") : null);
        swapped = Rewrite(swapped, t => t.Kind == EtfKind.List && t.Items.Count > 3 && t.Items[0].Kind == EtfKind.Tuple && t.Items[0].Items[0].IsAtom("obs_size")
            ? EtfTerm.MakeCompound(EtfKind.List, [.. t.Items, EtfTerm.MakeCompound(EtfKind.Tuple, [Atom("attention_type"), Atom("dual_chunk")])]) : null);
        Rejected(Join(parts with { Metadata = swapped }), "architecture = DecoderOnly", "DualChunk");
    }

    [Test]
    public void OtherDtypesConvertAsForSafetensorsAndTheRestAreRefusedByName()
    {
        var file = File.ReadAllBytes(Golden("d1", "model_serialize_data.nx"));
        var parts = Split(file);
        var reference = Load(file, 4).Tensors;
        // Every tensor re-stored as f64, f16, bf16 and big-endian f32: the values are the float32 ones, converted.
        foreach (var (kind, bits) in new[] { ("f", 64), ("f", 16), ("bf", 16) })
        {
            var (term, buffers) = Retype(parts, kind, bits, bigEndian: false);
            var loaded = Load(Join(parts with { Term = term, Buffers = buffers }), 4).Tensors;
            foreach (var (name, t) in reference)
            {
                var expected = t.Data.ToArray().Select(v => bits == 64 ? v : kind == "f" ? (float)(Half)v : BFloat(v)).ToArray();
                Assert.That(loaded[name].Data.ToArray(), Is.EqualTo(expected), $"{kind}{bits} {name}");
            }
        }
        var (be, beBuffers) = Retype(parts, "f", 32, bigEndian: true);
        LoadingTestData.AssertBitwiseEqual(reference, Load(Join(parts with { Term = be, Buffers = beBuffers, Endianness = 1 }), 4).Tensors);
        var ints = Rewrite(parts.Term, t => t.Kind == EtfKind.Tuple && t.Items.Count == 2 && t.Items[0].IsAtom("f") && t.Items[1].Integer == 32
            ? EtfTerm.MakeCompound(EtfKind.Tuple, [Atom("s"), Int(32)]) : null);
        Rejected(Join(parts with { Term = ints }), "Nx type s32", "f32, f64, f16, bf16");
    }

    private static float BFloat(float v)
    {
        uint bits = BitConverter.SingleToUInt32Bits(v);
        uint rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16; // round to nearest even, as the writer below does
        return BitConverter.UInt32BitsToSingle(rounded << 16);
    }

    /// <summary>Every tensor re-encoded as kind/bits (offsets and sizes rewritten), values from the f32 buffers.</summary>
    private static (EtfTerm Term, byte[] Buffers) Retype(Parts p, string kind, int bits, bool bigEndian)
    {
        var output = new MemoryStream();
        var term = Rewrite(p.Term, t =>
        {
            if (t.Kind != EtfKind.Tuple || t.Items.Count != 7 || !t.Items[0].IsAtom("t")) return null;
            long offset = t.Items[5].Integer, size = t.Items[6].Integer;
            long start = output.Length;
            for (long i = offset; i < offset + size; i += 4)
            {
                float v = BinaryPrimitives.ReadSingleLittleEndian(p.Buffers.AsSpan((int)i));
                var b = new byte[bits / 8];
                switch (bits)
                {
                    case 64: if (bigEndian) BinaryPrimitives.WriteDoubleBigEndian(b, v); else BinaryPrimitives.WriteDoubleLittleEndian(b, v); break;
                    case 32: if (bigEndian) BinaryPrimitives.WriteSingleBigEndian(b, v); else BinaryPrimitives.WriteSingleLittleEndian(b, v); break;
                    default:
                        ushort h = kind == "f" ? BitConverter.HalfToUInt16Bits((Half)v) : (ushort)(BitConverter.SingleToUInt32Bits(BFloat(v)) >> 16);
                        BinaryPrimitives.WriteUInt16LittleEndian(b, h);
                        break;
                }
                output.Write(b);
            }
            var type = EtfTerm.MakeCompound(EtfKind.Tuple, [Atom(kind), Int(bits)]);
            return EtfTerm.MakeCompound(EtfKind.Tuple, [t.Items[0], t.Items[1], type, t.Items[3], t.Items[4], Int(start), Int(output.Length - start)]);
        });
        return (term, output.ToArray());
    }

    /// <summary>A 200-byte compressed .nx whose one tensor claims 4 GB.</summary>
    internal static byte[] HugeTensorCompressed()
    {
        var tensor = EtfTerm.MakeCompound(EtfKind.Tuple, [Atom("t"), EtfTerm.MakeCompound(EtfKind.Tuple, [Int(1_000_000_000)]),
            EtfTerm.MakeCompound(EtfKind.Tuple, [Atom("f"), Int(32)]), EtfTerm.MakeCompound(EtfKind.List, [Atom("nil")]),
            EtfTerm.MakeCompound(EtfKind.List, []), Int(0), Int(4_000_000_000)]);
        var map = EtfTerm.MakeCompound(EtfKind.Tuple, [Atom("Elixir.Nx.Container.Map"),
            EtfTerm.MakeCompound(EtfKind.List, [EtfTerm.MakeCompound(EtfKind.Tuple, [EtfTerm.MakeBinary("x"u8.ToArray()), tensor])]), Atom("ok")]);
        return Join(new Parts(Checkpoint: true, Compressed: true, Metadata: null, Term: map, Buffers: []));
    }

    /// <summary>The term with tensor <paramref name="layer"/>.<paramref name="param"/> replaced by <paramref name="change"/>'s result.</summary>
    private static EtfTerm ChangeTensor(EtfTerm root, string layer, string param, Func<EtfTerm, EtfTerm> change)
        => Rewrite(root, t => KeyIs(t, layer)
            ? Pair(t, Rewrite(t.Items[1], u => KeyIs(u, param) ? Pair(u, change(u.Items[1])) : null))
            : null);

    private static bool KeyIs(EtfTerm t, string key) => t.Kind == EtfKind.Tuple && t.Items.Count == 2 && t.Items[0].Kind == EtfKind.Binary
        && t.Items[0].Binary.Span.SequenceEqual(System.Text.Encoding.UTF8.GetBytes(key));

    private static EtfTerm Pair(EtfTerm pair, EtfTerm value) => EtfTerm.MakeCompound(EtfKind.Tuple, [pair.Items[0], value]);

    private static EtfTerm WithItem(EtfTerm t, int index, EtfTerm value)
    {
        var items = t.Items.ToArray();
        items[index] = value;
        return EtfTerm.MakeCompound(t.Kind, items);
    }
}
