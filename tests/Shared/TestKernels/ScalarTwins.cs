namespace DualChunk.TestKernels;

/// <summary>
/// The scalar twins of the SIMD kernels, in double: the references the kernel tests compare every path against.
/// They live with the tests, not in the shipped library.
/// </summary>
internal static class ScalarTwins
{
    /// <summary>Twin of <see cref="Kernels.CausalAttention"/>; it evaluates the mask literally.</summary>
    internal static void CausalAttention(ReadOnlySpan<float> q, int qStride, ReadOnlySpan<float> k, int kStride,
        ReadOnlySpan<float> v, int vStride, int t, int d, float scale, Span<float> output, int outStride,
        ReadOnlySpan<float> blendRow, ReadOnlySpan<float> gate)
    {
        var s = new double[t];
        for (int i = 0; i < t; i++)
        {
            double max = double.NegativeInfinity;
            for (int j = 0; j < t; j++)
            {
                double dot = 0;
                for (int e = 0; e < d; e++) dot += (double)q[i * qStride + e] * k[j * kStride + e];
                s[j] = j > i ? Kernels.CausalAttention.MaskValue : dot * scale;
                max = Math.Max(max, s[j]);
            }
            double sum = 0;
            for (int j = 0; j < t; j++) { s[j] = Math.Exp(s[j] - max); sum += s[j]; }
            sum += Kernels.CausalAttention.DenominatorEpsilon;
            for (int e = 0; e < d; e++)
            {
                double o = 0;
                for (int j = 0; j < t; j++) o += s[j] / sum * v[j * vStride + e];
                if (!gate.IsEmpty) o = gate[e] * (double)blendRow[e] + (1.0 - gate[e]) * o;
                output[i * outStride + e] = (float)o;
            }
        }
    }

    /// <summary>Twin of <see cref="Kernels.LayerNorm"/>.</summary>
    internal static void LayerNorm(ReadOnlySpan<float> x, int rows, int width, ReadOnlySpan<float> gamma, ReadOnlySpan<float> beta, Span<float> y)
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
            double inv = var >= Kernels.LayerNorm.Epsilon ? 1.0 / Math.Sqrt(var + Kernels.LayerNorm.Epsilon) : 1.0 / Math.Sqrt(Kernels.LayerNorm.Epsilon);
            var dst = y.Slice(r * width, width);
            for (int i = 0; i < width; i++)
                dst[i] = (float)(gamma[i] * inv * (row[i] - mean) + beta[i]);
        }
    }

    /// <summary>Twin of <see cref="Kernels.RowMean"/>.</summary>
    internal static void RowMean(ReadOnlySpan<float> x, int rows, int ldx, int width, int group, Span<float> means, int ldm)
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

    /// <summary>Twin of <see cref="Kernels.RmsNorm"/>: y = x / sqrt(mean(x²) + eps) · γ, in double.</summary>
    internal static void RmsNorm(ReadOnlySpan<float> x, int rows, int width, ReadOnlySpan<float> gamma, Span<float> y)
    {
        for (int r = 0; r < rows; r++)
        {
            var row = x.Slice(r * width, width);
            double ss = 0;
            foreach (float v in row) ss += (double)v * v;
            double inv = 1.0 / Math.Sqrt(ss / width + Kernels.RmsNorm.Epsilon);
            for (int i = 0; i < width; i++)
                y[r * width + i] = (float)(row[i] * inv * gamma[i]);
        }
    }

    /// <summary>SiLU in double, x·sigmoid(x): the twin of the SwiGLU epilogue's gate (<see cref="Kernels.GemmEpilogue.BiasSiluGate"/>).</summary>
    internal static double Silu(double x) => x / (1.0 + Math.Exp(-x));
}
