namespace DualChunk.Kernels;

/// <summary>
/// Edifice's masked causal softmax attention over T positions of one head:
/// <c>S = q·kᵀ·scale</c>; <c>S[i][j] = -1e9</c> for j &gt; i; <c>P = exp(S - rowmax) / (rowsum + 1e-8)</c>; <c>o = P·v</c>.
/// Masked entries contribute exp(-1e9 - max) = 0 exactly in float32, so they are skipped, not computed.
/// Optionally blends with one shared row: <c>out = g ⊙ blendRow + (1 - g) ⊙ o</c>.
/// </summary>
public static class CausalAttention
{
    /// <summary>Edifice's mask value.</summary>
    public const float MaskValue = -1e9f;

    /// <summary>Edifice's softmax denominator guard.</summary>
    public const float DenominatorEpsilon = 1e-8f;

    /// <summary>Floats of scratch one call needs for <paramref name="t"/> positions of head width <paramref name="d"/>.</summary>
    public static int ScratchFloats(int t, int d) => t;

    /// <summary>
    /// Row i of q, k, v is at <c>q[i * qStride]</c> etc. (d floats each); row i of the result goes to
    /// <c>output[i * outStride]</c>. When <paramref name="gate"/> is non-empty, <paramref name="blendRow"/> [d] and
    /// <paramref name="gate"/> [d] (already sigmoid-ed) blend the result as described on the class.
    /// </summary>
    public static void Run(ReadOnlySpan<float> q, int qStride, ReadOnlySpan<float> k, int kStride,
        ReadOnlySpan<float> v, int vStride, int t, int d, float scale, Span<float> output, int outStride,
        Span<float> scratch, ReadOnlySpan<float> blendRow, ReadOnlySpan<float> gate)
        => Scalar(q, qStride, k, kStride, v, vStride, t, d, scale, output, outStride, blendRow, gate);

    /// <summary>Scalar twin in double, the tests' reference (it evaluates the mask literally).</summary>
    public static void Scalar(ReadOnlySpan<float> q, int qStride, ReadOnlySpan<float> k, int kStride,
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
                s[j] = j > i ? MaskValue : dot * scale;
                max = Math.Max(max, s[j]);
            }
            double sum = 0;
            for (int j = 0; j < t; j++) { s[j] = Math.Exp(s[j] - max); sum += s[j]; }
            sum += DenominatorEpsilon;
            for (int e = 0; e < d; e++)
            {
                double o = 0;
                for (int j = 0; j < t; j++) o += s[j] / sum * v[j * vStride + e];
                if (!gate.IsEmpty) o = gate[e] * (double)blendRow[e] + (1.0 - gate[e]) * o;
                output[i * outStride + e] = (float)o;
            }
        }
    }
}
