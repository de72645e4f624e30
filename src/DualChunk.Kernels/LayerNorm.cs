namespace DualChunk.Kernels;

/// <summary>
/// Axon's layer norm over the last axis: biased variance, eps = 1e-5, and Axon's clip
/// <c>scale = γ · (var &gt;= eps ? rsqrt(var + eps) : rsqrt(eps))</c> (NaN variance takes the clip branch).
/// </summary>
public static class LayerNorm
{
    /// <summary>Axon's epsilon.</summary>
    public const float Epsilon = 1e-5f;

    /// <summary>y[r, :] = LN(x[r, :]) for <paramref name="rows"/> contiguous rows of <paramref name="width"/>.</summary>
    public static void Run(ReadOnlySpan<float> x, int rows, int width, ReadOnlySpan<float> gamma, ReadOnlySpan<float> beta, Span<float> y)
        => Scalar(x, rows, width, gamma, beta, y);

    /// <summary>Scalar twin in double, the tests' reference.</summary>
    public static void Scalar(ReadOnlySpan<float> x, int rows, int width, ReadOnlySpan<float> gamma, ReadOnlySpan<float> beta, Span<float> y)
    {
        for (int r = 0; r < rows; r++)
        {
            var row = x.Slice(r * width, width);
            double mean = 0;
            foreach (float v in row) mean += v;
            mean /= width;
            double var = 0;
            foreach (float v in row) var += (v - mean) * (v - mean);
            var /= width;
            double inv = var >= Epsilon ? 1.0 / Math.Sqrt(var + Epsilon) : 1.0 / Math.Sqrt(Epsilon);
            var dst = y.Slice(r * width, width);
            for (int i = 0; i < width; i++)
                dst[i] = (float)(gamma[i] * inv * (row[i] - mean) + beta[i]);
        }
    }
}
