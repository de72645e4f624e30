using System.Buffers;
using System.Runtime.InteropServices;
using System.Text.Json;
using DualChunk.Core;
using DualChunk.Extensions.Hosting;
using Microsoft.Extensions.Options;
using static DualChunk.Server.InputLimits;

namespace DualChunk.Server;

/// <summary><c>POST /v1/predict</c>: JSON or .npy in, the same kind out.</summary>
internal static class PredictEndpoint
{
    public static async Task<IResult> Handle(HttpContext context, DualChunkModelProvider provider, ServerModels models, IOptions<ServiceOptions> serviceOptions)
    {
        string modelName = models.DefaultName;
        var options = serviceOptions.Value;
        var ct = context.RequestAborted;
        if (!provider.TryAcquire(modelName, out var lease))
        {
            var s = provider.GetStatus(modelName);
            context.Response.Headers.RetryAfter = options.RetryAfterSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
            return Problem(StatusCodes.Status503ServiceUnavailable, "Model not ready",
                s.State == DualChunkModelState.Failed ? $"The model failed to load: {s.Error}" : "The model is still loading; retry shortly.");
        }
        using (lease)
        {
            var model = lease.Model;
            var hosted = provider.GetOptions(modelName);
            var limits = new InputLimits(model.Config.EmbedDim, model.Config.ChunkSize,
                hosted.MaxBatch ?? int.MaxValue, hosted.MaxSeqLen ?? int.MaxValue);
            string? contentType = context.Request.ContentType;
            bool npy = contentType is not null && contentType.StartsWith(NpyBody.ContentType, StringComparison.OrdinalIgnoreCase);
            // Anything else is read as JSON (curl -d sends application/x-www-form-urlencoded); non-JSON gets a 400.

            byte[]? body = null;
            ParsedInput? input = null;
            float[]? output = null;
            try
            {
                int length;
                (body, length) = await ReadBody(context.Request, options.MaxRequestBodyBytes, ct);
                OutputMode mode;
                if (npy)
                {
                    mode = ParseMode(context.Request.Query["output_mode"].ToString() is { Length: > 0 } q ? q : null, "the output_mode query parameter");
                    input = NpyBody.Parse(body.AsSpan(0, length), limits);
                }
                else
                {
                    (input, string? m) = JsonInput.Parse(body.AsSpan(0, length), limits);
                    mode = ParseMode(m, "\"output_mode\"");
                }
                ArrayPool<byte>.Shared.Return(body);
                body = null;

                int outLength = model.OutputLength(input.Batch, input.SeqLen, mode);
                output = ArrayPool<float>.Shared.Rent(outLength);
                long started = System.Diagnostics.Stopwatch.GetTimestamp();
                model.Run(input.Data, input.Batch, input.SeqLen, output.AsSpan(0, outLength), mode, ct);
                // Server-Timing: the model call's share of the request (the load test subtracts it to get the overhead).
                context.Response.Headers["Server-Timing"] = Inv($"model;dur={System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds:0.###}");
                int[] shape = mode == OutputMode.All
                    ? [input.Batch, input.SeqLen, model.Config.HiddenSize]
                    : [input.Batch, model.Config.HiddenSize];
                if (npy) await WriteNpy(context.Response, output.AsMemory(0, outLength), shape, ct);
                else await WriteJson(context.Response, output.AsMemory(0, outLength), shape, ct);
                return Results.Empty;
            }
            catch (BadRequestException ex)
            {
                return Problem(ex.StatusCode, ex.StatusCode == StatusCodes.Status413PayloadTooLarge ? "Request body too large" : "Bad request", ex.Message);
            }
            catch (ArgumentException ex)
            {
                // The model's own checks (a second line behind the parsers'): still the client's input.
                return Problem(StatusCodes.Status400BadRequest, "Bad request", ex.Message);
            }
            catch (BadHttpRequestException ex)
            {
                return Problem(ex.StatusCode, "Bad request", ex.Message);
            }
            finally
            {
                if (body is not null) ArrayPool<byte>.Shared.Return(body);
                input?.Dispose();
                if (output is not null) ArrayPool<float>.Shared.Return(output);
            }
        }
    }

    public static IResult Problem(int status, string title, string detail)
        => TypedResults.Problem(detail: detail, statusCode: status, title: title);

    internal static OutputMode ParseMode(string? mode, string where) => mode switch
    {
        null or "last" => OutputMode.LastTimestep,
        "all" => OutputMode.All,
        "mean" => OutputMode.MeanPool,
        _ => throw new BadRequestException($"Unknown output mode '{(mode.Length > 32 ? mode[..32] + "…" : mode)}' in {where}; use \"last\" (default), \"all\" or \"mean\"."),
    };

    /// <summary>The body in a pooled buffer, at most <paramref name="limit"/> bytes (413 beyond).</summary>
    private static async Task<(byte[] Buffer, int Length)> ReadBody(HttpRequest request, long limit, CancellationToken ct)
    {
        if (request.ContentLength is long declared && declared > limit)
            throw new BadRequestException(Inv($"The body has {declared} bytes; the limit is {limit} (Service:MaxRequestBodyBytes)."), StatusCodes.Status413PayloadTooLarge);
        int capacity = (int)Math.Min(request.ContentLength is long n ? n + 1 : 16 * 1024, limit + 1);
        var buffer = ArrayPool<byte>.Shared.Rent(Math.Max(capacity, 256));
        int length = 0;
        try
        {
            while (true)
            {
                if (length == buffer.Length)
                {
                    if (length > limit)
                        throw new BadRequestException(Inv($"The body is larger than {limit} bytes (Service:MaxRequestBodyBytes)."), StatusCodes.Status413PayloadTooLarge);
                    var next = ArrayPool<byte>.Shared.Rent((int)Math.Min(buffer.Length * 2L, limit + 1));
                    buffer.AsSpan(0, length).CopyTo(next);
                    ArrayPool<byte>.Shared.Return(buffer);
                    buffer = next;
                }
                int read = await request.Body.ReadAsync(buffer.AsMemory(length), ct);
                if (read == 0) break;
                length += read;
                if (length > limit)
                    throw new BadRequestException(Inv($"The body is larger than {limit} bytes (Service:MaxRequestBodyBytes)."), StatusCodes.Status413PayloadTooLarge);
            }
            var result = (buffer, length);
            buffer = null!;
            return result;
        }
        finally
        {
            if (buffer is not null) ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private static async Task WriteNpy(HttpResponse response, ReadOnlyMemory<float> output, int[] shape, CancellationToken ct)
    {
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = NpyBody.ContentType;
        // Npy.Write writes numpy.save's exact bytes (the CLI's writer too); the body is formed in memory because the
        // response stream takes no synchronous writes.
        using var body = new MemoryStream(128 + output.Length * 4);
        Npy.Write(body, output.Span, shape);
        response.ContentLength = body.Length;
        await response.Body.WriteAsync(body.GetBuffer().AsMemory(0, (int)body.Length), ct);
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
