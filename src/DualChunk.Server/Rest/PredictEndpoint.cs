using CommunityToolkit.HighPerformance;
using System.Buffers;
using System.Text.Json;
using CommunityToolkit.HighPerformance.Buffers;
using DualChunk.Core;
using DualChunk.Server.Pipeline;
using static DualChunk.Server.InputLimits;

namespace DualChunk.Server.Rest;

/// <summary><c>POST /v1/predict</c>: JSON or .npy in, the same kind out, on the default model; errors as problem+json.</summary>
internal static class PredictEndpoint
{
    public static async Task Handle(HttpContext context, InferencePipeline pipeline)
    {
        var ct = context.RequestAborted;
        try
        {
            using var admitted = pipeline.Admit();
            using var target = pipeline.Resolve(pipeline.Models.DefaultName, null);
            string? contentType = context.Request.ContentType;
            bool npy = contentType is not null && contentType.StartsWith(NpyBody.ContentType, StringComparison.OrdinalIgnoreCase);
            // Anything else is read as JSON (curl -d sends application/x-www-form-urlencoded); non-JSON gets a 400.
            InferenceRequest request;
            using (var body = await HttpBody.ReadAsync(context.Request, pipeline.Options.MaxRequestBodyBytes, ct))
            {
                if (npy)
                {
                    var mode = InferenceRequest.ParseMode(context.Request.Query["output_mode"].ToString() is { Length: > 0 } q ? q : null, "the output_mode query parameter");
                    request = new InferenceRequest(NpyBody.Parse(body.WrittenSpan, target.Limits), mode, SequenceParameters.None);
                }
                else
                {
                    var (input, m) = JsonInput.Parse(body.WrittenSpan, target.Limits);
                    try
                    {
                        request = new InferenceRequest(input, InferenceRequest.ParseMode(m, "\"output_mode\""), SequenceParameters.None);
                    }
                    catch
                    {
                        input.Dispose();
                        throw;
                    }
                }
            }
            using (request)
            using (var result = await pipeline.InferAsync(target, request, ct))
            {
                // Server-Timing: the model call's share of the request (the load test subtracts it to get the overhead).
                context.Response.Headers["Server-Timing"] = Inv($"model;dur={result.ModelTime.TotalMilliseconds:0.###}");
                if (npy) await WriteNpy(context.Response, result.Output, result.Shape, ct);
                else await WriteJson(context.Response, result.Output, result.Shape, ct);
            }
        }
        catch (InferenceException ex)
        {
            await Problem(context, ex, pipeline.Options.RetryAfterSeconds);
        }
    }

    /// <summary>An RFC 7807 problem with the status of the error's kind.</summary>
    public static Task Problem(HttpContext context, InferenceException ex, int retryAfterSeconds)
    {
        HttpBody.SetStatus(context, ex, retryAfterSeconds);
        string title = ex.Kind switch
        {
            InferenceErrorKind.TooLarge => "Request body too large",
            InferenceErrorKind.Overloaded => "Overloaded",
            InferenceErrorKind.NotReady => "Model not ready",
            InferenceErrorKind.UnknownModel => "Unknown model",
            InferenceErrorKind.Conflict => "Conflict",
            InferenceErrorKind.ActiveElsewhere => "Active on another replica",
            _ => "Bad request",
        };
        return TypedResults.Problem(detail: ex.Message, statusCode: context.Response.StatusCode, title: title).ExecuteAsync(context);
    }

    private static async Task WriteNpy(HttpResponse response, ReadOnlyMemory<float> output, int[] shape, CancellationToken ct)
    {
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = NpyBody.ContentType;
        // Npy.Write writes numpy.save's exact bytes (the CLI's writer too); the body is formed in a pooled buffer
        // because the response stream takes no synchronous writes.
        using var body = new ArrayPoolBufferWriter<byte>(128 + output.Length * 4);
        using (var stream = body.AsStream()) Npy.Write(stream, output.Span, shape);
        response.ContentLength = body.WrittenCount;
        await response.Body.WriteAsync(body.WrittenMemory, ct);
    }

    private static async Task WriteJson(HttpResponse response, ReadOnlyMemory<float> output, int[] shape, CancellationToken ct)
    {
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = "application/json";
        var pipe = response.BodyWriter;
        using var writer = new Utf8JsonWriter(pipe);
        writer.WriteStartObject();
        writer.WritePropertyName("output"u8);
        int h = shape[^1];
        int rows = output.Length / h;
        int perOuter = shape.Length == 3 ? shape[1] : rows;
        writer.WriteStartArray();
        for (int r = 0; r < rows; r++)
        {
            if (shape.Length == 3 && r % perOuter == 0) writer.WriteStartArray();
            writer.WriteStartArray();
            // float → shortest round-trip text: the client parses back exactly the float32 the model wrote.
            foreach (float v in output.Span.Slice(r * h, h)) writer.WriteNumberValue(v);
            writer.WriteEndArray();
            if (shape.Length == 3 && r % perOuter == perOuter - 1) writer.WriteEndArray();
            if (writer.BytesPending > 32 * 1024)
            {
                writer.Flush();
                await pipe.FlushAsync(ct);
            }
        }
        writer.WriteEndArray();
        writer.WritePropertyName("shape"u8);
        writer.WriteStartArray();
        foreach (int d in shape) writer.WriteNumberValue(d);
        writer.WriteEndArray();
        writer.WriteEndObject();
        writer.Flush();
        await pipe.FlushAsync(ct);
    }
}
