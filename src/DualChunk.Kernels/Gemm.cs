namespace DualChunk.Kernels;

/// <summary>What the GEMM does with x · W + b before it stores a tile.</summary>
public enum GemmEpilogue
{
    /// <summary>C = A · W + b.</summary>
    Bias = 0,

    /// <summary>C = GELU(A · W + b), the exact erf GELU.</summary>
    BiasGelu = 1,

    /// <summary>C = C + (A · W + b): the residual add.</summary>
    BiasAccumulate = 2,
}

/// <summary>C [M, N] = epilogue(A [M, K] · W [K, N] + b [N]), W pre-packed.</summary>
public static class Gemm
{
    /// <summary>Name of the micro-kernel chosen for this process, for logs and <c>inspect</c>.</summary>
    public static string MicroKernel => "scalar (placeholder)";

    /// <summary>
    /// Computes rows 0..m-1 of C. Row r of A starts at <c>a[r * lda]</c>; row r of C at <c>c[r * ldc]</c>.
    /// </summary>
    public static void Run(ReadOnlySpan<float> a, int m, int lda, PackedMatrix w, ReadOnlySpan<float> bias,
        Span<float> c, int ldc, GemmEpilogue epilogue)
    {
        ArgumentNullException.ThrowIfNull(w);
        Scalar(a, m, lda, w.Panels, w.K, w.N, bias, c, ldc, epilogue);
    }

    /// <summary>
    /// Scalar twin, the tests' reference: plain loops over row-major W [k, n], accumulated in double.
    /// </summary>
    public static void Scalar(ReadOnlySpan<float> a, int m, int lda, ReadOnlySpan<float> w, int k, int n,
        ReadOnlySpan<float> bias, Span<float> c, int ldc, GemmEpilogue epilogue)
    {
        for (int r = 0; r < m; r++)
        {
            for (int j = 0; j < n; j++)
            {
                double s = bias[j];
                for (int p = 0; p < k; p++)
                    s += (double)a[r * lda + p] * w[p * n + j];
                c[r * ldc + j] = epilogue switch
                {
                    GemmEpilogue.BiasGelu => (float)Gelu.ScalarReference(s),
                    GemmEpilogue.BiasAccumulate => (float)(c[r * ldc + j] + s),
                    _ => (float)s,
                };
            }
        }
    }
}
