using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using System.Text.Json;
using DualChunk.Core;

namespace DualChunk.Fuzz;

/// <summary>Small valid inputs per target: every dtype, both weight formats, .npy versions 1–3.</summary>
internal static class Seeds
{
    public static IReadOnlyList<ModelConfig> Configs { get; } =
    [
        new(3, 2, 1, 1, 2, 4),  // with input projection
        new(2, 2, 2, 2, 1, 3),  // no projection, two layers, two heads
    ];

    public static void Write(string dir)
    {
        string Dir(string target) => Directory.CreateDirectory(Path.Combine(dir, target)).FullName;
        string st = Dir("safetensors"), sth = Dir("safetensors-header"), dcw = Dir("dcw"), npy = Dir("npy"), cfg = Dir("config");
        for (int c = 0; c < Configs.Count; c++)
        {
            var config = Configs[c];
            var tensors = RandomWeights.Create(config, seed: 10 + c);
            foreach (var dtype in SafetensorsReader.SupportedDtypes)
            {
                var bytes = Safetensors(config, tensors, dtype, metadata: c == 0);
                string name = Inv($"model{c}-{dtype.ToLowerInvariant()}.safetensors");
                File.WriteAllBytes(Path.Combine(st, name), bytes);
                File.WriteAllBytes(Path.Combine(sth, name), bytes);
            }
            DcwFile.Write(Path.Combine(dcw, Inv($"model{c}.dcw")), config, tensors);
            File.WriteAllText(Path.Combine(cfg, Inv($"model{c}.txt")),
                Inv($"chunk={config.ChunkSize}\n") + string.Concat(CheckpointNames.Expected(config).Select(e => $"{e.Name}:{string.Join(",", e.Shape)}\n")));
        }
        for (int major = 1; major <= 3; major++)
        {
            File.WriteAllBytes(Path.Combine(npy, Inv($"v{major}-f4-2x3.npy")), Npy(major, "<f4", [2, 3]));
            File.WriteAllBytes(Path.Combine(npy, Inv($"v{major}-f8-4.npy")), Npy(major, "<f8", [4]));
        }
        File.WriteAllBytes(Path.Combine(npy, "v1-f4-1x2x2.npy"), Npy(1, "<f4", [1, 2, 2]));
    }

    /// <summary>A safetensors file of <paramref name="tensors"/> in canonical order, stored as <paramref name="dtype"/>.</summary>
    public static byte[] Safetensors(ModelConfig config, IReadOnlyDictionary<string, CheckpointTensor> tensors, string dtype, bool metadata)
    {
        var header = new StringBuilder("{");
        if (metadata) header.Append("\"__metadata__\":{\"format\":\"pt\"},");
        var data = new MemoryStream();
        var expected = CheckpointNames.Expected(config);
        for (int i = 0; i < expected.Count; i++)
        {
            var t = tensors[expected[i].Name];
            long begin = data.Length;
            foreach (float f in t.Data.Span) data.Write(Encode(f, dtype));
            header.Append(CultureInfo.InvariantCulture,
                $"{JsonSerializer.Serialize(t.Name)}:{{\"dtype\":\"{dtype}\",\"shape\":[{string.Join(",", t.Shape)}],\"data_offsets\":[{begin},{data.Length}]}}");
            if (i < expected.Count - 1) header.Append(',');
        }
        header.Append('}');
        var h = Encoding.UTF8.GetBytes(header.ToString());
        var file = new byte[8 + h.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)h.Length);
        h.CopyTo(file, 8);
        data.ToArray().CopyTo(file, 8 + h.Length);
        return file;
    }

    private static byte[] Encode(float f, string dtype)
    {
        switch (dtype)
        {
            case "F32":
            {
                var b = new byte[4];
                BinaryPrimitives.WriteSingleLittleEndian(b, f);
                return b;
            }
            case "F16":
            {
                var b = new byte[2];
                BinaryPrimitives.WriteHalfLittleEndian(b, (Half)f);
                return b;
            }
            case "BF16":
            {
                var b = new byte[2];
                BinaryPrimitives.WriteUInt16LittleEndian(b, (ushort)(BitConverter.SingleToUInt32Bits(f) >> 16));
                return b;
            }
            default:
            {
                var b = new byte[8];
                BinaryPrimitives.WriteDoubleLittleEndian(b, f);
                return b;
            }
        }
    }

    /// <summary>A C-order .npy of format <paramref name="major"/>.0 with values 0.5, -1.5, 2.5, ...</summary>
    public static byte[] Npy(int major, string descr, int[] shape)
    {
        string shapeText = shape.Length == 1 ? Inv($"({shape[0]},)") : "(" + string.Join(", ", shape) + ")";
        string dict = $"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shapeText}, }}";
        int prefix = major == 1 ? 10 : 12;
        int pad = (64 - (prefix + dict.Length + 1) % 64) % 64;
        var header = Encoding.ASCII.GetBytes(dict + new string(' ', pad) + "\n");
        int count = shape.Aggregate(1, (a, b) => a * b);
        int size = descr == "<f4" ? 4 : 8;
        var file = new byte[prefix + header.Length + count * size];
        file[0] = 0x93;
        "NUMPY"u8.CopyTo(file.AsSpan(1));
        file[6] = (byte)major;
        if (major == 1) BinaryPrimitives.WriteUInt16LittleEndian(file.AsSpan(8), (ushort)header.Length);
        else BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(8), (uint)header.Length);
        header.CopyTo(file, prefix);
        for (int i = 0; i < count; i++)
        {
            double v = (i % 2 == 0 ? 1 : -1) * (0.5 + i);
            if (size == 4) BinaryPrimitives.WriteSingleLittleEndian(file.AsSpan(prefix + header.Length + 4 * i), (float)v);
            else BinaryPrimitives.WriteDoubleLittleEndian(file.AsSpan(prefix + header.Length + 8 * i), v);
        }
        return file;
    }

    private static string Inv(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
