namespace DualChunk.Server;

/// <summary>The request cannot be served as sent: becomes a problem response with <see cref="StatusCode"/> (400 unless said).</summary>
internal sealed class BadRequestException(string message, int statusCode = StatusCodes.Status400BadRequest) : Exception(message)
{
    public int StatusCode { get; } = statusCode;
}
