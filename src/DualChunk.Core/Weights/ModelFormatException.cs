namespace DualChunk.Core;

/// <summary>
/// A weights file or tensor set that cannot be used: truncated, corrupted, failing its checksum,
/// of an unknown version or dtype, or with missing, unexpected or mis-shaped tensors.
/// The message names the problem and what was expected.
/// </summary>
public sealed class ModelFormatException : Exception
{
    /// <summary>Creates the exception with a message that names the problem.</summary>
    public ModelFormatException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and the underlying cause.</summary>
    public ModelFormatException(string message, Exception innerException) : base(message, innerException) { }

    /// <summary>Creates an empty exception (prefer the message overloads).</summary>
    public ModelFormatException() { }
}
