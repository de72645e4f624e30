using System.Buffers.Binary;
using System.Text.Json;
using DualChunk.Core;
using NUnit.Framework;
using static DualChunk.Tests.Loading.LoadingTestData;

namespace DualChunk.Tests.Loading;

[TestFixture]
public class SafetensorsReaderTests
{
    private static string[] Cases() => GoldenCases;

    [TestCaseSource(nameof(Cases))]
    public void GoldenModelLoadsAndInfersItsConfig(string goldenCase)
    {
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(GoldenDir(goldenCase), "config.json")));
        var root = json.RootElement;
        int chunk = root.GetProperty("chunk_size").GetInt32();

        var tensors = SafetensorsReader.Read(GoldenModel(goldenCase));
        var config = TensorSetValidator.Infer(tensors, chunk);

        Assert.That(config.EmbedDim, Is.EqualTo(root.GetProperty("embed_dim").GetInt32()));
        Assert.That(config.HiddenSize, Is.EqualTo(root.GetProperty("hidden_size").GetInt32()));
        Assert.That(config.NumHeads, Is.EqualTo(root.GetProperty("num_heads").GetInt32()));
        Assert.That(config.NumLayers, Is.EqualTo(root.GetProperty("num_layers").GetInt32()));
        Assert.That(config.ChunkSize, Is.EqualTo(chunk));
        Assert.That(config.FfnSize, Is.EqualTo(4 * config.HiddenSize));

        var (loadedConfig, loaded, format) = WeightsLoader.Load(GoldenModel(goldenCase), chunk);
        Assert.That(format, Is.EqualTo(WeightsLoader.SafetensorsFormat));
        Assert.That(loadedConfig, Is.EqualTo(config));
        AssertBitwiseEqual(tensors, loaded);
    }

    [TestCaseSource(nameof(Cases))]
    public void GoldenIoFileConvertsF64ToNearestFloat(string goldenCase)
    {
        string path = Path.Combine(GoldenDir(goldenCase), "io.safetensors");
        byte[] file = File.ReadAllBytes(path);
        var info = SafetensorsReader.Inspect(path);
        var tensors = SafetensorsReader.Read(path);
        long dataStart = 8 + info.HeaderLength;
        Assert.That(info.Entries.Select(e => e.Dtype), Does.Contain("F64").And.Contain("F32"));
        foreach (var e in info.Entries)
        {
            var t = tensors[e.Name];
            Assert.That(t.Shape.Select(s => (long)s), Is.EqualTo(e.Shape), e.Name);
            var span = t.Data.Span;
            for (int i = 0; i < span.Length; i++)
            {
                int at = (int)(dataStart + e.DataBegin);
                float expected = e.Dtype == "F64"
                    ? (float)BinaryPrimitives.ReadDoubleLittleEndian(file.AsSpan(at + 8 * i))
                    : BinaryPrimitives.ReadSingleLittleEndian(file.AsSpan(at + 4 * i));
                if (BitConverter.SingleToUInt32Bits(span[i]) != BitConverter.SingleToUInt32Bits(expected))
                    Assert.Fail($"{e.Name}[{i}] = {span[i]}, expected {expected}");
            }
        }
    }

    [Test]
    public void InMemoryAndFileReadsAgree()
    {
        string path = GoldenModel("tiny");
        AssertBitwiseEqual(SafetensorsReader.Read(path), SafetensorsReader.Read(File.ReadAllBytes(path), "tiny"));
    }

    [Test]
    public void F16KnownValuesConvert()
    {
        ushort[] bits = [0x3C00, 0xC000, 0x3800, 0x7BFF, 0x0400, 0x0001, 0x3555, 0x0000, 0x8000];
        float[] expected = [1f, -2f, 0.5f, 65504f, 6.1035156e-05f, 5.9604645e-08f, 0.33325195f, 0f, -0f];
        var raw = new byte[2 * bits.Length];
        for (int i = 0; i < bits.Length; i++) BinaryPrimitives.WriteUInt16LittleEndian(raw.AsSpan(2 * i), bits[i]);
        var t = ReadSingle("F16", [bits.Length], raw);
        Assert.That(Bits(t), Is.EqualTo(Bits(expected)));
    }

    [Test]
    public void BF16KnownValuesConvert()
    {
        ushort[] bits = [0x3F80, 0xC000, 0x3EAA, 0x7F7F, 0x0001, 0x8000, 0x4049];
        float[] expected = [1f, -2f, 0.33203125f, 3.3895314e38f, BitConverter.UInt32BitsToSingle(0x00010000), -0f, 3.140625f];
        var raw = new byte[2 * bits.Length];
        for (int i = 0; i < bits.Length; i++) BinaryPrimitives.WriteUInt16LittleEndian(raw.AsSpan(2 * i), bits[i]);
        var t = ReadSingle("BF16", [bits.Length], raw);
        Assert.That(Bits(t), Is.EqualTo(Bits(expected)));
    }

    [Test]
    public void F64RoundsToNearestEven()
    {
        // 3.4028235e38 is above float.MaxValue but below the rounding boundary: it rounds to MaxValue, not infinity
        // (values beyond the boundary are an error: HostileFileTests.F64ValueBeyondFloat32IsRejectedAsAnOverflow).
        double[] values = [0.1, 1 + Math.Pow(2, -24), 1 + 3 * Math.Pow(2, -25), -1e-50, 3.4028235e38, 123.456];
        float[] expected = [0.1f, 1f, 1 + MathF.Pow(2, -23), -0f, float.MaxValue, 123.456f];
        var raw = new byte[8 * values.Length];
        for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteDoubleLittleEndian(raw.AsSpan(8 * i), values[i]);
        var t = ReadSingle("F64", [2, 3], raw);
        Assert.That(t.Shape, Is.EqualTo(new[] { 2, 3 }));
        Assert.That(Bits(t), Is.EqualTo(Bits(expected)));
    }

    [Test]
    public void F32IsCopiedExactly()
    {
        float[] values = [1.5f, -0f, float.Epsilon, float.MaxValue, 3.14159265f, float.NaN];
        var raw = new byte[4 * values.Length];
        for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(raw.AsSpan(4 * i), values[i]);
        Assert.That(Bits(ReadSingle("F32", [3, 2], raw)), Is.EqualTo(Bits(values)));
    }

    [Test]
    public void MixedDtypeModelLoadsThroughTheLoader()
    {
        // A whole model where each tensor uses a different dtype; values chosen to be exact in every dtype.
        var config = SmallConfig;
        var raws = new List<RawTensor>();
        var expected = new Dictionary<string, CheckpointTensor>();
        string[] dtypes = ["F32", "F16", "BF16", "F64"];
        int k = 0;
        foreach (var (name, shape) in CheckpointNames.Expected(config))
        {
            string dtype = dtypes[k++ % 4];
            int n = shape.Aggregate(1, (a, b) => a * b);
            var values = Enumerable.Range(0, n).Select(i => (i % 17 - 8) * 0.125f).ToArray();
            expected[name] = new CheckpointTensor(name, shape, values);
            int size = dtype switch { "F32" => 4, "F64" => 8, _ => 2 };
            var raw = new byte[n * size];
            for (int i = 0; i < n; i++)
            {
                var dst = raw.AsSpan(i * size);
                switch (dtype)
                {
                    case "F32": BinaryPrimitives.WriteSingleLittleEndian(dst, values[i]); break;
                    case "F64": BinaryPrimitives.WriteDoubleLittleEndian(dst, values[i]); break;
                    case "F16": BinaryPrimitives.WriteHalfLittleEndian(dst, (Half)values[i]); break;
                    default: BinaryPrimitives.WriteUInt16LittleEndian(dst, (ushort)(BitConverter.SingleToUInt32Bits(values[i]) >> 16)); break;
                }
            }
            raws.Add(new RawTensor(name, dtype, shape.Select(s => (long)s).ToArray(), raw));
        }
        using var dir = new TempDir();
        string path = dir.File("mixed.safetensors");
        File.WriteAllBytes(path, Safetensors(raws, new Dictionary<string, string> { ["format"] = "pt" }));
        var (loadedConfig, tensors, format) = WeightsLoader.Load(path, 2);
        Assert.That(format, Is.EqualTo("safetensors"));
        Assert.That(loadedConfig, Is.EqualTo(config));
        AssertBitwiseEqual(expected, tensors);
    }

    [TestCase("F16")]
    [TestCase("BF16")]
    [TestCase("F64")]
    public void LargeTensorsConvertAcrossReadChunksFromDisk(string dtype)
    {
        // Larger than the reader's 1 MiB conversion buffer, with an odd element count.
        const int n = 700_001;
        int size = dtype == "F64" ? 8 : 2;
        var raw = new byte[n * size];
        var expected = new float[n];
        for (int i = 0; i < n; i++)
        {
            float v = (i % 255 - 127) / 64f; // at most 7 significant bits: exact in every dtype
            expected[i] = v;
            var dst = raw.AsSpan(i * size);
            if (dtype == "F16") BinaryPrimitives.WriteHalfLittleEndian(dst, (Half)v);
            else if (dtype == "BF16") BinaryPrimitives.WriteUInt16LittleEndian(dst, (ushort)(BitConverter.SingleToUInt32Bits(v) >> 16));
            else BinaryPrimitives.WriteDoubleLittleEndian(dst, v);
        }
        using var dir = new TempDir();
        string path = dir.File("big.safetensors");
        File.WriteAllBytes(path, Safetensors([new RawTensor("small", "F32", [1], BitConverter.GetBytes(1f)), new RawTensor("big", dtype, [n], raw)]));
        var t = SafetensorsReader.Read(path);
        var actual = System.Runtime.InteropServices.MemoryMarshal.Cast<float, uint>(t["big"].Data.Span);
        var want = System.Runtime.InteropServices.MemoryMarshal.Cast<float, uint>(expected.AsSpan());
        int firstDiff = actual.CommonPrefixLength(want);
        Assert.That(firstDiff, Is.EqualTo(n), "first differing element");
        Assert.That(t["small"].Data.Span[0], Is.EqualTo(1f));
    }

    [Test]
    public void InspectReportsEntriesAndMetadataWithoutConverting()
    {
        var file = Safetensors(
            [new RawTensor("a", "I32", [2, 3], new byte[24]), new RawTensor("b", "F16", [4], new byte[8]), new RawTensor("s", "F32", [], new byte[4])],
            new Dictionary<string, string> { ["creator"] = "test" });
        var info = SafetensorsReader.Inspect(file, "x.safetensors");
        Assert.That(info.Metadata["creator"], Is.EqualTo("test"));
        Assert.That(info.Entries.Select(e => e.Name), Is.EqualTo(new[] { "a", "b", "s" }));
        Assert.That(info.Entries[0].Dtype, Is.EqualTo("I32"));
        Assert.That(info.Entries[0].IsSupportedDtype, Is.False);
        Assert.That(info.Entries[0].ByteLength, Is.EqualTo(24));
        Assert.That(info.Entries[1].ShapeText, Is.EqualTo("[4]"));
        Assert.That(info.Entries[2].ElementCount, Is.EqualTo(1));
        Assert.That(info.FileLength, Is.EqualTo(file.Length));
    }

    [Test]
    public void ScalarsAndEmptyTensorsAreAllowed()
    {
        var file = Safetensors([new RawTensor("empty", "F32", [0, 5], []), new RawTensor("scalar", "F32", [], BitConverter.GetBytes(2.5f))]);
        var t = SafetensorsReader.Read(file, "x");
        Assert.That(t["empty"].Data.Length, Is.Zero);
        Assert.That(t["scalar"].Data.Span[0], Is.EqualTo(2.5f));
    }

    [Test]
    public void HeaderPaddedWithSpacesIsAccepted()
    {
        var file = Assemble("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}        ", BitConverter.GetBytes(7f));
        Assert.That(SafetensorsReader.Read(file, "x")["x"].Data.Span[0], Is.EqualTo(7f));
    }

    private static CheckpointTensor ReadSingle(string dtype, long[] shape, byte[] raw)
        => SafetensorsReader.Read(Safetensors([new RawTensor("t", dtype, shape, raw)]), "t.safetensors")["t"];

    private static uint[] Bits(CheckpointTensor t) => t.Data.ToArray().Select(BitConverter.SingleToUInt32Bits).ToArray();

    private static uint[] Bits(float[] v) => v.Select(BitConverter.SingleToUInt32Bits).ToArray();
}
