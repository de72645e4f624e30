using System.Runtime.InteropServices;
using System.Text;
using DualChunk.Core;

namespace DualChunk.Bench;

/// <summary>Writes an F32 safetensors file (8-byte LE header length, JSON header, data) for the load benchmarks.</summary>
internal static class SafetensorsWriter
{
    public static void Write(string path, ModelConfig config, IReadOnlyDictionary<string, CheckpointTensor> tensors)
    {
        var header = new StringBuilder("{");
        long offset = 0;
        var ordered = CheckpointNames.Expected(config).Select(e => tensors[e.Name]).ToList();
        foreach (var t in ordered)
        {
            long bytes = 4L * t.Data.Length;
            if (header.Length > 1) header.Append(',');
            header.Append(System.Globalization.CultureInfo.InvariantCulture,
                $"\"{t.Name}\":{{\"dtype\":\"F32\",\"shape\":[{string.Join(",", t.Shape)}],\"data_offsets\":[{offset},{offset + bytes}]}}");
            offset += bytes;
        }
        header.Append('}');
        while ((header.Length + 8) % 8 != 0) header.Append(' ');
        byte[] headerBytes = Encoding.UTF8.GetBytes(header.ToString());
        using var fs = File.Create(path);
        fs.Write(BitConverter.GetBytes((ulong)headerBytes.Length));
        fs.Write(headerBytes);
        foreach (var t in ordered)
            fs.Write(MemoryMarshal.AsBytes(t.Data.Span));
    }
}
