using System.Buffers.Binary;
using System.Globalization;
using System.IO.Hashing;
using System.Runtime.InteropServices;
using DualChunk.Kernels;

namespace DualChunk.Core;

// Snapshot format, version 2, little-endian:
//   0  "DCSTREAM" (8 bytes)   8 u32 version   12 i32 E, H, NH, L, C, F   36 u64 model fingerprint
//  44 i32 batch   48 i32 chunks   52 u32 flags (bit 0: the mean pool is readable)   56 u32 architecture (ModelArchitecture)
//  60 float32 k̄ | v̄ [L, B, chunks, 2H]   then float64 sums [B, 2, H]   then u64 XxHash64 of everything before it.
// Version 1 (still read) has no architecture field (a DualChunk.build model) and its state starts at 56.
public sealed partial class DualChunkStream
{
    private const int HeaderBytes = 60, HeaderBytesV1 = 56, FormatVersion = 2;
    private static ReadOnlySpan<byte> Magic => "DCSTREAM"u8;

    /// <summary>Bytes <see cref="Snapshot()"/> returns for the current length.</summary>
    public long SnapshotLength => SnapshotBytes(_chunks);

    /// <summary>
    /// The stream's state as bytes (a versioned format naming the model's dimensions, a fingerprint of its weights, the
    /// batch and the length, with a checksum), for <see cref="Restore"/> later, e.g. to park a stream. Allocates the array.
    /// </summary>
    /// <exception cref="InvalidOperationException">The snapshot would exceed the largest array.</exception>
    public byte[] Snapshot()
    {
        Begin();
        try
        {
            long length = SnapshotBytes(_chunks);
            if (length > Array.MaxLength)
                throw new InvalidOperationException(string.Create(CultureInfo.InvariantCulture, $"A snapshot of this stream needs {length:N0} bytes, more than one array holds."));
            var bytes = new byte[length];
            var config = _model.Config;
            Magic.CopyTo(bytes);
            var w = bytes.AsSpan();
            BinaryPrimitives.WriteUInt32LittleEndian(w[8..], FormatVersion);
            int[] dims = [config.EmbedDim, config.HiddenSize, config.NumHeads, config.NumLayers, config.ChunkSize, config.FfnSize];
            for (int i = 0; i < dims.Length; i++) BinaryPrimitives.WriteInt32LittleEndian(w[(12 + 4 * i)..], dims[i]);
            BinaryPrimitives.WriteUInt64LittleEndian(w[36..], _model.Fingerprint);
            BinaryPrimitives.WriteInt32LittleEndian(w[44..], Batch);
            BinaryPrimitives.WriteInt32LittleEndian(w[48..], _chunks);
            BinaryPrimitives.WriteUInt32LittleEndian(w[52..], _meanValid ? 1u : 0u);
            BinaryPrimitives.WriteUInt32LittleEndian(w[56..], (uint)config.Architecture);
            int at = HeaderBytes, used = _chunks * _state.RowFloats;
            for (int l = 0; l < config.NumLayers; l++)
                for (int b = 0; b < Batch; b++, at += used * sizeof(float))
                    WriteLittleEndian(_state.Rows(l, b)[..used], w[at..]);
            for (int i = 0; i < _state.Sums.Length; i++, at += sizeof(double))
                BinaryPrimitives.WriteDoubleLittleEndian(w[at..], _state.Sums[i]);
            BinaryPrimitives.WriteUInt64LittleEndian(w[at..], XxHash64.HashToUInt64(w[..at]));
            return bytes;
        }
        finally
        {
            End();
        }
    }

    private static readonly string[] DimensionNames = ["embed_dim E", "hidden_size H", "num_heads NH", "num_layers L", "chunk size C", "ffn size F"];

    /// <summary>
    /// Replaces the stream's state with a <see cref="Snapshot()"/> of a stream of the same model and batch (growing the
    /// capacity if needed). The bytes are untrusted: every field is checked before anything is allocated or changed.
    /// </summary>
    /// <exception cref="StreamSnapshotException">The bytes are not a snapshot, are truncated or corrupted, or are of another model, configuration or batch (the message names the mismatch).</exception>
    public void Restore(ReadOnlySpan<byte> snapshot)
    {
        Begin();
        try
        {
            var config = _model.Config;
            if (snapshot.Length < HeaderBytesV1 + sizeof(ulong) || !snapshot[..8].SequenceEqual(Magic))
                throw Bad(snapshot.Length < HeaderBytesV1 + sizeof(ulong) && snapshot.Length >= 8 && snapshot[..8].SequenceEqual(Magic)
                    ? $"The snapshot is truncated: {snapshot.Length} bytes, less than its {HeaderBytesV1 + sizeof(ulong)}-byte header and checksum."
                    : "The bytes are not a DualChunk stream snapshot (no \"DCSTREAM\" magic); pass what DualChunkStream.Snapshot returned.");
            uint version = BinaryPrimitives.ReadUInt32LittleEndian(snapshot[8..]);
            if (version is not (1 or FormatVersion))
                throw Bad($"The snapshot has format version {version}; this build reads versions 1 and {FormatVersion}. Take the snapshot with the same DualChunk version.");
            int header = version == 1 ? HeaderBytesV1 : HeaderBytes;
            if (snapshot.Length < header + sizeof(ulong))
                throw Bad($"The snapshot is truncated: {snapshot.Length} bytes, less than its {header + sizeof(ulong)}-byte header and checksum.");
            uint architecture = version == 1 ? (uint)ModelArchitecture.DualChunk : BinaryPrimitives.ReadUInt32LittleEndian(snapshot[56..]);
            if (architecture != (uint)config.Architecture)
                throw Bad($"The snapshot is of a {(Enum.IsDefined((ModelArchitecture)architecture) ? ((ModelArchitecture)architecture).ToString() : $"unknown ({architecture})")} model; this stream's model is {config.Architecture} ({config}). Restore it into a stream of the model it was taken from.");
            // On the stack: a Restore that succeeds allocates nothing (dualchunk bench --stream restores after every call).
            ReadOnlySpan<int> dims = [config.EmbedDim, config.HiddenSize, config.NumHeads, config.NumLayers, config.ChunkSize, config.FfnSize];
            for (int i = 0; i < dims.Length; i++)
            {
                int got = BinaryPrimitives.ReadInt32LittleEndian(snapshot[(12 + 4 * i)..]);
                if (got != dims[i])
                    throw Bad($"The snapshot is of a model with {DimensionNames[i]} = {got}; this stream's model has {dims[i]} ({config}). Restore it into a stream of the model it was taken from.");
            }
            ulong fingerprint = BinaryPrimitives.ReadUInt64LittleEndian(snapshot[36..]);
            if (fingerprint != _model.Fingerprint)
                throw Bad($"The snapshot is of another model with the same dimensions ({config}): its weights fingerprint {fingerprint:x16} differs from this model's {_model.Fingerprint:x16}. Restore it into a stream of the model it was taken from.");
            int batch = BinaryPrimitives.ReadInt32LittleEndian(snapshot[44..]);
            if (batch != Batch)
                throw Bad($"The snapshot holds batch {batch}; this stream has batch {Batch}. Restore it into a stream created with batch {batch}.");
            int chunks = BinaryPrimitives.ReadInt32LittleEndian(snapshot[48..]);
            if (chunks < 0 || chunks > MaxChunks())
                throw Bad($"The snapshot claims {chunks} chunks, outside 0..{MaxChunks()} (the model's MaxSeqLen / C).");
            uint flags = BinaryPrimitives.ReadUInt32LittleEndian(snapshot[52..]);
            if (flags > 1)
                throw Bad($"The snapshot has unknown flags 0x{flags:x}; it was not written by this version.");
            long expected = SnapshotBytes(chunks, header);
            if (snapshot.Length != expected)
                throw Bad($"The snapshot of {chunks} chunks must be {expected:N0} bytes, got {snapshot.Length:N0}: it is truncated or has trailing bytes.");
            int end = snapshot.Length - sizeof(ulong);
            if (XxHash64.HashToUInt64(snapshot[..end]) != BinaryPrimitives.ReadUInt64LittleEndian(snapshot[end..]))
                throw Bad("The snapshot's checksum does not match its contents: it was corrupted in storage or transit.");
            var floats = MemoryMarshal.Cast<byte, float>(snapshot[header..(header + (int)((long)config.NumLayers * Batch * chunks * _state.RowFloats * sizeof(float)))]);
            var sums = snapshot[(header + floats.Length * sizeof(float))..end];
            if (BitConverter.IsLittleEndian && NonFinite.IndexOf(floats) >= 0)
                throw Bad("The snapshot's state holds NaN or ∞, which no stream of a finite model produces.");

            // Everything checked: only now change the stream (growing it is bounded by the bytes actually given).
            if (chunks > _state.Capacity) Reserve(chunks, MaxChunks());
            int at = 0, used = chunks * _state.RowFloats;
            for (int l = 0; l < config.NumLayers; l++)
                for (int b = 0; b < Batch; b++, at += used)
                    ReadLittleEndian(snapshot[(header + at * sizeof(float))..], _state.Rows(l, b)[..used]);
            for (int i = 0; i < _state.Sums.Length; i++)
            {
                double s = BinaryPrimitives.ReadDoubleLittleEndian(sums[(i * sizeof(double))..]);
                _state.Sums[i] = double.IsFinite(s) ? s : throw Bad("The snapshot's mean-pool sums hold NaN or ∞.");
            }
            _chunks = chunks;
            _meanValid = flags == 1;
        }
        finally
        {
            End();
        }
    }

    /// <summary>The batch a snapshot's header names (1 when the bytes have no readable header: Restore then says why).</summary>
    internal static int SnapshotBatch(ReadOnlySpan<byte> snapshot)
        => snapshot.Length >= HeaderBytesV1 + sizeof(ulong) && snapshot[..8].SequenceEqual(Magic) ? BinaryPrimitives.ReadInt32LittleEndian(snapshot[44..]) : 1;

    private long SnapshotBytes(int chunks, int header = HeaderBytes)
        => header + (long)_model.Config.NumLayers * Batch * chunks * _state.RowFloats * sizeof(float) + (long)_state.Sums.Length * sizeof(double) + sizeof(ulong);

    private static StreamSnapshotException Bad(string message) => new(message);

    private static void WriteLittleEndian(ReadOnlySpan<float> values, Span<byte> bytes)
    {
        for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes[(i * sizeof(float))..], values[i]);
    }

    private static void ReadLittleEndian(ReadOnlySpan<byte> bytes, Span<float> values)
    {
        for (int i = 0; i < values.Length; i++) values[i] = BinaryPrimitives.ReadSingleLittleEndian(bytes[(i * sizeof(float))..]);
    }
}

/// <summary>
/// <see cref="DualChunkStream.Restore"/> was given bytes that are not a snapshot of a stream of the same model and batch:
/// not a snapshot, another format version, truncated, corrupted, or of another model, configuration or batch. The
/// message names what does not match and the fix.
/// </summary>
public sealed class StreamSnapshotException : FormatException
{
    /// <summary>Creates the exception with a default message.</summary>
    public StreamSnapshotException() : base("The bytes are not a valid DualChunk stream snapshot.") { }

    /// <summary>Creates the exception with a message.</summary>
    public StreamSnapshotException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and an inner exception.</summary>
    public StreamSnapshotException(string message, Exception innerException) : base(message, innerException) { }
}
