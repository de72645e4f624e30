// The Vector128, Vector256 and Vector512 sections below are one algorithm text instantiated per width:
// edit all three alike.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace DualChunk.Kernels;

/// <summary>
/// Float32 exp, erf and GELU for one vector (or one scalar) at a time: the math shared by the
/// element-wise, softmax and attention kernels. Every width runs the same algorithm, so every
/// <see cref="KernelIsa"/> path has the same error bound (measured in ErfGeluTests).
/// </summary>
/// <remarks>
/// <para><b>exp</b>: Cody–Waite reduction x = n·ln2 + r with |r| ≤ ln2/2 (ln2 split into a 9-bit head, so n·head is
/// exact, and a tail), e^r = 1 + r + r²·P(r) with a degree-5 minimax P (relative error 1.1e-9 in exact arithmetic),
/// and 2^n applied by adding n to the exponent bits. Measured max relative error ≈ 1-2 ulp on [-87.3, 88.3];
/// x &lt; -87.3365 (result below FLT_MIN) returns +0, x &gt; 88.376 returns +∞, NaN returns NaN.
/// The kernels only call it with x ≤ 0.</para>
/// <para><b>erf</b>: for |x| ≤ 0.9, erf(x) = x + x·Q(x²), Q a degree-6 minimax fit of erf(x)/x − 1 (abs error 1.4e-9);
/// for |x| &gt; 0.9, erfc(t) = exp(P(t)) with t = min(|x|, 4) and P a degree-7 minimax fit of ln erfc(t) on [0.9, 4]
/// weighted by erfc (abs error 7e-10), erf = sign(x)·(1 − erfc). Past 4, 1 − erfc(4) already rounds to 1.
/// Coefficients were fitted for this project (Lawson iteration, float-rounded greedily from the top degree).</para>
/// <para><b>GELU</b> uses the same pieces but never forms 1 + erf for x &lt; 0: there it is 0.5·x·erfc(|x|/√2),
/// so the negative tail keeps its relative accuracy down to |x|/√2 = 4 (below that |GELU| &lt; 4.4e-8 and it returns −0).</para>
/// All multiply-adds are MultiplyAddEstimate: one FMA where the hardware has it, multiply + add otherwise.
/// </remarks>
internal static class VectorMath
{
    internal const float Log2E = 1.44269504088896341f;
    internal const float Ln2Hi = 0.693359375f;          // 9 significant bits: n·Ln2Hi is exact for |n| < 2^15
    internal const float Ln2Lo = -2.12194440054690583e-4f; // ln 2 − Ln2Hi
    internal const float RoundMagic = 12582912f;         // 1.5·2^23: adding it rounds to an integer in the low mantissa bits
    internal const float ExpMin = -87.33654f;            // ln(FLT_MIN): below it the result is flushed to +0
    internal const float ExpMax = 88.37626f;             // ln(2^127.5): above it the result is +∞
    internal const float E0 = 0.5f, E1 = 0.16666666f, E2 = 0.041666295f, E3 = 0.008333497f, E4 = 0.001394466f, E5 = 0.00019790346f;

    internal const float ErfSplit = 0.9f;   // |x| ≤ ErfSplit: odd polynomial; above: 1 − exp(P(|x|))
    internal const float ErfClamp = 4f;     // erf(4) = 1 − 1.5e-8, which rounds to 1f
    internal const float S0 = 0.12837917f, S1 = -0.37612635f, S2 = 0.112837195f, S3 = -0.026860753f, S4 = 0.005204436f, S5 = -0.0008181927f, S6 = 8.538839E-05f;
    internal const float L0 = 0.00017056083f, L1 = -1.1294951f, L2 = -0.6333867f, L3 = -0.10823662f, L4 = 0.025091497f, L5 = -0.004160527f, L6 = 0.00043230303f, L7 = -2.0909556E-05f;
    internal const float InvSqrt2 = 0.707106781186547524f;

    // ---------------- scalar float twins: the same algorithm, one value at a time ----------------

    /// <summary>Scalar float exp, same algorithm as the vector versions.</summary>
    internal static float Exp(float x)
    {
        if (float.IsNaN(x)) return x;
        if (x < ExpMin) return 0f;
        if (x > ExpMax) return float.PositiveInfinity;
        float kf = float.MultiplyAddEstimate(x, Log2E, RoundMagic);
        float n = kf - RoundMagic;
        float r = float.MultiplyAddEstimate(n, -Ln2Hi, x);
        r = float.MultiplyAddEstimate(n, -Ln2Lo, r);
        float p = float.MultiplyAddEstimate(E5, r, E4);
        p = float.MultiplyAddEstimate(p, r, E3);
        p = float.MultiplyAddEstimate(p, r, E2);
        p = float.MultiplyAddEstimate(p, r, E1);
        p = float.MultiplyAddEstimate(p, r, E0);
        p = float.MultiplyAddEstimate(p, r * r, r) + 1f;
        float scale = BitConverter.Int32BitsToSingle((BitConverter.SingleToInt32Bits(kf) << 23) + (127 << 23));
        return p * scale;
    }

    private static float ErfSmall(float x)
    {
        float s = x * x;
        float q = float.MultiplyAddEstimate(S6, s, S5);
        q = float.MultiplyAddEstimate(q, s, S4);
        q = float.MultiplyAddEstimate(q, s, S3);
        q = float.MultiplyAddEstimate(q, s, S2);
        q = float.MultiplyAddEstimate(q, s, S1);
        q = float.MultiplyAddEstimate(q, s, S0);
        return float.MultiplyAddEstimate(x, q, x);
    }

    /// <summary>erfc(t) for t in [0.9, 4] (t is clamped to 4).</summary>
    private static float ErfcLarge(float t)
    {
        t = MathF.Min(t, ErfClamp);
        float p = float.MultiplyAddEstimate(L7, t, L6);
        p = float.MultiplyAddEstimate(p, t, L5);
        p = float.MultiplyAddEstimate(p, t, L4);
        p = float.MultiplyAddEstimate(p, t, L3);
        p = float.MultiplyAddEstimate(p, t, L2);
        p = float.MultiplyAddEstimate(p, t, L1);
        p = float.MultiplyAddEstimate(p, t, L0);
        return Exp(p);
    }

    /// <summary>Scalar float erf, same algorithm as the vector versions.</summary>
    internal static float Erf(float x)
    {
        float ax = MathF.Abs(x);
        if (!(ax > ErfSplit)) return ErfSmall(x); // NaN goes here and stays NaN
        return MathF.CopySign(1f - ErfcLarge(ax), x);
    }

    /// <summary>Scalar float GELU, same algorithm as the vector versions.</summary>
    internal static float Gelu(float x)
    {
        float z = x * InvSqrt2;
        float az = MathF.Abs(z);
        float h = 0.5f * x;
        if (!(az > ErfSplit)) return h * (1f + ErfSmall(z));
        if (az > ErfClamp) return x > 0 ? x : -0f;
        float ec = ErfcLarge(az);
        return x > 0 ? float.MultiplyAddEstimate(-h, ec, x) : h * ec;
    }

    // ---------------- Vector128 ----------------

    /// <summary>exp on Vector128 lanes (see the class remarks for the algorithm and bound).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector128<float> Exp(Vector128<float> x)
    {
        // Clamp so n stays in [-126, 127] and the exponent-bit trick cannot overflow; fix the ends up below.
        Vector128<float> xc = Vector128.MinNative(Vector128.MaxNative(x, Vector128.Create(ExpMin)), Vector128.Create(ExpMax));
        Vector128<float> kf = Vector128.MultiplyAddEstimate(xc, Vector128.Create(Log2E), Vector128.Create(RoundMagic));
        Vector128<float> n = kf - Vector128.Create(RoundMagic);
        Vector128<float> r = Vector128.MultiplyAddEstimate(n, Vector128.Create(-Ln2Hi), xc);
        r = Vector128.MultiplyAddEstimate(n, Vector128.Create(-Ln2Lo), r);
        Vector128<float> p = Vector128.MultiplyAddEstimate(Vector128.Create(E5), r, Vector128.Create(E4));
        p = Vector128.MultiplyAddEstimate(p, r, Vector128.Create(E3));
        p = Vector128.MultiplyAddEstimate(p, r, Vector128.Create(E2));
        p = Vector128.MultiplyAddEstimate(p, r, Vector128.Create(E1));
        p = Vector128.MultiplyAddEstimate(p, r, Vector128.Create(E0));
        p = Vector128.MultiplyAddEstimate(p, r * r, r) + Vector128<float>.One;
        // The low mantissa bits of kf hold n (two's complement); shifting them into the exponent field builds 2^n.
        Vector128<float> scale = ((kf.AsInt32() << 23) + Vector128.Create(127 << 23)).AsSingle();
        Vector128<float> res = p * scale;
        res = Vector128.ConditionalSelect(Vector128.LessThan(x, Vector128.Create(ExpMin)), Vector128<float>.Zero, res);
        res = Vector128.ConditionalSelect(Vector128.GreaterThan(x, Vector128.Create(ExpMax)), Vector128.Create(float.PositiveInfinity), res);
        return Vector128.ConditionalSelect(Vector128.Equals(x, x), res, x); // NaN lanes stay NaN
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> ErfSmall(Vector128<float> x)
    {
        Vector128<float> s = x * x;
        Vector128<float> q = Vector128.MultiplyAddEstimate(Vector128.Create(S6), s, Vector128.Create(S5));
        q = Vector128.MultiplyAddEstimate(q, s, Vector128.Create(S4));
        q = Vector128.MultiplyAddEstimate(q, s, Vector128.Create(S3));
        q = Vector128.MultiplyAddEstimate(q, s, Vector128.Create(S2));
        q = Vector128.MultiplyAddEstimate(q, s, Vector128.Create(S1));
        q = Vector128.MultiplyAddEstimate(q, s, Vector128.Create(S0));
        return Vector128.MultiplyAddEstimate(x, q, x);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> ErfcLarge(Vector128<float> ax)
    {
        Vector128<float> t = Vector128.MinNative(ax, Vector128.Create(ErfClamp)); // lanes that are NaN or ≤ 0.9 are discarded by the caller
        Vector128<float> p = Vector128.MultiplyAddEstimate(Vector128.Create(L7), t, Vector128.Create(L6));
        p = Vector128.MultiplyAddEstimate(p, t, Vector128.Create(L5));
        p = Vector128.MultiplyAddEstimate(p, t, Vector128.Create(L4));
        p = Vector128.MultiplyAddEstimate(p, t, Vector128.Create(L3));
        p = Vector128.MultiplyAddEstimate(p, t, Vector128.Create(L2));
        p = Vector128.MultiplyAddEstimate(p, t, Vector128.Create(L1));
        p = Vector128.MultiplyAddEstimate(p, t, Vector128.Create(L0));
        return Exp(p);
    }

    /// <summary>erf on Vector128 lanes. Both branches are evaluated only when the vector holds lanes of both kinds.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector128<float> Erf(Vector128<float> x)
    {
        Vector128<float> ax = Vector128.Abs(x);
        Vector128<float> large = Vector128.GreaterThan(ax, Vector128.Create(ErfSplit)); // false for NaN: NaN takes the polynomial and stays NaN
        if (!Vector128.GreaterThanAny(ax, Vector128.Create(ErfSplit))) return ErfSmall(x);
        Vector128<float> sign = x & Vector128.Create(-0f);
        Vector128<float> big = (Vector128<float>.One - ErfcLarge(ax)) | sign; // 1 − erfc ≥ 0, so OR-ing the sign bit is copysign
        if (Vector128.GreaterThanAll(ax, Vector128.Create(ErfSplit))) return big;
        return Vector128.ConditionalSelect(large, big, ErfSmall(x));
    }

    /// <summary>Exact GELU on Vector128 lanes: 0.5·x·(1 + erf(x/√2)), with erfc used directly for |x|/√2 &gt; 0.9.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector128<float> Gelu(Vector128<float> x)
    {
        Vector128<float> z = x * Vector128.Create(InvSqrt2);
        Vector128<float> az = Vector128.Abs(z);
        Vector128<float> h = x * Vector128.Create(0.5f);
        Vector128<float> large = Vector128.GreaterThan(az, Vector128.Create(ErfSplit));
        Vector128<float> small = h * (Vector128<float>.One + ErfSmall(z));
        if (!Vector128.GreaterThanAny(az, Vector128.Create(ErfSplit))) return small;
        Vector128<float> positive = Vector128.GreaterThan(x, Vector128<float>.Zero);
        Vector128<float> ec = ErfcLarge(az);
        // x > 0: x·(1 − erfc/2) = x − h·erfc; x < 0: h·erfc (no cancellation in the negative tail).
        Vector128<float> big = Vector128.ConditionalSelect(positive, Vector128.MultiplyAddEstimate(-h, ec, x), h * ec);
        // Past the clamp (and for ±∞): x for positive lanes, −0 for negative ones (|GELU| < 4.4e-8 there).
        Vector128<float> tail = Vector128.ConditionalSelect(positive, x, x & Vector128.Create(-0f));
        big = Vector128.ConditionalSelect(Vector128.GreaterThan(az, Vector128.Create(ErfClamp)), tail, big);
        return Vector128.ConditionalSelect(large, big, small);
    }

    // ---------------- Vector256 ----------------

    /// <summary>exp on Vector256 lanes (see the class remarks for the algorithm and bound).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> Exp(Vector256<float> x)
    {
        // Clamp so n stays in [-126, 127] and the exponent-bit trick cannot overflow; fix the ends up below.
        Vector256<float> xc = Vector256.MinNative(Vector256.MaxNative(x, Vector256.Create(ExpMin)), Vector256.Create(ExpMax));
        Vector256<float> kf = Vector256.MultiplyAddEstimate(xc, Vector256.Create(Log2E), Vector256.Create(RoundMagic));
        Vector256<float> n = kf - Vector256.Create(RoundMagic);
        Vector256<float> r = Vector256.MultiplyAddEstimate(n, Vector256.Create(-Ln2Hi), xc);
        r = Vector256.MultiplyAddEstimate(n, Vector256.Create(-Ln2Lo), r);
        Vector256<float> p = Vector256.MultiplyAddEstimate(Vector256.Create(E5), r, Vector256.Create(E4));
        p = Vector256.MultiplyAddEstimate(p, r, Vector256.Create(E3));
        p = Vector256.MultiplyAddEstimate(p, r, Vector256.Create(E2));
        p = Vector256.MultiplyAddEstimate(p, r, Vector256.Create(E1));
        p = Vector256.MultiplyAddEstimate(p, r, Vector256.Create(E0));
        p = Vector256.MultiplyAddEstimate(p, r * r, r) + Vector256<float>.One;
        // The low mantissa bits of kf hold n (two's complement); shifting them into the exponent field builds 2^n.
        Vector256<float> scale = ((kf.AsInt32() << 23) + Vector256.Create(127 << 23)).AsSingle();
        Vector256<float> res = p * scale;
        res = Vector256.ConditionalSelect(Vector256.LessThan(x, Vector256.Create(ExpMin)), Vector256<float>.Zero, res);
        res = Vector256.ConditionalSelect(Vector256.GreaterThan(x, Vector256.Create(ExpMax)), Vector256.Create(float.PositiveInfinity), res);
        return Vector256.ConditionalSelect(Vector256.Equals(x, x), res, x); // NaN lanes stay NaN
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> ErfSmall(Vector256<float> x)
    {
        Vector256<float> s = x * x;
        Vector256<float> q = Vector256.MultiplyAddEstimate(Vector256.Create(S6), s, Vector256.Create(S5));
        q = Vector256.MultiplyAddEstimate(q, s, Vector256.Create(S4));
        q = Vector256.MultiplyAddEstimate(q, s, Vector256.Create(S3));
        q = Vector256.MultiplyAddEstimate(q, s, Vector256.Create(S2));
        q = Vector256.MultiplyAddEstimate(q, s, Vector256.Create(S1));
        q = Vector256.MultiplyAddEstimate(q, s, Vector256.Create(S0));
        return Vector256.MultiplyAddEstimate(x, q, x);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> ErfcLarge(Vector256<float> ax)
    {
        Vector256<float> t = Vector256.MinNative(ax, Vector256.Create(ErfClamp)); // lanes that are NaN or ≤ 0.9 are discarded by the caller
        Vector256<float> p = Vector256.MultiplyAddEstimate(Vector256.Create(L7), t, Vector256.Create(L6));
        p = Vector256.MultiplyAddEstimate(p, t, Vector256.Create(L5));
        p = Vector256.MultiplyAddEstimate(p, t, Vector256.Create(L4));
        p = Vector256.MultiplyAddEstimate(p, t, Vector256.Create(L3));
        p = Vector256.MultiplyAddEstimate(p, t, Vector256.Create(L2));
        p = Vector256.MultiplyAddEstimate(p, t, Vector256.Create(L1));
        p = Vector256.MultiplyAddEstimate(p, t, Vector256.Create(L0));
        return Exp(p);
    }

    /// <summary>erf on Vector256 lanes. Both branches are evaluated only when the vector holds lanes of both kinds.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> Erf(Vector256<float> x)
    {
        Vector256<float> ax = Vector256.Abs(x);
        Vector256<float> large = Vector256.GreaterThan(ax, Vector256.Create(ErfSplit)); // false for NaN: NaN takes the polynomial and stays NaN
        if (!Vector256.GreaterThanAny(ax, Vector256.Create(ErfSplit))) return ErfSmall(x);
        Vector256<float> sign = x & Vector256.Create(-0f);
        Vector256<float> big = (Vector256<float>.One - ErfcLarge(ax)) | sign; // 1 − erfc ≥ 0, so OR-ing the sign bit is copysign
        if (Vector256.GreaterThanAll(ax, Vector256.Create(ErfSplit))) return big;
        return Vector256.ConditionalSelect(large, big, ErfSmall(x));
    }

    /// <summary>Exact GELU on Vector256 lanes: 0.5·x·(1 + erf(x/√2)), with erfc used directly for |x|/√2 &gt; 0.9.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> Gelu(Vector256<float> x)
    {
        Vector256<float> z = x * Vector256.Create(InvSqrt2);
        Vector256<float> az = Vector256.Abs(z);
        Vector256<float> h = x * Vector256.Create(0.5f);
        Vector256<float> large = Vector256.GreaterThan(az, Vector256.Create(ErfSplit));
        Vector256<float> small = h * (Vector256<float>.One + ErfSmall(z));
        if (!Vector256.GreaterThanAny(az, Vector256.Create(ErfSplit))) return small;
        Vector256<float> positive = Vector256.GreaterThan(x, Vector256<float>.Zero);
        Vector256<float> ec = ErfcLarge(az);
        // x > 0: x·(1 − erfc/2) = x − h·erfc; x < 0: h·erfc (no cancellation in the negative tail).
        Vector256<float> big = Vector256.ConditionalSelect(positive, Vector256.MultiplyAddEstimate(-h, ec, x), h * ec);
        // Past the clamp (and for ±∞): x for positive lanes, −0 for negative ones (|GELU| < 4.4e-8 there).
        Vector256<float> tail = Vector256.ConditionalSelect(positive, x, x & Vector256.Create(-0f));
        big = Vector256.ConditionalSelect(Vector256.GreaterThan(az, Vector256.Create(ErfClamp)), tail, big);
        return Vector256.ConditionalSelect(large, big, small);
    }

    // ---------------- Vector512 ----------------

    /// <summary>exp on Vector512 lanes (see the class remarks for the algorithm and bound).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> Exp(Vector512<float> x)
    {
        // Clamp so n stays in [-126, 127] and the exponent-bit trick cannot overflow; fix the ends up below.
        Vector512<float> xc = Vector512.MinNative(Vector512.MaxNative(x, Vector512.Create(ExpMin)), Vector512.Create(ExpMax));
        Vector512<float> kf = Vector512.MultiplyAddEstimate(xc, Vector512.Create(Log2E), Vector512.Create(RoundMagic));
        Vector512<float> n = kf - Vector512.Create(RoundMagic);
        Vector512<float> r = Vector512.MultiplyAddEstimate(n, Vector512.Create(-Ln2Hi), xc);
        r = Vector512.MultiplyAddEstimate(n, Vector512.Create(-Ln2Lo), r);
        Vector512<float> p = Vector512.MultiplyAddEstimate(Vector512.Create(E5), r, Vector512.Create(E4));
        p = Vector512.MultiplyAddEstimate(p, r, Vector512.Create(E3));
        p = Vector512.MultiplyAddEstimate(p, r, Vector512.Create(E2));
        p = Vector512.MultiplyAddEstimate(p, r, Vector512.Create(E1));
        p = Vector512.MultiplyAddEstimate(p, r, Vector512.Create(E0));
        p = Vector512.MultiplyAddEstimate(p, r * r, r) + Vector512<float>.One;
        // The low mantissa bits of kf hold n (two's complement); shifting them into the exponent field builds 2^n.
        Vector512<float> scale = ((kf.AsInt32() << 23) + Vector512.Create(127 << 23)).AsSingle();
        Vector512<float> res = p * scale;
        res = Vector512.ConditionalSelect(Vector512.LessThan(x, Vector512.Create(ExpMin)), Vector512<float>.Zero, res);
        res = Vector512.ConditionalSelect(Vector512.GreaterThan(x, Vector512.Create(ExpMax)), Vector512.Create(float.PositiveInfinity), res);
        return Vector512.ConditionalSelect(Vector512.Equals(x, x), res, x); // NaN lanes stay NaN
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> ErfSmall(Vector512<float> x)
    {
        Vector512<float> s = x * x;
        Vector512<float> q = Vector512.MultiplyAddEstimate(Vector512.Create(S6), s, Vector512.Create(S5));
        q = Vector512.MultiplyAddEstimate(q, s, Vector512.Create(S4));
        q = Vector512.MultiplyAddEstimate(q, s, Vector512.Create(S3));
        q = Vector512.MultiplyAddEstimate(q, s, Vector512.Create(S2));
        q = Vector512.MultiplyAddEstimate(q, s, Vector512.Create(S1));
        q = Vector512.MultiplyAddEstimate(q, s, Vector512.Create(S0));
        return Vector512.MultiplyAddEstimate(x, q, x);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> ErfcLarge(Vector512<float> ax)
    {
        Vector512<float> t = Vector512.MinNative(ax, Vector512.Create(ErfClamp)); // lanes that are NaN or ≤ 0.9 are discarded by the caller
        Vector512<float> p = Vector512.MultiplyAddEstimate(Vector512.Create(L7), t, Vector512.Create(L6));
        p = Vector512.MultiplyAddEstimate(p, t, Vector512.Create(L5));
        p = Vector512.MultiplyAddEstimate(p, t, Vector512.Create(L4));
        p = Vector512.MultiplyAddEstimate(p, t, Vector512.Create(L3));
        p = Vector512.MultiplyAddEstimate(p, t, Vector512.Create(L2));
        p = Vector512.MultiplyAddEstimate(p, t, Vector512.Create(L1));
        p = Vector512.MultiplyAddEstimate(p, t, Vector512.Create(L0));
        return Exp(p);
    }

    /// <summary>erf on Vector512 lanes. Both branches are evaluated only when the vector holds lanes of both kinds.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> Erf(Vector512<float> x)
    {
        Vector512<float> ax = Vector512.Abs(x);
        Vector512<float> large = Vector512.GreaterThan(ax, Vector512.Create(ErfSplit)); // false for NaN: NaN takes the polynomial and stays NaN
        if (!Vector512.GreaterThanAny(ax, Vector512.Create(ErfSplit))) return ErfSmall(x);
        Vector512<float> sign = x & Vector512.Create(-0f);
        Vector512<float> big = (Vector512<float>.One - ErfcLarge(ax)) | sign; // 1 − erfc ≥ 0, so OR-ing the sign bit is copysign
        if (Vector512.GreaterThanAll(ax, Vector512.Create(ErfSplit))) return big;
        return Vector512.ConditionalSelect(large, big, ErfSmall(x));
    }

    /// <summary>Exact GELU on Vector512 lanes: 0.5·x·(1 + erf(x/√2)), with erfc used directly for |x|/√2 &gt; 0.9.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> Gelu(Vector512<float> x)
    {
        Vector512<float> z = x * Vector512.Create(InvSqrt2);
        Vector512<float> az = Vector512.Abs(z);
        Vector512<float> h = x * Vector512.Create(0.5f);
        Vector512<float> large = Vector512.GreaterThan(az, Vector512.Create(ErfSplit));
        Vector512<float> small = h * (Vector512<float>.One + ErfSmall(z));
        if (!Vector512.GreaterThanAny(az, Vector512.Create(ErfSplit))) return small;
        Vector512<float> positive = Vector512.GreaterThan(x, Vector512<float>.Zero);
        Vector512<float> ec = ErfcLarge(az);
        // x > 0: x·(1 − erfc/2) = x − h·erfc; x < 0: h·erfc (no cancellation in the negative tail).
        Vector512<float> big = Vector512.ConditionalSelect(positive, Vector512.MultiplyAddEstimate(-h, ec, x), h * ec);
        // Past the clamp (and for ±∞): x for positive lanes, −0 for negative ones (|GELU| < 4.4e-8 there).
        Vector512<float> tail = Vector512.ConditionalSelect(positive, x, x & Vector512.Create(-0f));
        big = Vector512.ConditionalSelect(Vector512.GreaterThan(az, Vector512.Create(ErfClamp)), tail, big);
        return Vector512.ConditionalSelect(large, big, small);
    }

    // ---------------- horizontal max: halve the vector until one Vector128 is left, then two shuffles ----------------

    /// <summary>Largest lane (NaN if any lane is NaN).</summary>
    internal static float MaxAcross(Vector512<float> v) => MaxAcross(Vector256.Max(v.GetLower(), v.GetUpper()));

    /// <summary>Largest lane (NaN if any lane is NaN).</summary>
    internal static float MaxAcross(Vector256<float> v) => MaxAcross(Vector128.Max(v.GetLower(), v.GetUpper()));

    /// <summary>Largest lane (NaN if any lane is NaN).</summary>
    internal static float MaxAcross(Vector128<float> v)
    {
        v = Vector128.Max(v, Vector128.Shuffle(v, Vector128.Create(2, 3, 0, 1)));
        v = Vector128.Max(v, Vector128.Shuffle(v, Vector128.Create(1, 0, 3, 2)));
        return v.ToScalar();
    }
}
