namespace DualChunk.Core;

/// <summary>
/// A forward pass on finite input produced NaN or ±∞: some value overflowed float32 inside the model. The input was
/// checked and the weights were validated finite at load, so the likely cause is extreme weights (e.g. kernels or
/// biases near float32's limit of 3.4e38). <see cref="Stage"/> names where it first went non-finite.
/// </summary>
/// <remarks>
/// Derives from <see cref="OverflowException"/> (an <see cref="ArithmeticException"/>): a service mapping bad requests
/// to 4xx should map this to 5xx, since it is the model, not the request, that is at fault.
/// </remarks>
public sealed class NumericalOverflowException : OverflowException
{
    /// <summary>Creates the exception with a message.</summary>
    public NumericalOverflowException() : this("The forward pass produced a non-finite value.") { }

    /// <summary>Creates the exception with a message.</summary>
    public NumericalOverflowException(string message) : base(message) => Stage = "";

    /// <summary>Creates the exception with a message and an inner exception.</summary>
    public NumericalOverflowException(string message, Exception innerException) : base(message, innerException) => Stage = "";

    /// <summary>Creates the exception for a pass that went non-finite at <paramref name="stage"/>.</summary>
    internal NumericalOverflowException(string stage, string message) : base(message) => Stage = stage;

    /// <summary>
    /// The checkpoint name of the first stage whose output was not finite (<c>input_projection</c>,
    /// <c>dual_chunk_block_&lt;l&gt;</c>, <c>final_norm</c>), or "" when unknown.
    /// </summary>
    public string Stage { get; }
}
