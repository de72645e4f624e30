using System.Buffers;
using System.Runtime.InteropServices;
using DualChunk.Server.Grpc;
using Google.Protobuf;
using Grpc.Core;

namespace DualChunk.Server.Tests;

/// <summary>
/// ModelInferRequestMarshaller against protobuf's own parser: the same message from the same bytes (in one segment
/// or split anywhere, as HTTP/2 frames split them), the same refusals for bytes that are not a message, and the raw
/// tensor bytes in pooled buffers that cannot be read once returned.
/// </summary>
[TestFixture]
public sealed class ModelInferRequestMarshallerTests
{
    [Test]
    public void RandomMessagesReadAsProtobufReadsThem([Values(1, 2, 3)] int seed)
    {
        var random = new Random(seed);
        for (int i = 0; i < 150; i++)
        {
            var expected = RandomMessage(random);
            byte[] bytes = expected.ToByteArray();
            var actual = Read(ModelInferRequestMarshaller.Instance, Split(bytes, random));
            Assert.That(actual.ToByteArray(), Is.EqualTo(bytes), $"message {i}, {bytes.Length} bytes");
            foreach (var raw in actual.RawInputContents)
                Assert.That(MemoryMarshal.TryGetMemoryManager<byte, MemoryManager<byte>>(raw.Memory, out _), Is.True, "raw_input_contents is pooled");
            ModelInferRequestMarshaller.ReturnRawContents(actual);
            foreach (var raw in actual.RawInputContents)
                Assert.Throws<ObjectDisposedException>(() => _ = raw.Span[0], "a returned buffer cannot be read");
            ModelInferRequestMarshaller.ReturnRawContents(actual); // twice is harmless
        }
    }

    [Test]
    public void EveryPrefixAndRandomCorruptionIsReadOrRefusedAsProtobufDoes([Values(4, 5)] int seed)
    {
        var random = new Random(seed);
        int refused = 0, read = 0;
        for (int m = 0; m < 10; m++)
        {
            byte[] bytes = RandomMessage(random, maxRaw: 40).ToByteArray();
            for (int length = 0; length < bytes.Length; length++)
                Agree(bytes.AsSpan(0, length).ToArray(), random, ref refused, ref read);
            for (int k = 0; k < 300; k++)
            {
                byte[] corrupt = (byte[])bytes.Clone();
                for (int flips = random.Next(1, 4); flips > 0; flips--)
                    corrupt[random.Next(corrupt.Length)] = (byte)random.Next(256);
                Agree(corrupt, random, ref refused, ref read);
            }
        }
        TestContext.Out.WriteLine($"{read} read, {refused} refused");
        Assert.That(refused, Is.GreaterThan(100), "the corruptions exercise the refusals");
        Assert.That(read, Is.GreaterThan(100), "and the prefixes and corruptions that are still messages");
    }

    [Test]
    public void UnknownFieldsAndGroupsAreSkippedAsProtobufSkipsThem()
    {
        var known = RandomMessage(new Random(7));
        using var stream = new MemoryStream();
        var output = new CodedOutputStream(stream);
        output.WriteTag(20, WireFormat.WireType.StartGroup);          // unknown group 20 holding a field 7 and a nested group
        output.WriteTag(7, WireFormat.WireType.LengthDelimited);
        output.WriteBytes(ByteString.CopyFrom(1, 2, 3));
        output.WriteTag(21, WireFormat.WireType.StartGroup);
        output.WriteTag(1, WireFormat.WireType.Fixed32);
        output.WriteFixed32(5);
        output.WriteTag(21, WireFormat.WireType.EndGroup);
        output.WriteTag(20, WireFormat.WireType.EndGroup);
        output.WriteTag(30, WireFormat.WireType.Fixed64);
        output.WriteFixed64(9);
        output.WriteTag(31, WireFormat.WireType.Varint);
        output.WriteUInt64(ulong.MaxValue);
        output.Flush();
        known.WriteTo(output);
        output.Flush();
        byte[] bytes = stream.ToArray();
        Assert.That(Read(ModelInferRequestMarshaller.Instance, new ReadOnlySequence<byte>(bytes)).ToByteArray(), Is.EqualTo(ModelInferRequest.Parser.ParseFrom(bytes).ToByteArray()));
    }

    [TestCase(new byte[] { 0x3A, 0x05, 1, 2, 3 }, "claims 5 bytes")]                               // raw_input_contents cut short
    [TestCase(new byte[] { 0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F }, "claims 4294967295 bytes")]       // a length over 2 GB
    [TestCase(new byte[] { 0x3A, 0x01, 9, 0x0B }, "ends inside group 1")]                          // an unclosed group
    [TestCase(new byte[] { 0x3A, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01 }, "longer than 10 bytes")]
    [TestCase(new byte[] { 0x3A, 0x00, 0x00 }, "field number 0")]
    public void MalformedMessagesAreInvalidArgumentNamingWhatIsWrong(byte[] bytes, string why)
    {
        var ex = Assert.Throws<RpcException>(() => Read(ModelInferRequestMarshaller.Instance, new ReadOnlySequence<byte>(bytes)));
        Assert.Multiple(() =>
        {
            Assert.That(ex!.StatusCode, Is.EqualTo(StatusCode.InvalidArgument));
            Assert.That(ex.Status.Detail, Does.Contain("not a valid inference.ModelInferRequest message").And.Contain(why));
        });
        Assert.Throws<InvalidProtocolBufferException>(() => ModelInferRequest.Parser.ParseFrom(bytes), "protobuf refuses it too");
    }

    private static void Agree(byte[] bytes, Random random, ref int refused, ref int read)
    {
        ModelInferRequest? expected = null;
        try
        {
            expected = ModelInferRequest.Parser.ParseFrom(bytes);
        }
        catch (InvalidProtocolBufferException)
        {
        }
        if (expected is null)
        {
            var ex = Assert.Throws<RpcException>(() => Read(ModelInferRequestMarshaller.Instance, Split(bytes, random)), Convert.ToHexString(bytes));
            Assert.That(ex!.StatusCode, Is.EqualTo(StatusCode.InvalidArgument), ex.Status.Detail);
            refused++;
        }
        else
        {
            var actual = Read(ModelInferRequestMarshaller.Instance, Split(bytes, random));
            Assert.That(actual.ToByteArray(), Is.EqualTo(expected.ToByteArray()), Convert.ToHexString(bytes));
            ModelInferRequestMarshaller.ReturnRawContents(actual);
            read++;
        }
    }

    // The server's ModelInferRequest (internal) is not this project's (generated for the client from the same proto):
    // messages are compared by their bytes, which protobuf writes in field order whatever order they were read in.
    private static T Read<T>(Marshaller<T> marshaller, ReadOnlySequence<byte> payload) => marshaller.ContextualDeserializer(new Payload(payload));

    private static ModelInferRequest RandomMessage(Random random, int maxRaw = 5000)
    {
        var message = new ModelInferRequest { ModelName = "m" + random.Next(100), Id = random.Next(3) == 0 ? "" : "id" + random.Next() };
        if (random.Next(2) == 0) message.ModelVersion = random.Next(5).ToString(System.Globalization.CultureInfo.InvariantCulture);
        if (random.Next(2) == 0) message.Parameters["output_mode"] = new InferParameter { StringParam = "all" };
        if (random.Next(2) == 0) message.Parameters["sequence_id"] = new InferParameter { Uint64Param = (ulong)random.NextInt64() };
        for (int i = random.Next(3); i > 0; i--)
        {
            var input = new ModelInferRequest.Types.InferInputTensor { Name = "input", Datatype = random.Next(2) == 0 ? "FP32" : "FP64" };
            input.Shape.AddRange(Enumerable.Range(0, random.Next(4)).Select(_ => (long)random.Next(1, 300)));
            if (random.Next(2) == 0)
                input.Contents = new InferTensorContents { Fp32Contents = { Enumerable.Range(0, random.Next(50)).Select(_ => random.NextSingle()) } };
            message.Inputs.Add(input);
        }
        if (random.Next(2) == 0) message.Outputs.Add(new ModelInferRequest.Types.InferRequestedOutputTensor { Name = "output" });
        for (int i = random.Next(4); i > 0; i--)
        {
            byte[] raw = new byte[random.Next(maxRaw)];
            random.NextBytes(raw);
            message.RawInputContents.Add(ByteString.CopyFrom(raw));
        }
        return message;
    }

    /// <summary><paramref name="bytes"/> as one segment or as many, cut at random places.</summary>
    private static ReadOnlySequence<byte> Split(byte[] bytes, Random random)
    {
        if (bytes.Length == 0 || random.Next(4) == 0) return new ReadOnlySequence<byte>(bytes);
        int at = 0, maxSegment = random.Next(1, 100);
        Segment? first = null, last = null;
        while (at < bytes.Length)
        {
            int length = Math.Min(bytes.Length - at, random.Next(1, maxSegment + 1));
            var segment = new Segment(bytes.AsMemory(at, length), at);
            if (last is null) first = segment; else last.Next = segment;
            last = segment;
            at += length;
        }
        return new ReadOnlySequence<byte>(first!, 0, last!, last!.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long runningIndex)
        {
            Memory = memory;
            RunningIndex = runningIndex;
        }

        public new Segment? Next
        {
            get => (Segment?)base.Next;
            set => base.Next = value;
        }
    }

    private sealed class Payload(ReadOnlySequence<byte> payload) : DeserializationContext
    {
        public override int PayloadLength => (int)payload.Length;

        public override byte[] PayloadAsNewBuffer() => payload.ToArray();

        public override ReadOnlySequence<byte> PayloadAsReadOnlySequence() => payload;
    }
}
