using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using DualChunk.Core;
using NUnit.Framework;

namespace DualChunk.Tests.Loading;

/// <summary>Builders for synthetic safetensors / .dcw files and access to the golden checkpoints.</summary>
internal static class LoadingTestData
{
    public static readonly string[] GoldenCases = Golden.GoldenCase.Names; // discovered from tests/golden

    public static string GoldenDir(string goldenCase) => Path.Combine(TestContext.CurrentContext.TestDirectory, "golden", goldenCase);

    public static string GoldenModel(string goldenCase) => Path.Combine(GoldenDir(goldenCase), "model.safetensors");

    /// <summary>The small model used by the synthetic tests: E=6 (projection), H=4, NH=2, L=1, C=2, F=16.</summary>
    public static ModelConfig SmallConfig { get; } = new(6, 4, 2, 1, 2, 16);

    /// <summary>Deterministic finite tensors for <paramref name="config"/>.</summary>
    public static Dictionary<string, CheckpointTensor> MakeTensors(ModelConfig config, int seed = 1)
    {
        var rng = new Random(seed);
        var result = new Dictionary<string, CheckpointTensor>(StringComparer.Ordinal);
        foreach (var (name, shape) in CheckpointNames.Expected(config))
        {
            int n = shape.Aggregate(1, (a, b) => a * b);
            var data = new float[n];
            for (int i = 0; i < n; i++) data[i] = (float)(rng.NextDouble() * 2 - 1);
            result[name] = new CheckpointTensor(name, shape, data);
        }
        return result;
    }

    /// <summary>One tensor for <see cref="Safetensors(IEnumerable{RawTensor}, IReadOnlyDictionary{string, string}?)"/>.</summary>
    public sealed record RawTensor(string Name, string Dtype, long[] Shape, byte[] Data);

    public static RawTensor F32(CheckpointTensor t)
    {
        var bytes = MemoryMarshal.AsBytes(t.Data.Span).ToArray();
        return new RawTensor(t.Name, "F32", t.Shape.Select(s => (long)s).ToArray(), bytes);
    }

    /// <summary>A minimal safetensors writer: tensors stored contiguously in the given order.</summary>
    public static byte[] Safetensors(IEnumerable<RawTensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var sb = new StringBuilder("{");
        var data = new MemoryStream();
        bool first = true;
        if (metadata is not null)
        {
            sb.Append("\"__metadata__\":").Append(JsonSerializer.Serialize(metadata));
            first = false;
        }
        foreach (var t in tensors)
        {
            if (!first) sb.Append(',');
            first = false;
            long begin = data.Length;
            data.Write(t.Data);
            sb.Append(CultureInfo.InvariantCulture,
                $"{JsonSerializer.Serialize(t.Name)}:{{\"dtype\":\"{t.Dtype}\",\"shape\":[{string.Join(",", t.Shape)}],\"data_offsets\":[{begin},{data.Length}]}}");
        }
        sb.Append('}');
        return Assemble(sb.ToString(), data.ToArray());
    }

    /// <summary>A safetensors file with an arbitrary header text and data section.</summary>
    public static byte[] Assemble(string header, byte[] data) => Assemble(Encoding.UTF8.GetBytes(header), data);

    /// <summary>A safetensors file with arbitrary header bytes and data section.</summary>
    public static byte[] Assemble(byte[] header, byte[] data)
    {
        var file = new byte[8 + header.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)header.Length);
        header.CopyTo(file, 8);
        data.CopyTo(file, 8 + header.Length);
        return file;
    }

    public static byte[] SafetensorsOf(IReadOnlyDictionary<string, CheckpointTensor> tensors, ModelConfig config)
        => Safetensors(CheckpointNames.Expected(config).Select(e => F32(tensors[e.Name])));

    public static byte[] SmallSafetensors() => SafetensorsOf(MakeTensors(SmallConfig), SmallConfig);

    /// <summary>A .dcw file of <paramref name="config"/>, as bytes (written through a temp file).</summary>
    public static byte[] Dcw(ModelConfig config, IReadOnlyDictionary<string, CheckpointTensor> tensors)
    {
        using var dir = new TempDir();
        string path = dir.File("m.dcw");
        DcwFile.Write(path, config, tensors);
        return File.ReadAllBytes(path);
    }

    public static byte[] SmallDcw() => Dcw(SmallConfig, MakeTensors(SmallConfig));

    /// <summary>Recomputes the checksum of a (possibly tampered) .dcw image, as a hostile writer could.</summary>
    public static void Resign(byte[] dcw) => DualChunk.Fuzz.FuzzTargets.Resign(dcw);

    public static Dictionary<string, CheckpointTensor> ReadDcw(byte[] bytes)
    {
        using var ms = new MemoryStream(bytes, writable: false);
        return DcwFile.Read(ms, "test.dcw").Tensors;
    }

    public static DcwFileInfo InspectDcw(byte[] bytes)
    {
        using var ms = new MemoryStream(bytes, writable: false);
        return DcwFile.Inspect(ms, "test.dcw");
    }

    public static void AssertBitwiseEqual(IReadOnlyDictionary<string, CheckpointTensor> expected, IReadOnlyDictionary<string, CheckpointTensor> actual)
    {
        Assert.That(actual.Keys, Is.EquivalentTo(expected.Keys));
        foreach (var (name, t) in expected)
        {
            var a = actual[name];
            Assert.That(a.Shape, Is.EqualTo(t.Shape), name);
            var eb = MemoryMarshal.Cast<float, uint>(t.Data.Span).ToArray();
            var ab = MemoryMarshal.Cast<float, uint>(a.Data.Span).ToArray();
            Assert.That(ab, Is.EqualTo(eb), name);
        }
    }
}

/// <summary>A temporary directory deleted on dispose.</summary>
internal sealed class TempDir : IDisposable
{
    public TempDir()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "dualchunk-loading-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
