using System.Text.Json;
using DualChunk.Core;
using DualChunk.Server.Pipeline;
using static DualChunk.Server.Pipeline.InferenceException;

namespace DualChunk.Server.Rest;

/// <summary>What the client asked of the response: its id, and whether the output goes as binary data.</summary>
internal readonly record struct OipResponseOptions(string? Id, bool BinaryOutput);

/// <summary>
/// Decodes an OIP REST inference request (JSON, or JSON + binary tensor data after
/// <c>Inference-Header-Content-Length</c> bytes) without building a document. When the input's name, datatype and
/// shape come before its data (as clients write them) they are checked first and the data is read in the same pass
/// straight into a buffer of exactly the shape's size; otherwise the data's place is remembered and it is read in a
/// second pass once the shape has been checked. Every size a client claims is checked against the body and the
/// limits before anything is allocated from it.
/// </summary>
internal static class OipRequestDecoder
{
    private const string InputName = "input", OutputName = "output";

    /// <param name="body">The whole body.</param>
    /// <param name="headerLength">The Inference-Header-Content-Length value; null when the body is JSON only.</param>
    /// <param name="limits">The model's E, C and the request limits.</param>
    public static (InferenceRequest Request, OipResponseOptions Response) Decode(ReadOnlySpan<byte> body, long? headerLength, InputLimits limits)
    {
        if (headerLength is long hl && (hl < 0 || hl > body.Length))
            throw new InferenceException(Inv($"Inference-Header-Content-Length is {hl}, but the body has {body.Length} bytes; it must be the length of the JSON part, at most the body's."));
        var json = headerLength is long l ? body[..(int)l] : body;
        var binary = headerLength is long l2 ? body[(int)l2..] : [];

        var header = ReadHeader(json, limits);
        var parsedFirst = header.Input.Parsed; // disposed here on any failure below, else handed to the request
        try
        {
            return Decode(header, json, binary, headerLength, limits);
        }
        catch
        {
            parsedFirst?.Dispose();
            throw;
        }
    }

    private static (InferenceRequest Request, OipResponseOptions Response) Decode(Header header, ReadOnlySpan<byte> json, ReadOnlySpan<byte> binary, long? headerLength, InputLimits limits)
    {
        var p = header.Parameters;
        var (mode, sequence) = CheckParameters(p);

        if (header.InputCount == 0)
            throw new InferenceException("The request has no inputs; send \"inputs\": [{\"name\": \"input\", \"datatype\": \"FP32\", \"shape\": [B, N, E], \"data\": [...]}].");
        if (header.InputCount > 1)
            throw new InferenceException(Inv($"The request has {header.InputCount} inputs; the model has one, \"input\" ([B, N, E] or [N, E], FP32)."));
        var input = header.Input;
        var (batch, seqLen, batched) = CheckTensor(input.Name, input.Datatype, input.Shape, limits);
        long count = (long)batch * seqLen * limits.EmbedDim; // within the limits
        int elementSize = TensorData.ElementSize(input.Datatype!);

        if (input.BinaryDataSize is long size)
        {
            if (input.DataStart >= 0)
                throw new InferenceException("Input \"input\" has both \"data\" and the parameter \"binary_data_size\"; send one of them.");
            if (headerLength is null)
                throw new InferenceException("Input \"input\" has \"binary_data_size\", but the request has no Inference-Header-Content-Length header saying where the JSON ends and the binary data begins.");
            if (size != count * elementSize)
                throw new InferenceException(Inv($"Input \"input\" claims binary_data_size {size}, but its shape [{string.Join(", ", input.Shape!)}] of {input.Datatype} needs {count * elementSize} bytes."));
            if (size > binary.Length)
                throw new InferenceException(Inv($"Input \"input\" claims binary_data_size {size}, but the body holds {binary.Length} bytes after the {headerLength}-byte JSON header; the body is truncated or Inference-Header-Content-Length is wrong."));
            if (size < binary.Length)
                throw new InferenceException(Inv($"The body has {binary.Length} bytes after the {headerLength}-byte JSON header, but the inputs claim {size} (binary_data_size); Inference-Header-Content-Length or binary_data_size is wrong."));
            var parsed = ParsedInput.Allocate(batch, seqLen, limits.EmbedDim, batched);
            try
            {
                TensorData.ReadLittleEndian(binary, input.Datatype!, parsed.Writable, seqLen, limits.EmbedDim);
                return (new InferenceRequest(parsed, mode, sequence), new OipResponseOptions(header.Id, header.BinaryOutput || p.BinaryDataOutput));
            }
            catch
            {
                parsed.Dispose();
                throw;
            }
        }
        if (binary.Length > 0)
            throw new InferenceException(Inv($"The body has {binary.Length} bytes after the {headerLength}-byte JSON header, but no input has the parameter \"binary_data_size\"."));
        if (input.DataStart < 0)
            throw new InferenceException("Input \"input\" has no \"data\" (nor the parameter \"binary_data_size\" with the data after the JSON).");
        if (input.Parsed is { } first)
            return (new InferenceRequest(first, mode, sequence), new OipResponseOptions(header.Id, header.BinaryOutput || p.BinaryDataOutput));
        var data = ParsedInput.Allocate(batch, seqLen, limits.EmbedDim, batched);
        try
        {
            ReadData(json[input.DataStart..input.DataEnd], input.Datatype!, data.Writable, input.Shape!, seqLen, limits.EmbedDim);
            return (new InferenceRequest(data, mode, sequence), new OipResponseOptions(header.Id, header.BinaryOutput || p.BinaryDataOutput));
        }
        catch
        {
            data.Dispose();
            throw;
        }
    }

    /// <summary>The request parameters' output mode and sequence, checked.</summary>
    private static (OutputMode Mode, SequenceParameters Sequence) CheckParameters(Parameters p)
    {
        var mode = InferenceRequest.ParseMode(p.OutputMode, "the request parameter \"output_mode\"");
        var sequence = new SequenceParameters(p.SequenceId, p.SequenceIdIsString, p.SequenceStart, p.SequenceEnd, p.SequenceLength);
        sequence.Validate();
        return (mode, sequence);
    }

    /// <summary>Checks an input tensor's name, datatype and shape ([B, N, E] or [N, E]) against the model and the limits.</summary>
    public static (int Batch, int SeqLen, bool Batched) CheckTensor(string? name, string? datatype, IReadOnlyList<long>? shape, InputLimits limits)
    {
        int e = limits.EmbedDim;
        if (name != InputName)
            throw new InferenceException($"Unknown input \"{Short(name)}\"; the model's only input is \"input\" ([B, N, {e}] or [N, {e}], FP32).");
        if (datatype is not (TensorData.Fp32 or TensorData.Fp64))
            throw new InferenceException($"Input \"input\" has datatype \"{Short(datatype)}\"; send FP32 (or FP64, converted to FP32).");
        if (shape is null || shape.Count is not (2 or 3))
            throw new InferenceException(Inv($"Input \"input\" has shape [{(shape is null ? "" : string.Join(", ", shape))}]; it must be [B, N, {e}] or [N, {e}]."));
        foreach (long d in shape)
        {
            if (d < 0) throw new InferenceException(Inv($"Input \"input\" has shape [{string.Join(", ", shape)}]; dimensions cannot be negative."));
        }
        if (shape[^1] != e)
            throw new InferenceException(Inv($"Input \"input\" has shape [{string.Join(", ", shape)}], but the model's embed size E is {e}: send [B, N, {e}] or [N, {e}]."));
        bool batched = shape.Count == 3;
        long batch = batched ? shape[0] : 1, seqLen = batched ? shape[1] : shape[0];
        limits.CheckShape(batch, seqLen);
        return ((int)batch, (int)seqLen, batched);
    }

    private static string Short(string? s) => s is null ? "(none)" : s.Length > 64 ? s[..64] + "…" : s;

    private sealed class InputHeader
    {
        public string? Name, Datatype;
        public List<long>? Shape;
        public long? BinaryDataSize;
        public int DataStart = -1, DataEnd = -1;
        public ParsedInput? Parsed; // the data, read in the first pass (name, datatype and shape came before it)
    }

    private sealed class Parameters
    {
        public string? OutputMode, SequenceId;
        public bool SequenceIdIsString, SequenceStart, SequenceEnd, BinaryDataOutput;
        public long? SequenceLength;
    }

    private sealed class Header
    {
        public string? Id;
        public Parameters Parameters = new();
        public InputHeader Input = new();
        public int InputCount;
        public bool BinaryOutput;
    }

    private static Header ReadHeader(ReadOnlySpan<byte> json, InputLimits limits)
    {
        var reader = new Utf8JsonReader(json, new JsonReaderOptions { MaxDepth = 64 });
        var h = new Header();
        try
        {
            Read(ref reader);
            if (reader.TokenType != JsonTokenType.StartObject)
                throw new InferenceException("The body must be a JSON object: {\"inputs\": [{\"name\": \"input\", \"datatype\": \"FP32\", \"shape\": [...], \"data\": [...]}]}.");
            while (Next(ref reader))
            {
                if (reader.ValueTextEquals("id"u8))
                {
                    Read(ref reader);
                    if (reader.TokenType != JsonTokenType.String || reader.ValueSpan.Length > 256)
                        throw new InferenceException("\"id\" must be a string of at most 256 characters.");
                    h.Id = reader.GetString();
                }
                else if (reader.ValueTextEquals("parameters"u8))
                {
                    ReadParameters(ref reader, h.Parameters, null);
                    CheckParameters(h.Parameters); // before the inputs' data is skipped over (Decode checks them first anyway)
                }
                else if (reader.ValueTextEquals("inputs"u8))
                {
                    Read(ref reader);
                    Expect(ref reader, JsonTokenType.StartArray, "\"inputs\" must be an array of input objects.");
                    while (true)
                    {
                        Read(ref reader);
                        if (reader.TokenType == JsonTokenType.EndArray) break;
                        Expect(ref reader, JsonTokenType.StartObject, "Each entry of \"inputs\" must be an object {\"name\", \"datatype\", \"shape\", \"data\"}.");
                        h.InputCount++;
                        ReadInput(ref reader, h.InputCount == 1 ? h.Input : new InputHeader(), h.InputCount == 1 ? limits : null);
                    }
                }
                else if (reader.ValueTextEquals("outputs"u8))
                {
                    Read(ref reader);
                    Expect(ref reader, JsonTokenType.StartArray, "\"outputs\" must be an array of requested outputs.");
                    while (true)
                    {
                        Read(ref reader);
                        if (reader.TokenType == JsonTokenType.EndArray) break;
                        Expect(ref reader, JsonTokenType.StartObject, "Each entry of \"outputs\" must be an object {\"name\": \"output\"}.");
                        h.BinaryOutput |= ReadRequestedOutput(ref reader);
                    }
                }
                else
                {
                    Read(ref reader);
                    reader.Skip(); // keys of other servers' dialects: ignored, as the protocol lets a server do
                }
            }
            var rest = json[(int)reader.BytesConsumed..];
            foreach (byte b in rest)
            {
                if (b is not ((byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n'))
                    throw new InferenceException(Inv($"The body has {rest.Length} bytes after the JSON object; binary data needs the Inference-Header-Content-Length header (the JSON's length)."));
            }
            return h;
        }
        catch (JsonException ex)
        {
            h.Input.Parsed?.Dispose();
            throw new InferenceException(Inv($"Malformed JSON at byte {reader.BytesConsumed}: {ex.Message}"));
        }
        catch
        {
            h.Input.Parsed?.Dispose();
            throw;
        }
    }

    // limits: for the first input only. When its name, datatype and shape come before its data (as clients write
    // them) they are checked before the data is skipped over, so a wrong one is refused without tokenizing the data.
    private static void ReadInput(ref Utf8JsonReader reader, InputHeader input, InputLimits? limits)
    {
        while (Next(ref reader))
        {
            if (reader.ValueTextEquals("name"u8)) input.Name = ReadString(ref reader, "An input's \"name\"");
            else if (reader.ValueTextEquals("datatype"u8)) input.Datatype = ReadString(ref reader, "An input's \"datatype\"");
            else if (reader.ValueTextEquals("shape"u8))
            {
                Read(ref reader);
                Expect(ref reader, JsonTokenType.StartArray, "An input's \"shape\" must be an array of integers.");
                input.Shape = [];
                while (true)
                {
                    Read(ref reader);
                    if (reader.TokenType == JsonTokenType.EndArray) break;
                    if (reader.TokenType != JsonTokenType.Number || !reader.TryGetInt64(out long d))
                        throw new InferenceException("An input's \"shape\" must be an array of integers.");
                    if (input.Shape.Count == 8) throw new InferenceException("An input's \"shape\" has more than 8 dimensions; the model takes [B, N, E] or [N, E].");
                    input.Shape.Add(d);
                }
            }
            else if (reader.ValueTextEquals("parameters"u8))
            {
                var p = new Parameters();
                ReadParameters(ref reader, p, input);
            }
            else if (reader.ValueTextEquals("data"u8))
            {
                Read(ref reader);
                if (reader.TokenType != JsonTokenType.StartArray)
                    throw new InferenceException("An input's \"data\" must be an array of numbers (flat, or nested as the shape).");
                input.Parsed?.Dispose(); // a second "data": the last one counts, as before
                input.Parsed = null;
                input.DataStart = (int)reader.TokenStartIndex;
                if (limits is InputLimits l && input.Name is not null && input.Datatype is not null && input.Shape is not null)
                {
                    // One pass: the shape fits, so the data goes straight into a buffer of exactly its size.
                    var (batch, seqLen, batched) = CheckTensor(input.Name, input.Datatype, input.Shape, l);
                    input.Parsed = ParsedInput.Allocate(batch, seqLen, l.EmbedDim, batched);
                    ReadArray(ref reader, input.Datatype, input.Parsed.Writable, input.Shape, seqLen, l.EmbedDim);
                }
                else
                {
                    reader.Skip(); // read later, once the shape is known to fit
                }
                input.DataEnd = (int)reader.BytesConsumed;
            }
            else
            {
                Read(ref reader);
                reader.Skip();
            }
        }
    }

    private static bool ReadRequestedOutput(ref Utf8JsonReader reader)
    {
        bool binary = false;
        while (Next(ref reader))
        {
            if (reader.ValueTextEquals("name"u8))
            {
                string? name = ReadString(ref reader, "A requested output's \"name\"");
                if (name != OutputName)
                    throw new InferenceException($"Unknown output \"{Short(name)}\"; the model's only output is \"output\".");
            }
            else if (reader.ValueTextEquals("parameters"u8))
            {
                Read(ref reader);
                Expect(ref reader, JsonTokenType.StartObject, "\"parameters\" must be an object.");
                while (Next(ref reader))
                {
                    if (reader.ValueTextEquals("binary_data"u8)) binary = ReadBool(ref reader, "binary_data");
                    else
                    {
                        Read(ref reader);
                        reader.Skip();
                    }
                }
            }
            else
            {
                Read(ref reader);
                reader.Skip();
            }
        }
        return binary;
    }

    /// <summary>A request's parameters (<paramref name="input"/> null) or an input's (binary_data_size).</summary>
    private static void ReadParameters(ref Utf8JsonReader reader, Parameters p, InputHeader? input)
    {
        Read(ref reader);
        Expect(ref reader, JsonTokenType.StartObject, "\"parameters\" must be an object of name: value pairs.");
        while (Next(ref reader))
        {
            if (input is not null && reader.ValueTextEquals("binary_data_size"u8))
            {
                Read(ref reader);
                if (reader.TokenType != JsonTokenType.Number || !reader.TryGetInt64(out long size) || size < 0)
                    throw new InferenceException("\"binary_data_size\" must be a non-negative integer (the input's bytes after the JSON header).");
                input.BinaryDataSize = size;
            }
            else if (input is null && reader.ValueTextEquals("output_mode"u8)) p.OutputMode = ReadString(ref reader, "The parameter \"output_mode\"");
            else if (input is null && reader.ValueTextEquals("sequence_id"u8))
            {
                Read(ref reader);
                if (reader.TokenType == JsonTokenType.Number)
                {
                    if (!reader.TryGetUInt64(out ulong id))
                        throw new InferenceException("\"sequence_id\" must be an unsigned 64-bit integer or a string.");
                    p.SequenceId = id == 0 ? null : id.ToString(System.Globalization.CultureInfo.InvariantCulture);
                    p.SequenceIdIsString = false;
                }
                else if (reader.TokenType == JsonTokenType.String)
                {
                    if (reader.ValueSpan.Length > 256) throw new InferenceException("\"sequence_id\" is longer than 256 characters.");
                    string id = reader.GetString()!;
                    p.SequenceId = id.Length == 0 ? null : id;
                    p.SequenceIdIsString = true;
                }
                else throw new InferenceException("\"sequence_id\" must be an unsigned 64-bit integer or a string.");
            }
            else if (input is null && reader.ValueTextEquals("sequence_start"u8)) p.SequenceStart = ReadBool(ref reader, "sequence_start");
            else if (input is null && reader.ValueTextEquals("sequence_end"u8)) p.SequenceEnd = ReadBool(ref reader, "sequence_end");
            else if (input is null && reader.ValueTextEquals("sequence_length"u8))
            {
                Read(ref reader);
                if (reader.TokenType != JsonTokenType.Number || !reader.TryGetInt64(out long length) || length < 0)
                    throw new InferenceException("\"sequence_length\" must be a non-negative integer: the positions the sequence holds before this request.");
                p.SequenceLength = length;
            }
            else if (input is null && reader.ValueTextEquals("binary_data_output"u8)) p.BinaryDataOutput = ReadBool(ref reader, "binary_data_output");
            else
            {
                Read(ref reader);
                reader.Skip(); // other servers' parameters (priority, timeout, ...): ignored
            }
        }
    }

    /// <summary>The tensor data (flat or nested) into <paramref name="into"/>: exactly its length of finite numbers.</summary>
    private static void ReadData(ReadOnlySpan<byte> json, string datatype, Span<float> into, List<long> shape, int seqLen, int e)
    {
        var reader = new Utf8JsonReader(json, new JsonReaderOptions { MaxDepth = 16 });
        try
        {
            Read(ref reader);
            ReadArray(ref reader, datatype, into, shape, seqLen, e);
        }
        catch (JsonException ex)
        {
            throw new InferenceException(Inv($"Malformed \"data\": {ex.Message}"));
        }
    }

    /// <summary>The numbers of the array at the reader (on its StartArray; flat or nested) into <paramref name="into"/>, exactly as many.</summary>
    private static void ReadArray(ref Utf8JsonReader reader, string datatype, Span<float> into, List<long> shape, int seqLen, int e)
    {
        int depth = reader.CurrentDepth;
        int count = 0;
        bool fp64 = datatype == TensorData.Fp64;
        while (true)
        {
            Read(ref reader);
            switch (reader.TokenType)
            {
                case JsonTokenType.StartArray:
                    continue;
                case JsonTokenType.EndArray:
                    if (reader.CurrentDepth == depth) break;
                    continue;
                case JsonTokenType.Number:
                    if (count == into.Length)
                        throw new InferenceException(Inv($"Input \"input\" has more than {into.Length} values in \"data\"; its shape [{string.Join(", ", shape)}] holds {into.Length}."));
                    if (fp64)
                    {
                        if (!reader.TryGetDouble(out double d)) throw new InferenceException(Inv($"data[{count}] is not a number."));
                        into[count] = TensorData.Finite(d, count, seqLen, e);
                    }
                    else
                    {
                        if (!reader.TryGetSingle(out float f) || !float.IsFinite(f))
                            throw new InferenceException(Inv($"data[{count}] is not a finite float32 (NaN/∞ or out of range); the input must be finite."));
                        into[count] = f;
                    }
                    count++;
                    continue;
                case JsonTokenType.String:
                    throw new InferenceException(Inv($"data[{count}] is a string; the input must be JSON numbers (NaN and Infinity are not allowed)."));
                default:
                    throw new InferenceException(Inv($"data[{count}] is {reader.TokenType}; \"data\" holds numbers (flat, or nested arrays of numbers)."));
            }
            break; // the array's own EndArray
        }
        if (count != into.Length)
            throw new InferenceException(Inv($"Input \"input\" has {count} values in \"data\", but its shape [{string.Join(", ", shape)}] needs {into.Length}."));
    }

    private static void Read(ref Utf8JsonReader reader)
    {
        if (!reader.Read())
            throw new InferenceException(Inv($"Malformed JSON: it ends early (after {reader.BytesConsumed} bytes)."));
    }

    /// <summary>Moves to the next property name of the current object; false at its end.</summary>
    private static bool Next(ref Utf8JsonReader reader)
    {
        Read(ref reader);
        return reader.TokenType == JsonTokenType.PropertyName;
    }

    private static void Expect(ref Utf8JsonReader reader, JsonTokenType type, string message)
    {
        if (reader.TokenType != type) throw new InferenceException(message);
    }

    private static string? ReadString(ref Utf8JsonReader reader, string what)
    {
        Read(ref reader);
        if (reader.TokenType != JsonTokenType.String || reader.ValueSpan.Length > 256)
            throw new InferenceException($"{what} must be a string (at most 256 characters).");
        return reader.GetString();
    }

    private static bool ReadBool(ref Utf8JsonReader reader, string name)
    {
        Read(ref reader);
        return reader.TokenType switch
        {
            JsonTokenType.True => true,
            JsonTokenType.False => false,
            _ => throw new InferenceException($"\"{name}\" must be true or false."),
        };
    }
}
