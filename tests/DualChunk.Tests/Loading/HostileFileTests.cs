using System.Buffers.Binary;
using System.Text;
using DualChunk.Core;
using NUnit.Framework;
using static DualChunk.Tests.Loading.LoadingTestData;

namespace DualChunk.Tests.Loading;

/// <summary>
/// Issue 9's hostile files and inputs: each ends in a typed exception whose message says what is wrong, never an
/// untyped exception, a crash, a hang or a silent wrong value.
/// </summary>
[TestFixture]
public class HostileFileTests
{
    /// <summary>A safetensors file of the small model whose header text has <paramref name="replace"/> applied.</summary>
    private static byte[] SmallSafetensorsWithHeader(Func<string, string> replace)
    {
        var file = SmallSafetensors();
        int headerLength = (int)BinaryPrimitives.ReadUInt64LittleEndian(file);
        string header = replace(Encoding.UTF8.GetString(file, 8, headerLength));
        return Assemble(header, file[(8 + headerLength)..]);
    }

    [TestCase("name")]
    [TestCase("dtype")]
    [TestCase("metadata")]
    public void LoneSurrogateEscapeInTheHeaderIsAFormatError(string where)
    {
        byte[] file = where switch
        {
            "name" => SmallSafetensorsWithHeader(h => h.Replace("\"final_norm.beta\"", "\"final_norm.beta\\ud800\"", StringComparison.Ordinal)),
            "dtype" => SmallSafetensorsWithHeader(h => ReplaceFirst(h, "\"F32\"", "\"\\ud800\"")),
            _ => Safetensors(MakeTensors(SmallConfig).Values.Select(F32), new Dictionary<string, string> { ["k"] = "v" }) is var f
                ? ReplaceHeader(f, h => h.Replace("\"v\"", "\"\\udc00x\"", StringComparison.Ordinal)) : [],
        };
        var ex = Assert.Throws<ModelFormatException>(() => SafetensorsReader.Read(file, "s.safetensors"));
        Assert.That(ex!.Message, Does.Contain("s.safetensors").And.Contain("surrogate"));
        Assert.Throws<ModelFormatException>(() => SafetensorsReader.Inspect(file, "s.safetensors"));
        Assert.Throws<ModelFormatException>(() => LoadFile(file, 2, "s.safetensors"));
    }

    /// <summary>Loads <paramref name="bytes"/> through a file named <paramref name="name"/> (in a temporary folder).</summary>
    private static ModelConfig LoadFile(byte[] bytes, int? chunkSize, string name)
    {
        using var dir = new TempDir();
        string path = dir.File(name);
        File.WriteAllBytes(path, bytes);
        return WeightsLoader.Load(path, chunkSize).Config;
    }

    private static string ReplaceFirst(string text, string what, string with)
    {
        int i = text.IndexOf(what, StringComparison.Ordinal);
        return text[..i] + with + text[(i + what.Length)..];
    }

    private static byte[] ReplaceHeader(byte[] file, Func<string, string> replace)
    {
        int headerLength = (int)BinaryPrimitives.ReadUInt64LittleEndian(file);
        return Assemble(replace(Encoding.UTF8.GetString(file, 8, headerLength)), file[(8 + headerLength)..]);
    }

    [TestCase(2)]
    [TestCase(100_000)]
    [TestCase(10_000_000)]
    public void DcwLayerCountThatTheTableCannotHoldIsRejectedFirst(int layers)
    {
        var dcw = SmallDcw();
        BinaryPrimitives.WriteUInt32LittleEndian(dcw.AsSpan(28), (uint)layers);
        Resign(dcw);
        var ex = Assert.Throws<ModelFormatException>(() => ReadDcw(dcw));
        Assert.That(ex!.Message, Does.Contain("tensor count is 17").And.Contain($"L={layers}").And.Contain($"{13L * layers + 4} tensors"));
        Assert.Throws<ModelFormatException>(() => InspectDcw(dcw), "inspect reports it too, not \"checksum: ok\"");
    }

    [Test]
    public void DcwConfigurationWhoseTensorsCannotExistIsRejected()
    {
        var dcw = SmallDcw();
        BinaryPrimitives.WriteUInt32LittleEndian(dcw.AsSpan(20), int.MaxValue); // H: 3·H overflows an int
        BinaryPrimitives.WriteUInt32LittleEndian(dcw.AsSpan(24), 1);
        Resign(dcw);
        var ex = Assert.Throws<ModelFormatException>(() => ReadDcw(dcw));
        Assert.That(ex!.Message, Does.Contain("configuration is invalid").And.Contain("more than one array can hold"));
    }

    [Test]
    public void DcwShapeWhoseProductOverflowsIsRejected()
    {
        // [65536]^8 = 2^128 elements: a 128-bit product wraps to 0 and matched byteLength 0 before.
        var entries = CheckpointNames.Expected(SmallConfig)
            .Select(e => (e.Name, Shape: e.Shape.Select(d => (uint)d).ToArray(), ByteLength: 4UL * (ulong)e.Shape.Aggregate(1, (a, b) => a * b)))
            .ToList();
        entries[^1] = (entries[^1].Name, Enumerable.Repeat(65536u, 8).ToArray(), 0UL);
        var dcw = RawDcw(SmallConfig, entries);
        var ex = Assert.Throws<ModelFormatException>(() => InspectDcw(dcw));
        Assert.That(ex!.Message, Does.Contain(CheckpointNames.FinalBeta).And.Contain("needs more bytes than the whole"));
        Assert.Throws<ModelFormatException>(() => ReadDcw(dcw));
    }

    [Test]
    public void DcwZeroLengthDimensionIsStructurallyValidButNotAModel()
    {
        var entries = CheckpointNames.Expected(SmallConfig)
            .Select(e => (e.Name, Shape: e.Shape.Select(d => (uint)d).ToArray(), ByteLength: 4UL * (ulong)e.Shape.Aggregate(1, (a, b) => a * b)))
            .ToList();
        entries[^1] = (entries[^1].Name, [0u, 4u], 0UL);
        var dcw = RawDcw(SmallConfig, entries);
        Assert.That(InspectDcw(dcw).Tensors[^1].ByteLength, Is.Zero, "rule 8: a zero dimension is 0 elements, 0 bytes");
        var ex = Assert.Throws<ModelFormatException>(() => ReadDcw(dcw));
        Assert.That(ex!.Message, Does.Contain(CheckpointNames.FinalBeta).And.Contain("[0, 4]").And.Contain("expected [4]"));
    }

    /// <summary>
    /// A .dcw built from a table description (weights-format.md §2–§5), data zero: for entries no writer would produce.
    /// </summary>
    internal static byte[] RawDcw(ModelConfig c, IReadOnlyList<(string Name, uint[] Shape, ulong ByteLength)> entries)
    {
        var table = new MemoryStream();
        var w = new BinaryWriter(table);
        long tableLength = entries.Sum(e => 28L + Encoding.UTF8.GetByteCount(e.Name) + 4L * e.Shape.Length);
        long offset = DcwFile.AlignUp(64 + tableLength), end = offset;
        foreach (var (name, shape, byteLength) in entries)
        {
            offset = DcwFile.AlignUp(end);
            byte[] n = Encoding.UTF8.GetBytes(name);
            w.Write((uint)n.Length);
            w.Write(n);
            w.Write(1u);
            w.Write((uint)shape.Length);
            foreach (uint d in shape) w.Write(d);
            w.Write((ulong)offset);
            w.Write(byteLength);
            end = offset + (long)byteLength;
        }
        var file = new byte[end];
        DcwFile.Magic.CopyTo(file);
        uint[] header = [1, 0, (uint)c.EmbedDim, (uint)c.HiddenSize, (uint)c.NumHeads, (uint)c.NumLayers, (uint)c.ChunkSize, (uint)c.FfnSize, (uint)entries.Count, (uint)tableLength];
        for (int i = 0; i < header.Length; i++) BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(8 + 4 * i), header[i]);
        BinaryPrimitives.WriteUInt64LittleEndian(file.AsSpan(48), (ulong)DcwFile.AlignUp(64 + tableLength));
        table.ToArray().CopyTo(file, 64);
        Resign(file);
        return file;
    }

    [Test]
    public void DcwWithADamagedMagicIsCalledADamagedDcw()
    {
        foreach (int pos in new[] { 0, 3, 7 })
        {
            var dcw = SmallDcw();
            dcw[pos] ^= 0x20;
            var ex = Assert.Throws<ModelFormatException>(() => LoadFile(dcw, null, "m.dcw"));
            Assert.That(ex!.Message, Does.Contain("m.dcw").And.Contain(".dcw file whose magic is damaged"), $"byte {pos}");
        }
        var wholeMagic = SmallDcw();
        "XXXXXXXX"u8.CopyTo(wholeMagic); // all 8 bytes gone: bytes 8..15 (version 1, flags 0) still say .dcw
        Assert.That(() => LoadFile(wholeMagic, null, "m.dcw"),
            Throws.TypeOf<ModelFormatException>().With.Message.Contain("magic is damaged"));
    }

    [Test]
    public void F64ValueBeyondFloat32IsRejectedAsAnOverflow()
    {
        var raw = new byte[8 * 3];
        BinaryPrimitives.WriteDoubleLittleEndian(raw.AsSpan(0), 1.5);
        BinaryPrimitives.WriteDoubleLittleEndian(raw.AsSpan(8), -1e300);
        BinaryPrimitives.WriteDoubleLittleEndian(raw.AsSpan(16), 2.0);
        var file = Safetensors([new RawTensor("w", "F64", [3], raw)]);
        var ex = Assert.Throws<ModelFormatException>(() => SafetensorsReader.Read(file, "f.safetensors"));
        Assert.That(ex!.Message, Does.Contain("'w'").And.Contain("index 1").And.Contain("overflows float32").And.Not.Contain("Infinity"));

        // A genuine F64 infinity is still reported as non-finite by the validator, not as an overflow.
        BinaryPrimitives.WriteDoubleLittleEndian(raw.AsSpan(8), double.PositiveInfinity);
        Assert.That(float.IsPositiveInfinity(SafetensorsReader.Read(Safetensors([new RawTensor("w", "F64", [3], raw)]), "f")["w"].Data.Span[1]));
    }

    [TestCase(1, 4, "Pad the input to 4 positions")]
    [TestCase(5, 4, "e.g. 4 or 8 positions")]
    [TestCase(int.MaxValue, 64, "Trim the input to 2147483584 positions")]
    public void SequenceLengthMessageSuggestsRealLengths(int seqLen, int chunk, string suggestion)
    {
        var config = new ModelConfig(4, 4, 1, 1, chunk, 16);
        var ex = Assert.Throws<ArgumentException>(() => config.ValidateSequenceLength(seqLen));
        Assert.That(ex!.Message, Does.Contain(suggestion).And.Not.Contain("-"), "no duplicate, zero or overflowed suggestion");
    }

    [TestCase(32, 50000, 200000, "attention QKV kernel")]
    [TestCase(32, 26754, 107016, "FFN kernels")]
    [TestCase(3_000_000, 1000, 4000, "input projection kernel")]
    public void ConfigurationWhoseTensorsCannotBeHeldIsRejected(int e, int h, int f, string tensor)
    {
        var ex = Assert.Throws<ArgumentException>(() => _ = new ModelConfig(e, h, 1, 1, 64, f));
        Assert.That(ex!.Message, Does.Contain(tensor).And.Contain("more than one array can hold"));
    }

    [TestCase(0, 4, 1, 1, 4, 16, "embedDim")]
    [TestCase(4, -1, 1, 1, 4, 16, "hiddenSize")]
    [TestCase(4, 4, 0, 1, 4, 16, "numHeads")]
    [TestCase(4, 4, 1, 0, 4, 16, "numLayers")]
    [TestCase(4, 4, 1, 1, 0, 16, "chunkSize")]
    [TestCase(4, 4, 1, 1, 4, 0, "ffnSize")]
    public void ACallersNonPositiveDimensionIsAnArgumentOutOfRange(int e, int h, int nh, int l, int c, int f, string parameter)
    {
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => _ = new ModelConfig(e, h, nh, l, c, f));
        Assert.That((ex!.ParamName, ex.Message.Contains("must be positive", StringComparison.Ordinal)), Is.EqualTo((parameter, true)));
    }

    [Test]
    public void ACallersHeadCountThatDoesNotDivideTheWidthIsAnArgumentErrorButAFilesIsAFormatError()
    {
        var ex = Assert.Throws<ArgumentException>(() => _ = new ModelConfig(4, 6, 4, 1, 4, 16));
        Assert.That((ex!.GetType(), ex.ParamName), Is.EqualTo((typeof(ArgumentException), "numHeads")));
        var dcw = SmallDcw();
        BinaryPrimitives.WriteUInt32LittleEndian(dcw.AsSpan(24), 3); // NH = 3 does not divide H = 4
        Resign(dcw);
        var file = Assert.Throws<ModelFormatException>(() => ReadDcw(dcw));
        Assert.That(file!.Message, Does.Contain("configuration is invalid").And.Contain("num_heads must divide hidden_size 4, got 3"));
    }

    [Test]
    public void ConfigurationCountsMatchTheExpectedList()
    {
        foreach (var c in new[] { SmallConfig, new ModelConfig(4, 4, 2, 3, 2, 16), new ModelConfig(30, 64, 4, 2, 8, 160) })
        {
            var expected = CheckpointNames.Expected(c);
            Assert.That(c.TensorCount, Is.EqualTo(expected.Count), c.ToString());
            Assert.That(c.ParameterCount, Is.EqualTo(expected.Sum(x => (long)x.Shape.Aggregate(1, (a, b) => a * b))), c.ToString());
        }
    }

    [Test]
    public void RandomWeightsTooLargeForThisProcessAreRefusedBeforeAllocating()
    {
        // 4·H = F: 26000² · 3 · 4 bytes per layer × 1000 layers is far beyond any test machine.
        var config = new ModelConfig(26000, 26000, 1, 1000, 64, 26000);
        var ex = Assert.Throws<ArgumentException>(() => RandomWeights.Create(config, 1));
        Assert.That(ex!.Message, Does.Contain("GB").And.Contain("smaller dimensions"));
    }

    [Test]
    public void SafetensorsBlockNumberBeyondTheTensorCountIsRejected()
    {
        var t = MakeTensors(SmallConfig);
        t["dual_chunk_block_99999_attn_norm.gamma"] = new CheckpointTensor("dual_chunk_block_99999_attn_norm.gamma", [4], new float[4]);
        var ex = Assert.Throws<ModelFormatException>(() => LoadFile(Safetensors(t.Values.Select(F32)), 2, "b.safetensors"));
        Assert.That(ex!.Message, Does.Contain("b.safetensors").And.Contain("block 99999"));
    }

    [Test]
    public void SafetensorsNamesAreCheckedBeforeData()
    {
        // Right names are not enough to pass, but wrong names fail without converting the (non-finite) data.
        var raw = new byte[4 * 1000];
        raw.AsSpan().Fill(0xFF); // NaN everywhere
        var file = Safetensors([new RawTensor("not_a_model", "F32", [1000], raw)]);
        var ex = Assert.Throws<ModelFormatException>(() => LoadFile(file, 2, "n.safetensors"));
        Assert.That(ex!.Message, Does.Contain("n.safetensors").And.Contain("final_norm.gamma").And.Not.Contain("non-finite"));
    }
}
