using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace DualChunk.Kernels;

/// <summary>
/// Float32 exp, GELU and SiLU for one vector at a time: the math of the GEMM epilogues (GELU, SiLU) and the
/// attention kernel (<see cref="ExpNonPositive"/>). Every width runs the same algorithm, so every
/// <see cref="KernelIsa"/> path has the same error bound (measured in ErfGeluTests, against scalar float twins of the
/// same algorithm that live with the tests).
/// </summary>
/// <remarks>
/// exp: Cody–Waite reduction and a degree-5 minimax polynomial (≈ 1–2 ulp; +0 below ln FLT_MIN, +∞ above 88.38).
/// GELU: one branch-free formula max(x, 0) − ½·a·erfc(a/√2), a = min(|x|, 6), with erfc as 2^Q(a), so 1 + erf is
/// never formed and the negative tail keeps its relative accuracy. How the polynomials were fitted and checked:
/// docs/performance-notes.md, "Vector math". All multiply-adds are MultiplyAddEstimate: one FMA where the hardware
/// has it, multiply + add otherwise.
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

    internal const float GeluClamp = 6f;      // |x| clamp: 3·erfc(6/√2) ≈ 5.9e-9 is all that is left past it
    internal const float GeluShift = 0.8125f; // Q is a polynomial in |x| − GeluShift
    internal const float Q0 = -1.2635951f, Q1 = -1.9867513f, Q2 = -0.560869f, Q3 = -0.031893548f, Q4 = 0.005306828f, Q5 = -0.0005863037f, Q6 = -4.363251E-06f, Q7 = 1.6881455E-05f, Q8 = -2.9550986E-06f, Q9 = 1.7871231E-07f;
    // 2^r ≈ 1 + B1·r + … + B6·r^6 on [−½, ½]; GELU uses −½ times it (exact scaling by a power of two).
    internal const float B1 = 0.6931472f, B2 = 0.24022648f, B3 = 0.055503324f, B4 = 0.009618437f, B5 = 0.0013398874f, B6 = 0.00015353362f;

    // ---------------- vectors: one text for every width (TSimd = V128, V256 or V512) ----------------

    /// <summary>exp on the lanes of one vector (see the class remarks for the algorithm and bound).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static TVec Exp<TSimd, TVec>(TVec x) where TSimd : struct, ISimd<TVec> where TVec : struct
    {
        // Clamp so n stays in [-126, 127] and the exponent-bit trick cannot overflow; fix the ends up below.
        TVec xc = TSimd.MinNative(TSimd.MaxNative(x, TSimd.Create(ExpMin)), TSimd.Create(ExpMax));
        TVec kf = TSimd.MultiplyAddEstimate(xc, TSimd.Create(Log2E), TSimd.Create(RoundMagic));
        TVec p = TSimd.Add(ExpMinusOne<TSimd, TVec>(xc, kf), TSimd.One);
        // The low mantissa bits of kf hold n (two's complement); shifting them into the exponent field builds 2^n.
        TVec scale = TSimd.ShiftLeftAddInt32(kf, 23, 127 << 23);
        TVec res = TSimd.Multiply(p, scale);
        res = TSimd.ConditionalSelect(TSimd.LessThan(x, TSimd.Create(ExpMin)), TSimd.Zero, res);
        res = TSimd.ConditionalSelect(TSimd.GreaterThan(x, TSimd.Create(ExpMax)), TSimd.Create(float.PositiveInfinity), res);
        return TSimd.ConditionalSelect(TSimd.Equals(x, x), res, x); // NaN lanes stay NaN
    }

    // exp(x) for x = score − rowmax ≤ 0 (−∞ in masked lanes), for softmax (causal attention; the bench's dense baseline):
    // Exp's clamp, reduction and polynomial without the overflow and NaN fix-ups general x needs, and 2^n·(1 + q) as
    // one FMA, 2^n·q + 2^n (q = e^r − 1: one rounding instead of two). x < ExpMin (masked lanes included) gives +0;
    // the clamp keeps 2^n a normal float for those lanes too (no denormal slow paths). MaxNative(ExpMin, x) keeps a
    // NaN x (maxps returns its second operand when either is NaN; NEON's fmax propagates it), so a NaN score still
    // makes its row NaN.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static TVec ExpNonPositive<TSimd, TVec>(TVec x) where TSimd : struct, ISimd<TVec> where TVec : struct
    {
        TVec xc = TSimd.MaxNative(TSimd.Create(ExpMin), x);
        TVec kf = TSimd.MultiplyAddEstimate(xc, TSimd.Create(Log2E), TSimd.Create(RoundMagic));
        TVec scale = TSimd.ShiftLeftAddInt32(kf, 23, 127 << 23); // 2^n from the low mantissa bits of kf
        TVec res = TSimd.MultiplyAddEstimate(ExpMinusOne<TSimd, TVec>(xc, kf), scale, scale);
        return TSimd.ConditionalSelect(TSimd.LessThan(x, TSimd.Create(ExpMin)), TSimd.Zero, res);
    }

    /// <summary>
    /// The shared core of <see cref="Exp"/> and <see cref="ExpNonPositive"/>: for a clamped x and kf = x·log2(e) +
    /// RoundMagic (n in its low mantissa bits), x = n·ln2 + r; returns e^r − 1, the polynomial in r.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TVec ExpMinusOne<TSimd, TVec>(TVec xc, TVec kf) where TSimd : struct, ISimd<TVec> where TVec : struct
    {
        TVec n = TSimd.Subtract(kf, TSimd.Create(RoundMagic));
        TVec r = TSimd.MultiplyAddEstimate(n, TSimd.Create(-Ln2Hi), xc);
        r = TSimd.MultiplyAddEstimate(n, TSimd.Create(-Ln2Lo), r);
        TVec p = TSimd.MultiplyAddEstimate(TSimd.Create(E5), r, TSimd.Create(E4));
        p = TSimd.MultiplyAddEstimate(p, r, TSimd.Create(E3));
        p = TSimd.MultiplyAddEstimate(p, r, TSimd.Create(E2));
        p = TSimd.MultiplyAddEstimate(p, r, TSimd.Create(E1));
        p = TSimd.MultiplyAddEstimate(p, r, TSimd.Create(E0));
        return TSimd.MultiplyAddEstimate(p, TSimd.Multiply(r, r), r);
    }

    /// <summary>Exact GELU on the lanes of one vector: max(x, 0) − ½·a·erfc(a/√2), a = min(|x|, 6), one branch-free formula.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static TVec Gelu<TSimd, TVec>(TVec x) where TSimd : struct, ISimd<TVec> where TVec : struct
    {
        // NaN lanes must stay NaN in a (a NaN a makes the final FMA NaN). MinNative is one minps, which returns its
        // second operand when either is NaN, so the clamp goes first (ARM's fmin returns NaN either way). The generic
        // IEEE Min compiles to three instructions here (vrangeps + 2 vfixupimmps), so it is not used.
        TVec a = TSimd.MinNative(TSimd.Create(GeluClamp), TSimd.Abs(x));
        TVec u = TSimd.Subtract(a, TSimd.Create(GeluShift));
        TVec q = TSimd.MultiplyAddEstimate(TSimd.Create(Q9), u, TSimd.Create(Q8));
        q = TSimd.MultiplyAddEstimate(q, u, TSimd.Create(Q7));
        q = TSimd.MultiplyAddEstimate(q, u, TSimd.Create(Q6));
        q = TSimd.MultiplyAddEstimate(q, u, TSimd.Create(Q5));
        q = TSimd.MultiplyAddEstimate(q, u, TSimd.Create(Q4));
        q = TSimd.MultiplyAddEstimate(q, u, TSimd.Create(Q3));
        q = TSimd.MultiplyAddEstimate(q, u, TSimd.Create(Q2));
        q = TSimd.MultiplyAddEstimate(q, u, TSimd.Create(Q1));
        q = TSimd.MultiplyAddEstimate(q, u, TSimd.Create(Q0)); // log2 erfc(a/√2), in [−29, 0]
        // 2^q = 2^r·2^n: n = round(q), r = q − n exact and in [−½, ½].
        TVec n = TSimd.RoundToCarrier(q);
        TVec r = TSimd.Subtract(q, TSimd.CarriedInteger(n));
        TVec p = TSimd.MultiplyAddEstimate(TSimd.Create(-0.5f * B6), r, TSimd.Create(-0.5f * B5));
        p = TSimd.MultiplyAddEstimate(p, r, TSimd.Create(-0.5f * B4));
        p = TSimd.MultiplyAddEstimate(p, r, TSimd.Create(-0.5f * B3));
        p = TSimd.MultiplyAddEstimate(p, r, TSimd.Create(-0.5f * B2));
        p = TSimd.MultiplyAddEstimate(p, r, TSimd.Create(-0.5f * B1));
        p = TSimd.MultiplyAddEstimate(p, r, TSimd.Create(-0.5f)); // −½·2^r in [−0.71, −0.35]
        // −½·erfc = −½·2^r·2^n (n ≥ −29: the result stays normal, so the scaling is exact).
        TVec minusHalfErfc = TSimd.ScaleExp2(p, n);
        return TSimd.MultiplyAddEstimate(a, minusHalfErfc, TSimd.MaxNative(x, TSimd.Zero));
    }

    /// <summary>
    /// SiLU on the lanes of one vector: x·sigmoid(x) = x / (1 + exp(−x)), with <see cref="Exp"/> (≈ 1–2 ulp) and one
    /// rounded division, so ≈ 3 ulp. x below −88.4 gives −0 (exp(−x) = +∞); NaN stays NaN.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static TVec Silu<TSimd, TVec>(TVec x) where TSimd : struct, ISimd<TVec> where TVec : struct
        => TSimd.Divide(x, TSimd.Add(TSimd.One, Exp<TSimd, TVec>(TSimd.Negate(x))));
}
