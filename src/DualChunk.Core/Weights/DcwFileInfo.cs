namespace DualChunk.Core;

/// <summary>One entry of a .dcw tensor table (weights-format.md, "Tensor table").</summary>
/// <param name="Name">The tensor's key, e.g. <c>final_norm.gamma</c>.</param>
/// <param name="Dtype">The element type; versions 1 and 2 only have <c>F32</c>.</param>
/// <param name="Shape">The shape, outermost first.</param>
/// <param name="Offset">Absolute file offset of the tensor's first byte (a multiple of 64).</param>
/// <param name="ByteLength">The tensor's size in bytes (elements × 4).</param>
public sealed record DcwTensorEntry(string Name, string Dtype, IReadOnlyList<int> Shape, long Offset, long ByteLength)
{
    /// <summary>The shape as text, e.g. <c>[32, 96]</c>.</summary>
    public string ShapeText => "[" + string.Join(", ", Shape) + "]";
}

/// <summary>
/// The structure of a .dcw file as reported by <see cref="DcwFile.Inspect(string)"/>. Produced even when the
/// checksum fails (see <see cref="ChecksumValid"/>), so a tool can report the damage.
/// </summary>
/// <param name="Version">The format version (1 or 2).</param>
/// <param name="Flags">Version 1's flags field (0); version 2 has none (0).</param>
/// <param name="Config">The model configuration stored in the preamble, chunk size and architecture included (version 1: DualChunk).</param>
/// <param name="Tensors">The tensor table in file order.</param>
/// <param name="FileLength">The file's size in bytes.</param>
/// <param name="TableByteLength">The tensor table's size in bytes.</param>
/// <param name="DataOffset">Absolute offset of the data section (a multiple of 64).</param>
/// <param name="StoredChecksum">The XxHash3 checksum stored in the preamble.</param>
/// <param name="ComputedChecksum">The XxHash3 checksum computed over the file's bytes.</param>
/// <param name="PaddingProblem">Null when every padding byte is zero, otherwise a description of the first non-zero padding.</param>
public sealed record DcwFileInfo(
    int Version,
    uint Flags,
    ModelConfig Config,
    IReadOnlyList<DcwTensorEntry> Tensors,
    long FileLength,
    long TableByteLength,
    long DataOffset,
    ulong StoredChecksum,
    ulong ComputedChecksum,
    string? PaddingProblem = null)
{
    /// <summary>True when the stored and computed checksums agree.</summary>
    public bool ChecksumValid => StoredChecksum == ComputedChecksum;
}
