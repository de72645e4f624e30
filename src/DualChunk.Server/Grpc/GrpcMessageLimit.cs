using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Text;
using Microsoft.AspNetCore.Http.Features;
using static DualChunk.Server.Pipeline.InferenceException;

namespace DualChunk.Server.Grpc;

/// <summary>
/// Refuses a gRPC message over <see cref="ServiceOptions.MaxRequestBodyBytes"/> from its 5-byte length prefix with
/// RESOURCE_EXHAUSTED, after reading and discarding the rest of the request (bounded in bytes and time).
/// </summary>
/// <remarks>
/// Answering while the client is still uploading makes Kestrel reset the stream (RST_STREAM) after the status; a
/// client that sees the reset first reports UNAVAILABLE or UNKNOWN instead of the status (grpc-dotnet did for a few
/// in a hundred). Once the whole body is read there is no reset, so every client sees the status. A client that
/// claims more than <see cref="ServiceOptions.OversizeDrainBytes"/>, or is slower than
/// <see cref="ServiceOptions.OversizeDrainSeconds"/>, gets the status at once and the reset with it.
/// </remarks>
internal sealed class GrpcMessageLimit(RequestDelegate next, Microsoft.Extensions.Options.IOptions<ServiceOptions> options)
{
    private const int PrefixLength = 5; // compressed flag, big-endian uint32 length
    private readonly ServiceOptions _options = options.Value;

    public async Task InvokeAsync(HttpContext context)
    {
        var request = context.Request;
        if (!HttpMethods.IsPost(request.Method) || !HttpProtocol.IsHttp2(request.Protocol)
            || request.ContentType is not { } type || !type.StartsWith("application/grpc", StringComparison.OrdinalIgnoreCase))
        {
            await next(context);
            return;
        }
        long limit = Math.Min(_options.MaxRequestBodyBytes, int.MaxValue); // gRPC's MaxReceiveMessageSize (Program.cs)
        // Kestrel's body limit (MaxRequestBodyBytes + 1, for REST) would cut a unary message of up to the limit
        // (+ its prefix) and the drain below; the message limit is gRPC's and this class's job here.
        if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } bodySize)
            bodySize.MaxRequestBodySize = PrefixLength + Math.Max(limit, _options.OversizeDrainBytes);

        var reader = request.BodyReader;
        var read = await reader.ReadAtLeastAsync(PrefixLength, context.RequestAborted);
        var buffer = read.Buffer;
        if (buffer.Length < PrefixLength)
        {
            reader.AdvanceTo(buffer.Start); // too short to be a message: gRPC says so
            await next(context);
            return;
        }
        Span<byte> prefix = stackalloc byte[PrefixLength];
        buffer.Slice(0, PrefixLength).CopyTo(prefix);
        long length = BinaryPrimitives.ReadUInt32BigEndian(prefix[1..]);
        if (length <= limit)
        {
            reader.AdvanceTo(buffer.Start); // nothing consumed: gRPC reads the message as it arrived
            await next(context);
            return;
        }
        reader.AdvanceTo(buffer.Start, buffer.End);
        await DrainAsync(reader, PrefixLength + length, context.RequestAborted);
        WriteStatus(context.Response, 8, Inv( // RESOURCE_EXHAUSTED
            $"The gRPC message has {length} bytes; the limit is {limit} (Service:MaxRequestBodyBytes). Send fewer positions or a smaller batch per request (or append them to a sequence), or raise Service:MaxRequestBodyBytes on the server."));
    }

    /// <summary>Reads and discards the body, at most the message's own length and the byte and time caps.</summary>
    private async Task DrainAsync(PipeReader reader, long messageBytes, CancellationToken aborted)
    {
        if (messageBytes > PrefixLength + _options.OversizeDrainBytes) return; // not worth reading: the reset is acceptable
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(aborted);
        timeout.CancelAfter(TimeSpan.FromSeconds(_options.OversizeDrainSeconds));
        try
        {
            while (true)
            {
                var result = await reader.ReadAsync(timeout.Token);
                reader.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted || result.IsCanceled) return;
            }
        }
        catch (OperationCanceledException)
        {
            // Too slow, or the client went away: answer (or not) without the rest.
        }
        catch (Microsoft.AspNetCore.Http.BadHttpRequestException)
        {
            // More than the message and the cap: Kestrel stops reading; the status still goes out before the reset.
        }
        catch (IOException)
        {
            // The connection dropped.
        }
    }

    /// <summary>A trailers-only gRPC response: HTTP 200 with grpc-status and grpc-message in its one HEADERS frame.</summary>
    private static void WriteStatus(HttpResponse response, int status, string message)
    {
        if (response.HasStarted) return;
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = "application/grpc";
        response.Headers["grpc-status"] = status.ToString(System.Globalization.CultureInfo.InvariantCulture);
        response.Headers["grpc-message"] = PercentEncode(message);
    }

    /// <summary>grpc-message's encoding (the gRPC HTTP/2 spec): bytes outside printable ASCII, and '%', as %XX of UTF-8.</summary>
    private static string PercentEncode(string message)
    {
        var sb = new StringBuilder(message.Length);
        foreach (byte b in Encoding.UTF8.GetBytes(message))
        {
            if (b is >= 0x20 and <= 0x7E && b != (byte)'%') sb.Append((char)b);
            else sb.Append('%').Append(b.ToString("X2", System.Globalization.CultureInfo.InvariantCulture));
        }
        return sb.ToString();
    }
}
