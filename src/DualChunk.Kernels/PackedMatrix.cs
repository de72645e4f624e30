namespace DualChunk.Kernels;

/// <summary>
/// A weight matrix W [K, N] (row-major, "x · W" convention) repacked once, at load, into the
/// panel layout of the GEMM micro-kernel selected for this process. Immutable and thread-safe.
/// </summary>
public sealed class PackedMatrix
{
    /// <summary>Rows of W: the input width.</summary>
    public int K { get; }

    /// <summary>Columns of W: the output width.</summary>
    public int N { get; }

    internal readonly float[] Panels;

    private PackedMatrix(int k, int n, float[] panels)
    {
        K = k;
        N = n;
        Panels = panels;
    }

    /// <summary>Packs row-major <paramref name="w"/> [k, n].</summary>
    public static PackedMatrix Pack(ReadOnlySpan<float> w, int k, int n)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(k);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(n);
        if (w.Length != (long)k * n)
            throw new ArgumentException($"W has {w.Length} floats, expected K*N = {k}*{n}.", nameof(w));
        // TODO(kernels): real panel layout. For now: plain row-major copy.
        return new PackedMatrix(k, n, w.ToArray());
    }
}
