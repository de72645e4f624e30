using System.Buffers.Binary;
using System.Globalization;
using System.IO.Hashing;
using System.Text;
using DualChunk.Cli;
using DualChunk.Core;

namespace DualChunk.Fuzz;

/// <summary>
/// One parser of outside bytes, as the fuzzer and the corpus replay tests call it. <see cref="Run"/> returns normally
/// for a clean load and for the parser's documented exception (<see cref="IsExpected"/>); anything else escaping it is
/// a bug.
/// </summary>
/// <param name="Name">The target's name: also the folder of its seed corpus and reproducers.</param>
/// <param name="Parse">Feeds the bytes to the parser (any exception propagates).</param>
/// <param name="IsExpected">The parser's documented failure type for bad input.</param>
internal sealed record FuzzTarget(string Name, Action<byte[]> Parse, Func<Exception, bool> IsExpected)
{
    /// <summary>Parses <paramref name="input"/>: true for a clean load, false for the documented exception.</summary>
    public bool Run(byte[] input)
    {
        try
        {
            Parse(input);
            return true;
        }
        catch (Exception ex) when (IsExpected(ex))
        {
            return false;
        }
    }
}

/// <summary>
/// The fuzz targets. Each is thin: it only turns bytes into a call of a public or internal entry point, so a parser
/// that moves (e.g. the .npy reader into Core) is a one-line change here.
/// </summary>
internal static class FuzzTargets
{
    /// <summary>Elements the config target materialises at most (its data is the harness's, not the input's).</summary>
    private const long ConfigTargetMaxElements = 1 << 20;

    public static IReadOnlyList<FuzzTarget> All { get; } =
    [
        // The safetensors header alone: length field, UTF-8/JSON, entries, tiling.
        new("safetensors-header", b => SafetensorsReader.Inspect(b, "fuzz.safetensors"), IsModelFormat),
        // Header + data: dtype conversion (F32/F16/BF16/F64) and config inference, as WeightsLoader does in memory.
        new("safetensors", ParseSafetensors, IsModelFormat),
        // The .dcw preamble and tensor table; then the same bytes with a recomputed checksum, so the fuzzer also
        // reaches the padding and tensor-set checks behind it.
        new("dcw", ParseDcw, IsModelFormat),
        // The .npy reader of --input (documented failure: NpyFormatException).
        new("npy", b => Npy.Read(b, "fuzz.npy"), ex => ex is NpyFormatException),
        // Edifice .nx checkpoints (plain, compressed) and bare Nx.serialize payloads: header, metadata and spec, the
        // Erlang term, zlib, tensors, through the same seam WeightsLoader uses.
        new("nx", ParseNx, IsModelFormat),
        // Model config inference from tensor names and shapes (text: one "name:d0,d1,..." per line, "chunk=N").
        new("config", ParseConfig, IsModelFormat),
    ];

    public static FuzzTarget Get(string name)
        => All.FirstOrDefault(t => t.Name == name)
            ?? throw new ArgumentException($"Unknown fuzz target '{name}'; targets: {string.Join(", ", All.Select(t => t.Name))}.", nameof(name));

    private static bool IsModelFormat(Exception ex) => ex is ModelFormatException;

    private static void ParseSafetensors(byte[] b)
    {
        var tensors = SafetensorsReader.Read(b, "fuzz.safetensors");
        TensorSetValidator.Infer(tensors, 1 + (b.Length % 8));
    }

    private static void ParseNx(byte[] b)
    {
        using var ms = new MemoryStream(b, writable: false);
        var reader = CheckpointReader.Open(ms, "fuzz.nx");
        _ = reader.Description;
        _ = reader.Header.ToList();
        _ = reader.Entries;
        // A file with Edifice's spec gives its own chunk size (any other is an ArgumentException by design); for one
        // without, the chunk size comes from the input like the safetensors target's, so small and odd sizes are
        // exercised too, not only the default 64.
        reader.Load(reader.StoresChunkSize ? null : 1 + (b.Length % 8));
    }

    private static void ParseDcw(byte[] b)
    {
        using (var ms = new MemoryStream(b, writable: false))
            DcwFile.Inspect(ms, "fuzz.dcw");
        var signed = (byte[])b.Clone();
        Resign(signed);
        using (var ms = new MemoryStream(signed, writable: false))
            DcwFile.Inspect(ms, "fuzz.dcw");
        using (var ms = new MemoryStream(signed, writable: false))
            DcwFile.Read(ms, "fuzz.dcw");
    }

    /// <summary>Recomputes the checksum of a .dcw image in place, as a hostile writer could (weights-format.md §3).</summary>
    public static void Resign(byte[] dcw)
    {
        if (dcw.Length < 64) return;
        var h = new XxHash3();
        h.Append(dcw.AsSpan(0, 56));
        h.Append(new byte[8]);
        h.Append(dcw.AsSpan(64));
        BinaryPrimitives.WriteUInt64LittleEndian(dcw.AsSpan(56), h.GetCurrentHashAsUInt64());
    }

    private static void ParseConfig(byte[] b)
    {
        var tensors = new Dictionary<string, CheckpointTensor>(StringComparer.Ordinal);
        int chunk = 4;
        long total = 0;
        foreach (var line in Encoding.UTF8.GetString(b).Split('\n'))
        {
            if (line.StartsWith("chunk=", StringComparison.Ordinal))
            {
                if (int.TryParse(line.AsSpan(6), NumberStyles.None, CultureInfo.InvariantCulture, out int c) && c > 0) chunk = c;
                continue;
            }
            int colon = line.LastIndexOf(':');
            if (colon < 0) continue;
            var dims = line[(colon + 1)..].Split(',', StringSplitOptions.RemoveEmptyEntries);
            var shape = new int[dims.Length];
            long n = 1;
            for (int i = 0; i < dims.Length; i++)
            {
                // Shapes the harness cannot materialise are skipped: the target is about names and shapes.
                if (!int.TryParse(dims[i], NumberStyles.None, CultureInfo.InvariantCulture, out shape[i])) return;
                n = Math.Min(n * shape[i], ConfigTargetMaxElements + 1);
            }
            total += n;
            if (total > ConfigTargetMaxElements) return;
            var data = new float[n];
            for (int i = 0; i < data.Length; i++) data[i] = 0.25f - 0.001f * (i % 97);
            tensors[line[..colon]] = new CheckpointTensor(line[..colon], shape, data);
        }
        TensorSetValidator.Infer(tensors, chunk);
    }
}
