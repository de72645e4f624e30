using System.Buffers;
using System.Runtime.InteropServices;
using CommunityToolkit.HighPerformance.Buffers;
using Google.Protobuf;
using global::Grpc.Core;

namespace DualChunk.Server.Grpc;

/// <summary>
/// Reads a <see cref="ModelInferRequest"/> with its <c>raw_input_contents</c> (field 7, the tensor bytes: 73 KB for
/// config a) in pooled buffers instead of a new array per request. Everything else is protobuf's own parser, on the
/// message without field 7 (protobuf allows fields in any order and concatenation, so parsing the other fields alone
/// gives the same message). <see cref="ReturnRawContents"/> gives the buffers back once the request is decoded.
/// </summary>
internal static class ModelInferRequestMarshaller
{
    private const uint WireVarint = 0, WireFixed64 = 1, WireLengthDelimited = 2, WireStartGroup = 3, WireEndGroup = 4, WireFixed32 = 5;
    private const uint RawInputContentsTag = 7 << 3 | WireLengthDelimited;
    private const int RecursionLimit = 100; // protobuf's default

    public static readonly Marshaller<ModelInferRequest> Instance = OipServiceBinder.Refusing(Marshallers.Create(Serialize, Deserialize));

    private static void Serialize(ModelInferRequest message, SerializationContext context)
    {
        context.SetPayloadLength(message.CalculateSize());
        message.WriteTo(context.GetBufferWriter());
        context.Complete();
    }

    private static ModelInferRequest Deserialize(DeserializationContext context)
    {
        var payload = context.PayloadAsReadOnlySequence();
        var raw = new List<PooledBytes>(1);
        try
        {
            if (!HasRawContents(payload))
                return ModelInferRequest.Parser.ParseFrom(payload);
            using var rest = new ArrayPoolBufferWriter<byte>();
            var reader = new SequenceReader<byte>(payload);
            while (!reader.End)
            {
                long start = reader.Consumed;
                uint tag = ReadTag(ref reader);
                if (tag == RawInputContentsTag)
                {
                    int length = ReadLength(ref reader);
                    var bytes = new PooledBytes(length);
                    raw.Add(bytes);
                    reader.TryCopyTo(bytes.Memory.Span); // ReadLength checked that the payload holds it
                    reader.Advance(length);
                    continue;
                }
                SkipValue(ref reader, tag, depth: 0);
                var field = payload.Slice(start, reader.Consumed - start);
                field.CopyTo(rest.GetSpan((int)field.Length));
                rest.Advance((int)field.Length);
            }
            var message = ModelInferRequest.Parser.ParseFrom(rest.WrittenSpan);
            foreach (var bytes in raw)
                message.RawInputContents.Add(UnsafeByteOperations.UnsafeWrap(bytes.Memory));
            return message;
        }
        catch // a malformed message: InvalidDataException here or protobuf's own, INVALID_ARGUMENT by Refusing
        {
            foreach (var bytes in raw) ((IDisposable)bytes).Dispose();
            throw;
        }
    }

    /// <summary>Gives <paramref name="request"/>'s pooled <c>raw_input_contents</c> back; they must not be read after.</summary>
    public static void ReturnRawContents(ModelInferRequest request)
    {
        foreach (var bytes in request.RawInputContents)
            if (MemoryMarshal.TryGetMemoryManager<byte, PooledBytes>(bytes.Memory, out var pooled))
                ((IDisposable)pooled).Dispose();
    }

    /// <summary>Whether the message has a field 7 of wire type 2 (a first pass, copying nothing).</summary>
    private static bool HasRawContents(in ReadOnlySequence<byte> payload)
    {
        var reader = new SequenceReader<byte>(payload);
        while (!reader.End)
        {
            uint tag = ReadTag(ref reader);
            if (tag == RawInputContentsTag) return true;
            SkipValue(ref reader, tag, depth: 0);
        }
        return false;
    }

    // Tags and lengths are read as protobuf reads them (the low 32 bits of the varint; a negative length is an error),
    // so that this scan and protobuf's parser see the same fields.

    private static void SkipValue(ref SequenceReader<byte> reader, uint tag, int depth)
    {
        switch (tag & 7)
        {
            case WireVarint: ReadVarint(ref reader); break;
            case WireFixed64: Skip(ref reader, 8); break;
            case WireLengthDelimited: Skip(ref reader, ReadLength(ref reader)); break;
            case WireStartGroup:
                // An unknown group: protobuf skips it whole, up to its end tag (nested groups within its recursion limit).
                if (depth >= RecursionLimit) throw new InvalidDataException($"groups nested deeper than {RecursionLimit} at byte {reader.Consumed}.");
                while (true)
                {
                    if (reader.End) throw new InvalidDataException($"the message ends inside group {tag >> 3}.");
                    uint inner = ReadTag(ref reader);
                    if ((inner & 7) == WireEndGroup)
                    {
                        if (inner >> 3 != tag >> 3) throw new InvalidDataException($"group {tag >> 3} is closed by the end tag of {inner >> 3} at byte {reader.Consumed}.");
                        break;
                    }
                    SkipValue(ref reader, inner, depth + 1);
                }
                break;
            case WireFixed32: Skip(ref reader, 4); break;
            default: throw new InvalidDataException($"tag {tag} has wire type {tag & 7} at byte {reader.Consumed}.");
        }
    }

    private static void Skip(ref SequenceReader<byte> reader, int count)
    {
        if (reader.Remaining < count) throw new InvalidDataException($"a field needs {count} bytes at byte {reader.Consumed}, {reader.Remaining} are left.");
        reader.Advance(count);
    }

    private static uint ReadTag(ref SequenceReader<byte> reader)
    {
        uint tag = (uint)ReadVarint(ref reader);
        if (tag >> 3 == 0) throw new InvalidDataException($"field number 0 at byte {reader.Consumed}.");
        return tag;
    }

    private static int ReadLength(ref SequenceReader<byte> reader)
    {
        int length = (int)(uint)ReadVarint(ref reader);
        if (length < 0 || length > reader.Remaining)
            throw new InvalidDataException($"a field claims {(uint)length} bytes at byte {reader.Consumed}, {reader.Remaining} are left.");
        return length;
    }

    private static ulong ReadVarint(ref SequenceReader<byte> reader)
    {
        ulong value = 0;
        for (int shift = 0; shift < 70; shift += 7)
        {
            if (!reader.TryRead(out byte b)) throw new InvalidDataException($"the message ends inside a varint at byte {reader.Consumed}.");
            if (shift < 64) value |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80) return value;
        }
        throw new InvalidDataException($"a varint longer than 10 bytes ends at byte {reader.Consumed}.");
    }

    /// <summary>A pooled array exposed as exactly <c>length</c> bytes; returned to the pool once, unreadable after.</summary>
    private sealed class PooledBytes(int length) : MemoryManager<byte>
    {
        private byte[]? _array = ArrayPool<byte>.Shared.Rent(length);

        public override Span<byte> GetSpan() => new(Live, 0, length);

        public override MemoryHandle Pin(int elementIndex = 0) => Live.AsMemory(elementIndex, length - elementIndex).Pin();

        private byte[] Live => _array ?? throw new ObjectDisposedException(nameof(ModelInferRequest), "raw_input_contents was read after it was returned to the pool.");

        public override void Unpin() { }

        protected override void Dispose(bool disposing)
        {
            if (Interlocked.Exchange(ref _array, null) is { } array) ArrayPool<byte>.Shared.Return(array);
        }
    }
}
