using System.Buffers.Binary;
using DualChunk.Core;
using NUnit.Framework;
using static DualChunk.Tests.Loading.LoadingTestData;

namespace DualChunk.Tests.Loading;

[TestFixture]
public class DcwFileTests
{
    private static string[] Cases() => GoldenCases;

    [TestCaseSource(nameof(Cases))]
    public void GoldenRoundTripIsBitwiseIdentical(string goldenCase)
    {
        using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(GoldenDir(goldenCase), "config.json")));
        int chunk = json.RootElement.GetProperty("chunk_size").GetInt32();
        var source = SafetensorsReader.Read(GoldenModel(goldenCase));
        var config = TensorSetValidator.Infer(source, chunk);
        using var dir = new TempDir();
        string path = dir.File("model.dcw");
        DcwFile.Write(path, config, source);

        var (readConfig, tensors) = DcwFile.Read(path);
        Assert.That(readConfig, Is.EqualTo(config));
        AssertBitwiseEqual(source, tensors);

        var info = DcwFile.Inspect(path);
        Assert.That(info.ChecksumValid, Is.True);
        Assert.That(info.StoredChecksum, Is.EqualTo(info.ComputedChecksum));
        Assert.That(info.Version, Is.EqualTo(DcwFile.CurrentVersion));
        Assert.That(info.Flags, Is.Zero);
        Assert.That(info.Config, Is.EqualTo(config));
        Assert.That(info.FileLength, Is.EqualTo(new FileInfo(path).Length));
        Assert.That(info.DataOffset % 64, Is.Zero);
        Assert.That(info.DataOffset, Is.EqualTo((64 + info.TableByteLength + 63) / 64 * 64));
        Assert.That(info.Tensors.Select(t => t.Name), Is.EqualTo(CheckpointNames.Expected(config).Select(e => e.Name)), "canonical order");
        foreach (var t in info.Tensors)
        {
            Assert.That(t.Offset % 64, Is.Zero, t.Name);
            Assert.That(t.Dtype, Is.EqualTo("F32"));
            Assert.That(t.ByteLength, Is.EqualTo(4L * source[t.Name].Data.Length));
            Assert.That(t.Shape, Is.EqualTo(source[t.Name].Shape));
        }
        Assert.That(info.Tensors[^1].Offset + info.Tensors[^1].ByteLength, Is.EqualTo(info.FileLength));
        Assert.That(Directory.GetFiles(dir.Path), Has.Length.EqualTo(1), "no temp file left behind");

        var (loaderConfig, loaded, format) = WeightsLoader.Load(path, null);
        Assert.That(format, Is.EqualTo(WeightsLoader.DcwFormat));
        Assert.That(loaderConfig, Is.EqualTo(config));
        AssertBitwiseEqual(source, loaded);
        Assert.That(WeightsLoader.Load(path, chunk).Config.ChunkSize, Is.EqualTo(chunk));
        Assert.That(() => WeightsLoader.Load(path, chunk + 1), Throws.ArgumentException.With.Message.Contains($"chunk size {chunk};"));
    }

    [Test]
    public void ChunkSizeIsStoredInTheFile()
    {
        var config = SmallConfig with { };
        var t = MakeTensors(config);
        var other = new ModelConfig(6, 4, 2, 1, 16, 16);
        var a = Dcw(config, t);
        var b = Dcw(other, t);
        Assert.That(InspectDcw(a).Config.ChunkSize, Is.EqualTo(2));
        Assert.That(InspectDcw(b).Config.ChunkSize, Is.EqualTo(16));
        Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(32)), Is.EqualTo(16));
    }

    [Test]
    public void WriterOutputIsDeterministicAndPaddingIsZero()
    {
        var a = SmallDcw();
        var b = SmallDcw();
        Assert.That(a, Is.EqualTo(b));
        var info = InspectDcw(a);
        long at = 64 + info.TableByteLength;
        foreach (var t in info.Tensors)
        {
            Assert.That(a.AsSpan((int)at, (int)(t.Offset - at)).ContainsAnyExcept((byte)0), Is.False);
            at = t.Offset + t.ByteLength;
        }
    }

    [Test]
    public void OverwriteReplacesTheFileAtomically()
    {
        using var dir = new TempDir();
        string path = dir.File("m.dcw");
        DcwFile.Write(path, SmallConfig, MakeTensors(SmallConfig, seed: 1));
        DcwFile.Write(path, SmallConfig, MakeTensors(SmallConfig, seed: 2));
        AssertBitwiseEqual(MakeTensors(SmallConfig, seed: 2), DcwFile.Read(path).Tensors);
        Assert.That(Directory.GetFiles(dir.Path), Has.Length.EqualTo(1));
    }

    [Test]
    public void FailedWriteLeavesTheOldFileAndNoTempFile()
    {
        using var dir = new TempDir();
        string path = dir.File("m.dcw");
        DcwFile.Write(path, SmallConfig, MakeTensors(SmallConfig));
        byte[] before = File.ReadAllBytes(path);
        var bad = MakeTensors(SmallConfig);
        bad.Remove(CheckpointNames.FinalBeta);
        Assert.That(() => DcwFile.Write(path, SmallConfig, bad),
            Throws.TypeOf<ModelFormatException>().With.Message.Contains("final_norm.beta"));
        Assert.That(File.ReadAllBytes(path), Is.EqualTo(before));
        Assert.That(Directory.GetFiles(dir.Path), Has.Length.EqualTo(1));
    }

    [Test]
    public void CorruptedDataIsReportedByInspectAndRejectedByRead()
    {
        var bytes = SmallDcw();
        bytes[^3] ^= 0x10;
        var info = InspectDcw(bytes);
        Assert.That(info.ChecksumValid, Is.False);
        Assert.That(info.StoredChecksum, Is.Not.EqualTo(info.ComputedChecksum));
        Assert.That(() => ReadDcw(bytes), Throws.TypeOf<ModelFormatException>()
            .With.Message.Contains("corrupted")
            .And.Message.Contains(info.StoredChecksum.ToString("x16", null))
            .And.Message.Contains(info.ComputedChecksum.ToString("x16", null)));
    }

    [Test]
    public void Version1FilesStayReadableAsDualChunk()
    {
        // A version-1 file is the version-2 one with version 1 and flags 0 at offset 12 (the architecture's place).
        var v2 = SmallDcw();
        Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(v2.AsSpan(8)), Is.EqualTo(2));
        var v1 = (byte[])v2.Clone();
        BinaryPrimitives.WriteUInt32LittleEndian(v1.AsSpan(8), 1);
        Resign(v1);
        var (config, tensors) = DcwFile.Read(new MemoryStream(v1), "v1.dcw");
        Assert.That(config, Is.EqualTo(SmallConfig));
        Assert.That(config.Architecture, Is.EqualTo(ModelArchitecture.DualChunk));
        AssertBitwiseEqual(ReadDcw(v2), tensors);
        Assert.That(InspectDcw(v1).Version, Is.EqualTo(1));
    }

    [Test]
    public void TheArchitectureIsStoredAndAnUnknownOneIsRefused()
    {
        var decoder = new ModelConfig(6, 4, 2, 1, 2, 16) { Architecture = ModelArchitecture.DecoderOnly };
        var tensors = MakeTensors(decoder);
        var bytes = Dcw(decoder, tensors);
        Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(12)), Is.EqualTo(1));
        var (config, read) = DcwFile.Read(new MemoryStream(bytes), "decoder.dcw");
        Assert.That(config.Architecture, Is.EqualTo(ModelArchitecture.DecoderOnly));
        AssertBitwiseEqual(tensors, read);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(12), 2);
        Resign(bytes);
        Assert.That(() => ReadDcw(bytes), Throws.TypeOf<ModelFormatException>().With.Message.Contains("architecture code 2 is unknown"));
    }

    [Test]
    public void DocumentedExampleMatchesTheWriter()
    {
        // weights-format.md, "Worked example": E=H=4, NH=2, L=1, C=2, F=16, every element 0.5.
        var config = new ModelConfig(4, 4, 2, 1, 2, 16);
        var tensors = CheckpointNames.Expected(config).ToDictionary(
            e => e.Name, e => new CheckpointTensor(e.Name, e.Shape, Enumerable.Repeat(0.5f, e.Shape.Aggregate(1, (a, b) => a * b)).ToArray()));
        var bytes = Dcw(config, tensors);
        string preamble = Convert.ToHexString(bytes.AsSpan(0, 64));
        Assert.That(preamble, Is.EqualTo(ExamplePreambleHex));
        string firstEntry = Convert.ToHexString(bytes.AsSpan(64, 66));
        Assert.That(firstEntry, Is.EqualTo(ExampleFirstEntryHex));
        Assert.That(bytes, Has.Length.EqualTo(ExampleFileLength));
    }

    [Test]
    public void ChecksumIsXxHash3Seed0OfTheFileWithAZeroChecksumField()
    {
        // weights-format.md §5, checked on what our writer and reader do (not on the hashing library): the stored value
        // is XXH3_64(seed 0) of file[0..56) ‖ 00×8 ‖ file[64..end), and Inspect computes the same value.
        foreach (var config in new[] { SmallConfig, new ModelConfig(4, 4, 2, 1, 2, 16) })
        {
            var bytes = Dcw(config, MakeTensors(config));
            var zeroed = (byte[])bytes.Clone();
            zeroed.AsSpan(56, 8).Clear();
            ulong expected = System.IO.Hashing.XxHash3.HashToUInt64(zeroed, seed: 0);
            Assert.That(BitConverter.ToUInt64(bytes, 56), Is.EqualTo(expected), "stored by DcwFile.Write");
            var info = InspectDcw(bytes);
            Assert.That(info.StoredChecksum, Is.EqualTo(expected));
            Assert.That(info.ComputedChecksum, Is.EqualTo(expected), "computed by DcwFile.Inspect");

            // The preamble is covered: a changed chunk size is detected, and accepted only once re-signed per §5.
            bytes[32] ^= 0x01;
            Assert.That(InspectDcw(bytes).ChecksumValid, Is.False);
            Assert.Throws<ModelFormatException>(() => ReadDcw(bytes));
            Resign(bytes);
            Assert.That(InspectDcw(bytes).Config.ChunkSize, Is.EqualTo(config.ChunkSize ^ 1));
            Assert.That(InspectDcw(bytes).ChecksumValid, Is.True);
        }
    }

    internal const string ExamplePreambleHex = "444357454947485402000000000000000400000004000000020000000100000002000000100000000F000000D703000040040000000000007E528B09D2D07B4A";
    internal const string ExampleFirstEntryHex = "220000006475616C5F6368756E6B5F626C6F636B5F315F6174746E5F6E6F726D2E67616D6D6101000000010000000400000040040000000000001000000000000000";
    internal const int ExampleFileLength = 2512;
}
