using System.Globalization;

namespace DualChunk.Server.Pipeline;

/// <summary>Why a request was not served; each protocol maps a kind to its own status (see <see cref="ErrorMapping"/>).</summary>
public enum InferenceErrorKind
{
    /// <summary>The request is malformed or does not fit the model (shape, datatype, NaN, limits of one request).</summary>
    InvalidInput,

    /// <summary>The body or message is larger than the server accepts.</summary>
    TooLarge,

    /// <summary>No model (or model version) has that name.</summary>
    UnknownModel,

    /// <summary>The request names a sequence that is not open (never started, ended, idled out).</summary>
    UnknownSequence,

    /// <summary>The model is loading or failed to load.</summary>
    NotReady,

    /// <summary>Too many calls are running and waiting, or the sequence limits are reached; retry later.</summary>
    Overloaded,

    /// <summary>
    /// The request contradicts the sequence's state (e.g. a mean after a last-only append, a <c>sequence_length</c>
    /// that differs from the positions held, state saved by other weights, state lost with a replica).
    /// </summary>
    Conflict,

    /// <summary>Another replica holds the sequence now (its lease in the sequence store); retry, or route to that replica.</summary>
    ActiveElsewhere,
}

/// <summary>A request that cannot be served, with the reason and the fix in <see cref="Exception.Message"/>.</summary>
public sealed class InferenceException : Exception
{
    /// <summary>Creates the exception.</summary>
    public InferenceException(InferenceErrorKind kind, string message) : base(message) => Kind = kind;

    /// <summary>Creates an <see cref="InferenceErrorKind.InvalidInput"/> exception.</summary>
    public InferenceException(string message) : this(InferenceErrorKind.InvalidInput, message) { }

    /// <summary>Creates an <see cref="InferenceErrorKind.InvalidInput"/> exception.</summary>
    public InferenceException() : this("The request is invalid.") { }

    /// <summary>Creates an <see cref="InferenceErrorKind.InvalidInput"/> exception with a cause.</summary>
    public InferenceException(string message, Exception innerException) : base(message, innerException) => Kind = InferenceErrorKind.InvalidInput;

    /// <summary>What kind of failure it is.</summary>
    public InferenceErrorKind Kind { get; }

    internal static string Inv(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}

/// <summary>The status each protocol answers for each kind of failure.</summary>
public static class ErrorMapping
{
    /// <summary>HTTP status (REST, /v1 and /v2).</summary>
    public static int HttpStatus(InferenceErrorKind kind) => kind switch
    {
        InferenceErrorKind.InvalidInput or InferenceErrorKind.UnknownSequence => StatusCodes.Status400BadRequest,
        InferenceErrorKind.TooLarge => StatusCodes.Status413PayloadTooLarge,
        InferenceErrorKind.UnknownModel => StatusCodes.Status404NotFound,
        InferenceErrorKind.NotReady or InferenceErrorKind.Overloaded => StatusCodes.Status503ServiceUnavailable,
        InferenceErrorKind.Conflict or InferenceErrorKind.ActiveElsewhere => StatusCodes.Status409Conflict,
        _ => StatusCodes.Status500InternalServerError,
    };

    /// <summary>Whether the client should retry later (HTTP 503 + Retry-After, gRPC UNAVAILABLE).</summary>
    public static bool IsRetryable(InferenceErrorKind kind) => kind is InferenceErrorKind.NotReady or InferenceErrorKind.Overloaded or InferenceErrorKind.ActiveElsewhere;

    /// <summary>gRPC status code.</summary>
    public static global::Grpc.Core.StatusCode GrpcStatus(InferenceErrorKind kind) => kind switch
    {
        InferenceErrorKind.InvalidInput or InferenceErrorKind.UnknownSequence => global::Grpc.Core.StatusCode.InvalidArgument,
        InferenceErrorKind.TooLarge => global::Grpc.Core.StatusCode.ResourceExhausted,
        InferenceErrorKind.UnknownModel => global::Grpc.Core.StatusCode.NotFound,
        InferenceErrorKind.NotReady or InferenceErrorKind.Overloaded => global::Grpc.Core.StatusCode.Unavailable,
        InferenceErrorKind.Conflict => global::Grpc.Core.StatusCode.FailedPrecondition,
        InferenceErrorKind.ActiveElsewhere => global::Grpc.Core.StatusCode.Aborted,
        _ => global::Grpc.Core.StatusCode.Internal,
    };
}
