using CommunityToolkit.HighPerformance.Buffers;
using DualChunk.Server.Pipeline;
using static DualChunk.Server.Pipeline.InferenceException;

namespace DualChunk.Server.Rest;

/// <summary>Request bodies into pooled buffers, bounded; errors as each REST flavour writes them.</summary>
internal static class HttpBody
{
    /// <summary>The body in a pooled buffer (dispose it), at most <paramref name="limit"/> bytes (<see cref="InferenceErrorKind.TooLarge"/> beyond).</summary>
    public static async Task<ArrayPoolBufferWriter<byte>> ReadAsync(HttpRequest request, long limit, CancellationToken ct)
    {
        if (request.ContentLength is long declared && declared > limit)
            throw new InferenceException(InferenceErrorKind.TooLarge, Inv($"The body has {declared} bytes; the limit is {limit} (Service:MaxRequestBodyBytes)."));
        int initial = (int)Math.Clamp(request.ContentLength is long n ? n + 1 : 16 * 1024, 256, limit + 1);
        var buffer = new ArrayPoolBufferWriter<byte>(initial);
        try
        {
            while (true)
            {
                var memory = buffer.GetMemory(1); // the writer doubles when full
                int read = await request.Body.ReadAsync(memory, ct).ConfigureAwait(false);
                if (read == 0) break;
                buffer.Advance(read);
                if (buffer.WrittenCount > limit)
                    throw new InferenceException(InferenceErrorKind.TooLarge, Inv($"The body is larger than {limit} bytes (Service:MaxRequestBodyBytes)."));
            }
            return buffer;
        }
        catch (BadHttpRequestException ex) when (ex.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            buffer.Dispose();
            throw new InferenceException(InferenceErrorKind.TooLarge, Inv($"The body is larger than {limit} bytes (Service:MaxRequestBodyBytes)."));
        }
        catch (BadHttpRequestException ex)
        {
            buffer.Dispose();
            throw new InferenceException(ex.Message, ex);
        }
        catch
        {
            buffer.Dispose();
            throw;
        }
    }

    /// <summary>Sets the status and, for a retryable failure, Retry-After.</summary>
    public static void SetStatus(HttpContext context, InferenceException ex, int retryAfterSeconds)
    {
        context.Response.StatusCode = ErrorMapping.HttpStatus(ex.Kind);
        if (ErrorMapping.IsRetryable(ex.Kind))
            context.Response.Headers.RetryAfter = retryAfterSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
    }
}
