using System.Buffers.Binary;
using System.Text;
using DualChunk.Core;
using NUnit.Framework;
using static DualChunk.Tests.Loading.LoadingTestData;

namespace DualChunk.Tests.Loading;

/// <summary>Every class of bad input ends in an exception whose message names the problem.</summary>
[TestFixture]
public class BadInputTests
{
    private static Dictionary<string, CheckpointTensor> Good() => MakeTensors(SmallConfig);

    private static void ExpectFormatError(TestDelegateLike action, params string[] fragments)
    {
        var ex = Assert.Throws<ModelFormatException>(() => action());
        foreach (var f in fragments) Assert.That(ex!.Message, Does.Contain(f));
    }

    internal delegate object? TestDelegateLike();

    private static Dictionary<string, CheckpointTensor> ReadSt(byte[] file) => SafetensorsReader.Read(file, "bad.safetensors");

    private static ModelConfig ReadAndInfer(byte[] file) => TensorSetValidator.Infer(ReadSt(file), 2);

    // ---------- tensor-set problems (safetensors, .dcw writer, .dcw reader) ----------

    [Test]
    public void MissingTensor()
    {
        var t = Good();
        t.Remove(CheckpointNames.Block(1, BlockTensor.UpBias));
        var file = Safetensors(t.Values.Select(F32));
        ExpectFormatError(() => ReadAndInfer(file), "Missing tensor", "dual_chunk_block_1_ffn_up.bias");
        ExpectFormatError(() => { DcwFile.Write(Path.Combine(Path.GetTempPath(), "never-" + Guid.NewGuid() + ".dcw"), SmallConfig, t); return null; },
            "Missing tensor", "dual_chunk_block_1_ffn_up.bias");
    }

    [Test]
    public void ExtraTensor()
    {
        var t = Good();
        t["dual_chunk_block_1_attn_extra.kernel"] = new CheckpointTensor("dual_chunk_block_1_attn_extra.kernel", [2], [1f, 2f]);
        var file = Safetensors(t.Values.Select(F32));
        ExpectFormatError(() => ReadAndInfer(file), "Unexpected tensor", "dual_chunk_block_1_attn_extra.kernel");
    }

    [Test]
    public void MisShapedTensor()
    {
        var t = Good();
        string name = CheckpointNames.Block(1, BlockTensor.OutKernel);
        t[name] = new CheckpointTensor(name, [2, 8], new float[16]);
        var file = Safetensors(t.Values.Select(F32));
        ExpectFormatError(() => ReadAndInfer(file), name, "[2, 8]", "expected [4, 4]");
    }

    [TestCase(float.NaN)]
    [TestCase(float.PositiveInfinity)]
    [TestCase(float.NegativeInfinity)]
    public void NonFiniteValue(float bad)
    {
        var t = Good();
        string name = CheckpointNames.Block(1, BlockTensor.QkvBias);
        var data = t[name].Data.ToArray();
        data[5] = bad;
        t[name] = new CheckpointTensor(name, [12], data);
        var file = Safetensors(t.Values.Select(F32));
        ExpectFormatError(() => ReadAndInfer(file), name, "non-finite", "index 5");
        using var dir = new TempDir();
        ExpectFormatError(() => { DcwFile.Write(dir.File("m.dcw"), SmallConfig, t); return null; }, name, "non-finite");
        Assert.That(Directory.GetFiles(dir.Path), Is.Empty, "a rejected write creates no file");

        // A hostile .dcw with a valid checksum and a NaN inside is caught by the final validation.
        var dcw = SmallDcw();
        var entry = InspectDcw(dcw).Tensors.Single(e => e.Name == name);
        BinaryPrimitives.WriteSingleLittleEndian(dcw.AsSpan((int)entry.Offset + 20), bad);
        Resign(dcw);
        ExpectFormatError(() => ReadDcw(dcw), "test.dcw", name, "non-finite");
    }

    [Test]
    public void F64OverflowToInfinityIsCaughtByValidation()
    {
        var t = Good();
        var raws = t.Values.Select(F32).ToList();
        int i = raws.FindIndex(r => r.Name == CheckpointNames.FinalBeta);
        var raw = new byte[8 * 4];
        BinaryPrimitives.WriteDoubleLittleEndian(raw, 1e300);
        raws[i] = raws[i] with { Dtype = "F64", Data = raw };
        ExpectFormatError(() => ReadAndInfer(Safetensors(raws)), CheckpointNames.FinalBeta, "1E+300", "overflows float32");
    }

    // ---------- dtypes ----------

    [TestCase("I32", 4)]
    [TestCase("U8", 1)]
    [TestCase("F8_E4M3", 1)]
    [TestCase("I64", 8)]
    [TestCase("BOOL", 1)]
    public void UnsupportedDtype(string dtype, int size)
    {
        var file = Safetensors([new RawTensor("weights.x", dtype, [3], new byte[3 * size])]);
        ExpectFormatError(() => ReadSt(file), "weights.x", dtype, "F32, F16, BF16, F64");
        Assert.That(SafetensorsReader.Inspect(file, "x").Entries[0].Dtype, Is.EqualTo(dtype), "Inspect still reports it");
    }

    [Test]
    public void UnknownDtypeString()
    {
        var file = Safetensors([new RawTensor("q", "Q4_K", [3], new byte[3])]);
        ExpectFormatError(() => ReadSt(file), "'q'", "unknown dtype 'Q4_K'", "F32, F16, BF16, F64");
    }

    [Test]
    public void DcwUnknownDtypeCode()
    {
        var dcw = SmallDcw();
        int nameLen = BinaryPrimitives.ReadInt32LittleEndian(dcw.AsSpan(64));
        BinaryPrimitives.WriteUInt32LittleEndian(dcw.AsSpan(64 + 4 + nameLen), 7);
        Resign(dcw);
        ExpectFormatError(() => ReadDcw(dcw), "dtype code 7", "F32");
    }

    // ---------- truncation ----------

    [Test]
    public void TruncatedSafetensorsAtEveryOffset()
    {
        var file = SmallSafetensors();
        int checkedCount = 0;
        for (int len = 0; len < file.Length; len++)
        {
            var cut = file.AsSpan(0, len).ToArray();
            var ex = Assert.Throws<ModelFormatException>(() => ReadSt(cut), $"length {len}");
            Assert.That(ex!.Message, Does.Contain("bad.safetensors"));
            checkedCount++;
        }
        Assert.That(checkedCount, Is.EqualTo(file.Length));
    }

    [Test]
    public void TruncatedSafetensorsFileOnDisk()
    {
        var file = SmallSafetensors();
        using var dir = new TempDir();
        string path = dir.File("cut.safetensors");
        foreach (int len in new[] { 0, 4, 8, 9, 100, file.Length / 2, file.Length - 1 })
        {
            File.WriteAllBytes(path, file.AsSpan(0, len).ToArray());
            Assert.That(() => SafetensorsReader.Read(path), Throws.TypeOf<ModelFormatException>().With.Message.Contains(path), $"length {len}");
            Assert.That(() => WeightsLoader.Load(path, 2), Throws.TypeOf<ModelFormatException>(), $"length {len}");
        }
    }

    [Test]
    public void TruncatedDcwAtEveryOffset()
    {
        var dcw = SmallDcw();
        var info = InspectDcw(dcw);
        Assert.That(info.TableByteLength, Is.GreaterThan(100), "the sweep covers preamble, table, padding and data");
        for (int len = 0; len < dcw.Length; len++)
        {
            var cut = dcw.AsSpan(0, len).ToArray();
            Assert.Throws<ModelFormatException>(() => ReadDcw(cut), $"length {len}");
            Assert.Throws<ModelFormatException>(() => InspectDcw(cut), $"length {len}");
        }
        using var dir = new TempDir();
        string path = dir.File("cut.dcw");
        foreach (long len in new[] { 8L, 63, 64, 100, info.DataOffset, info.FileLength - 1 })
        {
            File.WriteAllBytes(path, dcw.AsSpan(0, (int)len).ToArray());
            Assert.That(() => DcwFile.Read(path), Throws.TypeOf<ModelFormatException>().With.Message.Contains(path), $"length {len}");
            Assert.That(() => WeightsLoader.Load(path, null), Throws.TypeOf<ModelFormatException>(), $"length {len}");
        }
    }

    [Test]
    public void DcwWithAppendedBytes()
    {
        var dcw = SmallDcw().Concat(new byte[64]).ToArray();
        Resign(dcw);
        ExpectFormatError(() => ReadDcw(dcw), "extra bytes were appended");
    }

    // ---------- corruption ----------

    [Test]
    public void EveryFlippedByteOfADcwIsDetected()
    {
        var dcw = SmallDcw();
        var rng = new Random(7);
        for (int pos = 0; pos < dcw.Length; pos++)
        {
            var bad = (byte[])dcw.Clone();
            bad[pos] ^= (byte)(1 << rng.Next(8));
            Assert.Throws<ModelFormatException>(() => ReadDcw(bad), $"flip at {pos}");
            // Inspect reports checksum damage without throwing, and structural damage throws: one of the two, always
            // (any other exception, or a report of a valid checksum, fails).
            bool reported;
            try
            {
                reported = !InspectDcw(bad).ChecksumValid;
            }
            catch (ModelFormatException)
            {
                reported = true;
            }
            Assert.That(reported, Is.True, $"flip at {pos}: inspect neither threw ModelFormatException nor reported a bad checksum");
        }
    }

    [Test]
    public void FlippedDataByteSaysCorrupted()
    {
        var dcw = SmallDcw();
        dcw[InspectDcw(dcw).Tensors[3].Offset + 1] ^= 0x01;
        ExpectFormatError(() => ReadDcw(dcw), "test.dcw", "corrupted", "checksum");
    }

    [Test]
    public void NonZeroPaddingIsRejectedByReadAndReportedByInspect()
    {
        var dcw = SmallDcw();
        var info = InspectDcw(dcw);
        Assert.That(info.PaddingProblem, Is.Null);
        dcw[info.Tensors[0].Offset + info.Tensors[0].ByteLength] = 0xAA; // first padding byte after tensor 0
        Resign(dcw);
        var bad = InspectDcw(dcw);
        Assert.That(bad.ChecksumValid, Is.True);
        Assert.That(bad.PaddingProblem, Does.Contain("not all zero"));
        ExpectFormatError(() => ReadDcw(dcw), "padding", "not all zero");
    }

    [Test]
    public void FlippedChunkSizeIsDetected()
    {
        // C is not reflected in any tensor shape: only the checksum (which covers the preamble) catches it.
        var dcw = SmallDcw();
        dcw[32] ^= 0x04;
        ExpectFormatError(() => ReadDcw(dcw), "corrupted");
    }

    // ---------- magic, version, flags, config ----------

    [Test]
    public void WrongMagic()
    {
        var dcw = SmallDcw();
        dcw[3] = (byte)'X';
        ExpectFormatError(() => ReadDcw(dcw), "wrong magic", "DCWEIGHT", "not a .dcw file");
    }

    [TestCase(3u)]
    [TestCase(0u)]
    [TestCase(0xFFFFFFFFu)]
    public void UnsupportedVersion(uint version)
    {
        var dcw = SmallDcw();
        BinaryPrimitives.WriteUInt32LittleEndian(dcw.AsSpan(8), version);
        Resign(dcw);
        ExpectFormatError(() => ReadDcw(dcw), $"format version {version} is not supported; this build reads versions 1 and 2");
        ExpectFormatError(() => InspectDcw(dcw), $"format version {version} is not supported");
    }

    [Test]
    public void NonZeroFlags()
    {
        var dcw = SmallDcw();
        dcw[8] = 1; // version 1: offset 12 holds flags, which must be 0
        dcw[12] = 1;
        Resign(dcw);
        ExpectFormatError(() => ReadDcw(dcw), "flags");
    }

    [TestCase(16, 0u, "embed_dim")]
    [TestCase(20, 0x80000000u, "hidden_size")]
    [TestCase(24, 3u, "num_heads")]
    [TestCase(32, 0u, "chunk_size")]
    [TestCase(36, 0u, "ffn_size")]
    public void InvalidStoredConfig(int offset, uint value, string field)
    {
        var dcw = SmallDcw();
        BinaryPrimitives.WriteUInt32LittleEndian(dcw.AsSpan(offset), value);
        Resign(dcw);
        ExpectFormatError(() => ReadDcw(dcw), "test.dcw", field);
    }

    [Test]
    public void StoredConfigDisagreeingWithTensors()
    {
        var dcw = SmallDcw();
        BinaryPrimitives.WriteUInt32LittleEndian(dcw.AsSpan(36), 8); // F = 8 but ffn_up is [4, 16]
        Resign(dcw);
        ExpectFormatError(() => ReadDcw(dcw), "test.dcw", "dual_chunk_block_1_ffn_up.kernel", "[4, 8]");
    }

    // ---------- safetensors header structure ----------

    [TestCase(ulong.MaxValue)]
    [TestCase(0x8000000000000005UL)]
    [TestCase((ulong)long.MaxValue)]
    [TestCase(100_000_001UL)]
    [TestCase(0UL)]
    [TestCase(1UL)]
    public void HeaderLengthOverflow(ulong headerLength)
    {
        var file = SmallSafetensors();
        BinaryPrimitives.WriteUInt64LittleEndian(file, headerLength);
        ExpectFormatError(() => ReadSt(file), "bad.safetensors", "header length");
    }

    [Test]
    public void HeaderLengthJustPastTheFile()
    {
        var file = SmallSafetensors();
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)file.Length - 7);
        ExpectFormatError(() => ReadSt(file), "header length", "exceeds");
    }

    [TestCase("[9223372036854775807]", "exceeds the supported maximum")]
    [TestCase("[2147483648]", "exceeds the supported maximum")]
    [TestCase("[2147483647,2147483647,2147483647,2147483647,2147483647]", "more elements")]
    [TestCase("[65536,65536,65536,65536,0,65536]", "data_offsets")]
    [TestCase("[-1]", "non-negative integers")]
    [TestCase("[1.5]", "non-negative integers")]
    [TestCase("[1e3]", "non-negative integers")]
    [TestCase("[\"4\"]", "non-negative integers")]
    [TestCase("[99999999999999999999999]", "non-negative integers")]
    [TestCase("4", "shape")]
    public void HugeOrInvalidShape(string shape, string fragment)
    {
        var file = Assemble($"{{\"w\":{{\"dtype\":\"F32\",\"shape\":{shape},\"data_offsets\":[0,16]}}}}", new byte[16]);
        ExpectFormatError(() => ReadSt(file), "'w'", fragment);
    }

    [TestCase("[16,0]", "out of order")]
    [TestCase("[0,32]", "past the end")]
    [TestCase("[0,9223372036854775807]", "past the end")]
    [TestCase("[0,12]", "needs 16")]
    [TestCase("[4,20]", "past the end")]
    [TestCase("[-4,12]", "non-negative")]
    [TestCase("[0]", "data_offsets")]
    [TestCase("[0,16,32]", "data_offsets")]
    [TestCase("null", "data_offsets")]
    public void BadOffsets(string offsets, string fragment)
    {
        var file = Assemble($"{{\"w\":{{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":{offsets}}}}}", new byte[16]);
        ExpectFormatError(() => ReadSt(file), "'w'", fragment);
    }

    [Test]
    public void OverlappingOffsets()
    {
        var file = Assemble("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", new byte[24]);
        ExpectFormatError(() => ReadSt(file), "'b'", "overlap");
        var same = Assemble("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", new byte[16]);
        ExpectFormatError(() => ReadSt(same), "overlap");
    }

    [Test]
    public void GapsAndTrailingBytesAreRejected()
    {
        var gap = Assemble("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", new byte[12]);
        ExpectFormatError(() => ReadSt(gap), "'b'", "gap");
        var trailing = Assemble("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", new byte[9]);
        ExpectFormatError(() => ReadSt(trailing), "5 unused trailing bytes");
    }

    [Test]
    public void DuplicateKeys()
    {
        var file = Assemble("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", new byte[8]);
        ExpectFormatError(() => ReadSt(file), "'a'", "more than once");
    }

    [TestCase("[1,2]", "JSON Array")]
    [TestCase("{\"a\":5}", "'a'")]
    [TestCase("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", "dtype")]
    [TestCase("{\"a\":{\"dtype\":3,\"shape\":[1],\"data_offsets\":[0,4]}}", "dtype")]
    [TestCase("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", "shape")]
    [TestCase("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", "data_offsets")]
    [TestCase("{\"__metadata__\":[1]}", "__metadata__")]
    [TestCase("{\"__metadata__\":{\"k\":1}}", "__metadata__")]
    [TestCase("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", "not valid UTF-8 JSON")]
    [TestCase("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}\u0000", "not valid UTF-8 JSON")]
    [TestCase("{} {}", "not valid UTF-8 JSON")]
    [TestCase("", "header length is 0")]
    public void MalformedHeader(string header, string fragment)
    {
        ExpectFormatError(() => ReadSt(Assemble(header, new byte[4])), "bad.safetensors", fragment);
    }

    [Test]
    public void InvalidUtf8InHeader()
    {
        var header = Encoding.UTF8.GetBytes("{\"a\xff\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}");
        header[3] = 0xFF;
        ExpectFormatError(() => ReadSt(Assemble(header, new byte[4])), "not valid UTF-8 JSON");
    }

    [Test]
    public void DeeplyNestedHeaderIsRejectedQuickly()
    {
        string deep = "{\"a\":" + new string('[', 100_000) + new string(']', 100_000) + "}";
        ExpectFormatError(() => ReadSt(Assemble(deep, [])), "not valid UTF-8 JSON");
    }

    // ---------- .dcw table structure (with a valid checksum, as a hostile writer would produce) ----------

    [Test]
    public void DcwOverlappingOrMisalignedOffsets()
    {
        var clean = SmallDcw();
        var info = InspectDcw(clean);
        // Locate the offset field of entry 1 in the table.
        int pos = 64;
        int offsetField = -1;
        for (int i = 0; i < 2; i++)
        {
            int nameLen = BinaryPrimitives.ReadInt32LittleEndian(clean.AsSpan(pos));
            int rank = BinaryPrimitives.ReadInt32LittleEndian(clean.AsSpan(pos + 4 + nameLen + 4));
            offsetField = pos + 4 + nameLen + 8 + 4 * rank;
            pos = offsetField + 16;
        }
        Assert.That(BinaryPrimitives.ReadUInt64LittleEndian(clean.AsSpan(offsetField)), Is.EqualTo((ulong)info.Tensors[1].Offset));
        foreach (ulong bad in new[] { (ulong)info.Tensors[0].Offset, (ulong)info.Tensors[1].Offset + 4, (ulong)info.Tensors[1].Offset + 64,
                     (ulong)info.FileLength, ulong.MaxValue - 3, 0UL })
        {
            var dcw = (byte[])clean.Clone();
            BinaryPrimitives.WriteUInt64LittleEndian(dcw.AsSpan(offsetField), bad);
            Resign(dcw);
            ExpectFormatError(() => ReadDcw(dcw), info.Tensors[1].Name, "data offset");
        }
        foreach (ulong bad in new[] { 0UL, 8UL, ulong.MaxValue, (ulong)info.FileLength })
        {
            var dcw = (byte[])clean.Clone();
            BinaryPrimitives.WriteUInt64LittleEndian(dcw.AsSpan(offsetField + 8), bad);
            Resign(dcw);
            ExpectFormatError(() => ReadDcw(dcw), info.Tensors[1].Name, "byte length");
        }
    }

    [TestCase(40, 0u, "tensor count")]
    [TestCase(40, 0xFFFFFFFFu, "tensor count")]
    [TestCase(40, 14u, "tensor count is 14, but the stored configuration")]
    [TestCase(44, 0xFFFFFFFFu, "tensor table length")]
    [TestCase(44, 10u, "tensor table length")]
    [TestCase(44, 1000u, "data offset")]
    [TestCase(48, 0u, "data offset")]
    public void DcwBadPreambleCounts(int offset, uint value, string fragment)
    {
        var dcw = SmallDcw();
        if (offset == 48) BinaryPrimitives.WriteUInt64LittleEndian(dcw.AsSpan(offset), value);
        else BinaryPrimitives.WriteUInt32LittleEndian(dcw.AsSpan(offset), value);
        Resign(dcw);
        ExpectFormatError(() => ReadDcw(dcw), "test.dcw", fragment);
    }

    [Test]
    public void DcwHugeShapeInTable()
    {
        var dcw = SmallDcw();
        int nameLen = BinaryPrimitives.ReadInt32LittleEndian(dcw.AsSpan(64));
        int dimField = 64 + 4 + nameLen + 8; // first entry is rank 2 (input_projection.kernel)
        BinaryPrimitives.WriteUInt32LittleEndian(dcw.AsSpan(dimField), 0x7FFFFFFF);
        BinaryPrimitives.WriteUInt32LittleEndian(dcw.AsSpan(dimField + 4), 0x7FFFFFFF);
        Resign(dcw);
        ExpectFormatError(() => ReadDcw(dcw), CheckpointNames.InputKernel, "needs more bytes than the whole");
        BinaryPrimitives.WriteUInt32LittleEndian(dcw.AsSpan(dimField), 0x80000000);
        Resign(dcw);
        ExpectFormatError(() => ReadDcw(dcw), CheckpointNames.InputKernel, "shape dimension");
        BinaryPrimitives.WriteUInt32LittleEndian(dcw.AsSpan(64 + 4 + nameLen + 4), 1000);
        Resign(dcw);
        ExpectFormatError(() => ReadDcw(dcw), CheckpointNames.InputKernel, "rank 1000");
    }

    [Test]
    public void DcwBadNames()
    {
        var dcw = SmallDcw();
        BinaryPrimitives.WriteUInt32LittleEndian(dcw.AsSpan(64), 0x7FFFFFFF);
        Resign(dcw);
        ExpectFormatError(() => ReadDcw(dcw), "name length");
        dcw = SmallDcw();
        dcw[64 + 4] = 0xC3; // lone UTF-8 lead byte
        dcw[64 + 5] = 0x28;
        Resign(dcw);
        ExpectFormatError(() => ReadDcw(dcw), "not valid UTF-8");
    }

    // ---------- arguments: chunk size, missing files ----------

    [TestCase(0)]
    [TestCase(-1)]
    [TestCase(int.MinValue)]
    public void NonPositiveChunkSize(int chunk)
    {
        Assert.That(() => WeightsLoader.Load(GoldenModel("tiny"), chunk),
            Throws.InstanceOf<ArgumentException>().With.Message.Contains("Chunk size must be positive"));
        Assert.That(() => TensorSetValidator.Infer(SafetensorsReader.Read(GoldenModel("tiny")), chunk),
            Throws.InstanceOf<ArgumentException>().With.Message.Contains("Chunk size must be positive"));
    }

    [Test]
    public void DcwChunkSizeMismatch()
    {
        using var dir = new TempDir();
        string path = dir.File("tiny.dcw");
        var t = SafetensorsReader.Read(GoldenModel("tiny"));
        DcwFile.Write(path, TensorSetValidator.Infer(t, 4), t);
        Assert.That(() => WeightsLoader.Load(path, 8), Throws.TypeOf<ArgumentException>()
            .With.Message.Contains("converted with chunk size 4; the requested chunk size 8 disagrees"));
        Assert.That(WeightsLoader.Load(path, 4).Config.ChunkSize, Is.EqualTo(4));
    }

    [Test]
    public void MissingFile()
    {
        string path = Path.Combine(Path.GetTempPath(), "no-such-" + Guid.NewGuid().ToString("N"), "model.safetensors");
        Assert.That(() => SafetensorsReader.Read(path), Throws.TypeOf<FileNotFoundException>().With.Message.Contains(path));
        Assert.That(() => SafetensorsReader.Inspect(path), Throws.TypeOf<FileNotFoundException>().With.Message.Contains(path));
        Assert.That(() => DcwFile.Read(path), Throws.TypeOf<FileNotFoundException>().With.Message.Contains(path));
        Assert.That(() => DcwFile.Inspect(path), Throws.TypeOf<FileNotFoundException>().With.Message.Contains(path));
        Assert.That(() => WeightsLoader.Load(path, null), Throws.TypeOf<FileNotFoundException>().With.Message.Contains("does not exist"));
    }

    [Test]
    public void DirectoryInsteadOfFile()
    {
        using var dir = new TempDir();
        Assert.That(() => WeightsLoader.Load(dir.Path, 4), Throws.ArgumentException.With.Message.Contains("is a directory"));
        Assert.That(() => DcwFile.Inspect(dir.Path), Throws.ArgumentException.With.Message.Contains("is a directory"));
    }

    [Test]
    public void NullOrEmptyArguments()
    {
        Assert.That(() => SafetensorsReader.Read(""), Throws.InstanceOf<ArgumentException>());
        Assert.That(() => DcwFile.Read(""), Throws.InstanceOf<ArgumentException>());
        Assert.That(() => DcwFile.Write("", SmallConfig, Good()), Throws.InstanceOf<ArgumentException>());
        Assert.That(() => WeightsLoader.Load("", 4), Throws.InstanceOf<ArgumentException>());
        Assert.That(() => DcwFile.Read(new NonSeekable(), "s"), Throws.InstanceOf<ArgumentException>());
    }

    [Test]
    public void GarbageFileThroughTheLoader()
    {
        using var dir = new TempDir();
        string path = dir.File("garbage.bin");
        File.WriteAllBytes(path, Encoding.ASCII.GetBytes("this is not a weights file at all, just some text\n"));
        Assert.That(() => WeightsLoader.Load(path, 4), Throws.TypeOf<ModelFormatException>().With.Message.Contains("header length"));
        File.WriteAllBytes(path, []);
        Assert.That(() => WeightsLoader.Load(path, 4), Throws.TypeOf<ModelFormatException>().With.Message.Contains("0 bytes"));
    }

    private sealed class NonSeekable : MemoryStream
    {
        public override bool CanSeek => false;
    }
}
