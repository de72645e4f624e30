namespace DualChunk.Kernels;

/// <summary>Means of consecutive groups of rows: chunk summaries and mean pooling.</summary>
public static class RowMean
{
    /// <summary>
    /// For g in [0, rows / group): means[g * ldm + j] = mean over the <paramref name="group"/> rows
    /// g*group .. g*group+group-1 of x[row * ldx + j], for j in [0, width).
    /// </summary>
    public static void Run(ReadOnlySpan<float> x, int rows, int ldx, int width, int group, Span<float> means, int ldm)
        => Scalar(x, rows, ldx, width, group, means, ldm);

    /// <summary>Scalar twin in double, the tests' reference.</summary>
    public static void Scalar(ReadOnlySpan<float> x, int rows, int ldx, int width, int group, Span<float> means, int ldm)
    {
        for (int g = 0; g < rows / group; g++)
        {
            for (int j = 0; j < width; j++)
            {
                double s = 0;
                for (int r = 0; r < group; r++)
                    s += x[(g * group + r) * ldx + j];
                means[g * ldm + j] = (float)(s / group);
            }
        }
    }
}
