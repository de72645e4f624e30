using CommunityToolkit.HighPerformance.Buffers;
using System.Text.Json;
using DualChunk.Server.Pipeline;
using static DualChunk.Server.InputLimits;

namespace DualChunk.Server;

/// <summary>
/// Parses <c>{"input": [[[...E floats]...N rows]...B], "output_mode": "last"|"all"|"mean"}</c> (or a 2-D
/// <c>input</c>, B = 1) with a <see cref="Utf8JsonReader"/>, counting and checking as it goes: a wrong E, a ragged
/// array or a batch/length above the limits is rejected at the first value that shows it, so the float buffer never
/// grows past what the limits admit (nor past what the body holds).
/// </summary>
internal static class JsonInput
{
    public static (ParsedInput Input, string? Mode) Parse(ReadOnlySpan<byte> body, InputLimits limits)
    {
        var reader = new Utf8JsonReader(body, new JsonReaderOptions { MaxDepth = 8, CommentHandling = JsonCommentHandling.Disallow });
        ParsedInput? input = null;
        string? mode = null;
        bool haveMode = false;
        try
        {
            Read(ref reader);
            if (reader.TokenType != JsonTokenType.StartObject)
                throw new InferenceException("The body must be a JSON object: {\"input\": [[[...]]], \"output_mode\": \"last\"}.");
            while (true)
            {
                Read(ref reader);
                if (reader.TokenType == JsonTokenType.EndObject) break;
                if (reader.ValueTextEquals("input"u8))
                {
                    if (input is not null) throw new InferenceException("The body has \"input\" twice.");
                    input = ParseInput(ref reader, limits);
                }
                else if (reader.ValueTextEquals("output_mode"u8))
                {
                    if (haveMode) throw new InferenceException("The body has \"output_mode\" twice.");
                    haveMode = true;
                    Read(ref reader);
                    if (reader.TokenType == JsonTokenType.Null) continue;
                    if (reader.TokenType != JsonTokenType.String || reader.ValueSpan.Length > 64)
                        throw new InferenceException("\"output_mode\" must be one of the strings \"last\", \"all\", \"mean\".");
                    mode = reader.GetString();
                }
                else
                {
                    string name = reader.ValueSpan.Length <= 64 ? reader.GetString() ?? "" : "(a long name)";
                    throw new InferenceException($"Unknown property \"{name}\"; the body has \"input\" and optionally \"output_mode\" (\"last\", \"all\" or \"mean\").");
                }
            }
            if (reader.Read())
                throw new InferenceException("The body has data after the JSON object.");
            if (input is null)
                throw new InferenceException("The body has no \"input\": send {\"input\": [[[...E floats]...N rows]...B]}.");
            var result = (input, mode);
            input = null;
            return result;
        }
        catch (JsonException ex)
        {
            throw new InferenceException(Inv($"Malformed JSON at byte {reader.BytesConsumed}: {ex.Message}"));
        }
        finally
        {
            input?.Dispose();
        }
    }

    private static void Read(ref Utf8JsonReader reader)
    {
        if (!reader.Read())
            throw new InferenceException(Inv($"Malformed JSON: the body ends early (after {reader.BytesConsumed} bytes)."));
    }

    private static ParsedInput ParseInput(ref Utf8JsonReader reader, InputLimits limits)
    {
        int e = limits.EmbedDim;
        var buffer = new FloatBuffer(limits.MaxFloats);
        try
        {
            Read(ref reader);
            if (reader.TokenType != JsonTokenType.StartArray)
                throw new InferenceException("\"input\" must be an array: [[[...E floats]...N rows]...B] or [[...E floats]...N rows].");
            Read(ref reader);
            if (reader.TokenType == JsonTokenType.EndArray)
                throw new InferenceException("\"input\" is empty.");
            if (reader.TokenType != JsonTokenType.StartArray)
                throw new InferenceException($"\"input\" must hold arrays, found {reader.TokenType} at input[0].");
            // input[0] is open: its first token tells the rank (a number: rows of a 2-D input; an array: sequences).
            Read(ref reader);
            bool batched = reader.TokenType == JsonTokenType.StartArray;
            int batch = 0, seqLen = -1;
            if (!batched)
            {
                // 2-D: input[n] are rows; the reader is on input[0]'s first token.
                int n = 0;
                ReadRow(ref reader, ref buffer, 0, n, e, false, firstTokenRead: true);
                for (n = 1; ; n++)
                {
                    Read(ref reader);
                    if (reader.TokenType == JsonTokenType.EndArray) break;
                    limits.CheckSeqLen(n + 1);
                    ExpectStartArray(ref reader, $"input[{n}]", "a row of E floats");
                    ReadRow(ref reader, ref buffer, 0, n, e, false, firstTokenRead: false);
                }
                batch = 1;
                seqLen = n;
            }
            else
            {
                for (int b = 0; ; b++)
                {
                    if (b > 0)
                    {
                        Read(ref reader);
                        if (reader.TokenType == JsonTokenType.EndArray) break;
                        limits.CheckBatch(b + 1);
                        ExpectStartArray(ref reader, $"input[{b}]", "a sequence [[...E floats]...N rows]");
                        Read(ref reader);
                    }
                    // The reader is on input[b]'s first token.
                    int n = 0;
                    while (reader.TokenType != JsonTokenType.EndArray)
                    {
                        limits.CheckSeqLen(n + 1);
                        if (seqLen >= 0 && n >= seqLen)
                            throw new InferenceException(Inv($"Ragged input: input[{b}] has more than {seqLen} rows, input[0] has {seqLen}; every sequence needs the same N."));
                        ExpectStartArray(ref reader, $"input[{b}][{n}]", "a row of E floats");
                        ReadRow(ref reader, ref buffer, b, n, e, true, firstTokenRead: false);
                        n++;
                        Read(ref reader);
                    }
                    if (n == 0) throw new InferenceException(Inv($"input[{b}] is empty; every sequence needs N rows of {e} floats."));
                    if (seqLen >= 0 && n != seqLen)
                        throw new InferenceException(Inv($"Ragged input: input[{b}] has {n} rows, input[0] has {seqLen}; every sequence needs the same N."));
                    seqLen = n;
                    batch = b + 1;
                }
            }
            limits.CheckShape(batch, seqLen);
            return buffer.ToInput(batch, seqLen, e, batched);
        }
        finally
        {
            buffer.Dispose();
        }
    }

    private static void ExpectStartArray(ref Utf8JsonReader reader, string where, string what)
    {
        if (reader.TokenType != JsonTokenType.StartArray)
            throw new InferenceException($"Ragged input: {where} is {Describe(reader.TokenType)} where {what} is expected; every level must have the same depth.");
    }

    private static string Describe(JsonTokenType t) => t switch
    {
        JsonTokenType.Number => "a number",
        JsonTokenType.String => "a string",
        JsonTokenType.StartArray => "an array",
        JsonTokenType.StartObject => "an object",
        JsonTokenType.True or JsonTokenType.False => "a boolean",
        JsonTokenType.Null => "null",
        _ => t.ToString(),
    };

    /// <summary>Reads one row (its '[' already read; with <paramref name="firstTokenRead"/> its first token too).</summary>
    private static void ReadRow(ref Utf8JsonReader reader, ref FloatBuffer buffer, int b, int n, int e, bool batched, bool firstTokenRead)
    {
        string Where(int i) => batched ? Inv($"input[{b}][{n}][{i}]") : Inv($"input[{n}][{i}]");
        string Row() => batched ? Inv($"input[{b}][{n}]") : Inv($"input[{n}]");
        int count = 0;
        if (!firstTokenRead) Read(ref reader);
        while (reader.TokenType != JsonTokenType.EndArray)
        {
            if (reader.TokenType != JsonTokenType.Number)
                throw new InferenceException(reader.TokenType == JsonTokenType.String
                    ? $"{Where(count)} is a string; the input must be JSON numbers (NaN and Infinity are not allowed)."
                    : $"Ragged input: {Where(count)} is {Describe(reader.TokenType)} where a number is expected.");
            if (count == e)
                throw new InferenceException(Inv($"{Row()} has more than {e} values; the model's embed size E is {e}."));
            if (!reader.TryGetSingle(out float v) || !float.IsFinite(v))
                throw new InferenceException($"{Where(count)} is not a finite float32 (NaN/∞ or out of range); the input must be finite.");
            buffer.Add(v);
            count++;
            Read(ref reader);
        }
        if (count != e)
            throw new InferenceException(Inv($"{Row()} has {count} values; the model's embed size E is {e}."));
    }

    /// <summary>A growing pooled float buffer that never exceeds a cap.</summary>
    private struct FloatBuffer(long cap) : IDisposable
    {
        private ArrayPoolBufferWriter<float>? _data;

        public void Add(float v)
        {
            _data ??= new ArrayPoolBufferWriter<float>(1024);
            // The JSON checks reject input beyond the limits before it gets here; this cap is a second guard.
            if (_data.WrittenCount >= cap) throw new InferenceException("The input holds more floats than MaxBatch × MaxSeqLen × E allow.");
            _data.GetSpan(1)[0] = v;
            _data.Advance(1);
        }

        public ParsedInput ToInput(int batch, int seqLen, int e, bool batched)
        {
            var data = _data ?? new ArrayPoolBufferWriter<float>(1);
            _data = null;
            return new ParsedInput(data, batch, seqLen, e, batched);
        }

        public void Dispose()
        {
            _data?.Dispose();
            _data = null;
        }
    }
}
