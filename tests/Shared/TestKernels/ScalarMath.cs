using DualChunk.Kernels;

namespace DualChunk.TestKernels;

/// <summary>
/// Scalar float twins of <see cref="VectorMath"/>: the same algorithm one value at a time, with the same constants.
/// The tests check that every vector path agrees with them lane by lane.
/// </summary>
internal static class ScalarMath
{
    /// <summary>exp, the same algorithm as <see cref="VectorMath"/>'s vector version.</summary>
    internal static float Exp(float x)
    {
        if (float.IsNaN(x)) return x;
        if (x < VectorMath.ExpMin) return 0f;
        if (x > VectorMath.ExpMax) return float.PositiveInfinity;
        float kf = float.MultiplyAddEstimate(x, VectorMath.Log2E, VectorMath.RoundMagic);
        float n = kf - VectorMath.RoundMagic;
        float r = float.MultiplyAddEstimate(n, -VectorMath.Ln2Hi, x);
        r = float.MultiplyAddEstimate(n, -VectorMath.Ln2Lo, r);
        float p = float.MultiplyAddEstimate(VectorMath.E5, r, VectorMath.E4);
        p = float.MultiplyAddEstimate(p, r, VectorMath.E3);
        p = float.MultiplyAddEstimate(p, r, VectorMath.E2);
        p = float.MultiplyAddEstimate(p, r, VectorMath.E1);
        p = float.MultiplyAddEstimate(p, r, VectorMath.E0);
        p = float.MultiplyAddEstimate(p, r * r, r) + 1f;
        float scale = BitConverter.Int32BitsToSingle((BitConverter.SingleToInt32Bits(kf) << 23) + (127 << 23));
        return p * scale;
    }

    /// <summary>GELU, the same algorithm as the vector version.</summary>
    internal static float Gelu(float x)
    {
        float a = MathF.Min(MathF.Abs(x), VectorMath.GeluClamp); // NaN stays NaN and makes the result NaN
        float u = a - VectorMath.GeluShift;
        float q = float.MultiplyAddEstimate(VectorMath.Q9, u, VectorMath.Q8);
        q = float.MultiplyAddEstimate(q, u, VectorMath.Q7);
        q = float.MultiplyAddEstimate(q, u, VectorMath.Q6);
        q = float.MultiplyAddEstimate(q, u, VectorMath.Q5);
        q = float.MultiplyAddEstimate(q, u, VectorMath.Q4);
        q = float.MultiplyAddEstimate(q, u, VectorMath.Q3);
        q = float.MultiplyAddEstimate(q, u, VectorMath.Q2);
        q = float.MultiplyAddEstimate(q, u, VectorMath.Q1);
        q = float.MultiplyAddEstimate(q, u, VectorMath.Q0);
        float kf = q + VectorMath.RoundMagic;
        float r = q - (kf - VectorMath.RoundMagic);
        float p = float.MultiplyAddEstimate(-0.5f * VectorMath.B6, r, -0.5f * VectorMath.B5);
        p = float.MultiplyAddEstimate(p, r, -0.5f * VectorMath.B4);
        p = float.MultiplyAddEstimate(p, r, -0.5f * VectorMath.B3);
        p = float.MultiplyAddEstimate(p, r, -0.5f * VectorMath.B2);
        p = float.MultiplyAddEstimate(p, r, -0.5f * VectorMath.B1);
        p = float.MultiplyAddEstimate(p, r, -0.5f);
        float minusHalfErfc = BitConverter.Int32BitsToSingle(BitConverter.SingleToInt32Bits(p) + (BitConverter.SingleToInt32Bits(kf) << 23));
        return float.MultiplyAddEstimate(a, minusHalfErfc, MathF.Max(x, 0f));
    }
}
