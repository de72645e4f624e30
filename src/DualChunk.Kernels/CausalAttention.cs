using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace DualChunk.Kernels;

/// <summary>
/// Edifice's masked causal softmax attention over T positions of one head:
/// <c>S = q·kᵀ·scale</c>; <c>S[i][j] = -1e9</c> for j &gt; i; <c>P = exp(S - rowmax) / (rowsum + 1e-8)</c>; <c>o = P·v</c>.
/// Masked entries contribute exp(-1e9 - max) = 0 exactly in float32, so they are skipped, not computed.
/// Optionally blends with one shared row: <c>out = g ⊙ blendRow + (1 - g) ⊙ o</c>.
/// </summary>
/// <remarks>
/// <para>Fused, per call: K is transposed into scratch as Kᵀ [d, Tp] (Tp = T rounded up to 16, zero padded) so the
/// scores of query row i vectorize over keys (one broadcast q[i][e]·scale times a row of Kᵀ, accumulated over e, four
/// key vectors in flight, and four chains over e for the last one to three); V is copied into scratch as [T, Dp] (Dp = d rounded up to the vector width, zero padded)
/// so P·V vectorizes over d with no tail (two vectors of Dp and four keys at a time: eight accumulators). Row i computes only keys 0..i: the last key vector is partial and its lanes
/// past i are masked out of the max and the sum. The 1/(sum + 1e-8) factor and the optional blend are applied
/// once to the d-vector of the result, fused into the store.</para>
/// <para>Assumes real scores (rowmax &gt; −1e9 + 104): then every masked exp is exactly 0 in float32, as in Edifice.</para>
/// <para>Accuracy: exp is <see cref="VectorMath"/>'s (≈1.4 ulp); the tests hold the result to
/// 2e-6·max|reference| + 2e-6·|reference| against the float64 twin.</para>
/// The Vector128/256/512 sections are one algorithm text instantiated per width.
/// </remarks>
public static class CausalAttention
{
    /// <summary>Edifice's mask value.</summary>
    public const float MaskValue = -1e9f;

    /// <summary>Edifice's softmax denominator guard.</summary>
    public const float DenominatorEpsilon = 1e-8f;

    private const int Pad = 16; // widest vector: the scratch layout fits every path

    private static int RoundUp(int x, int m) => (x + m - 1) / m * m;

    /// <summary>
    /// Floats of scratch one call needs for <paramref name="t"/> positions of head width <paramref name="d"/>:
    /// Kᵀ [d, T↑16] + V [T, d↑16] + one score row [T↑16] + one output row [d↑16], i.e. O(T·d), never O(T²).
    /// </summary>
    public static int ScratchFloats(int t, int d)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(t);
        ArgumentOutOfRangeException.ThrowIfNegative(d);
        long tp = RoundUp(t, Pad), dp = RoundUp(d, Pad);
        long n = d * tp + t * dp + tp + dp;
        if (n > Array.MaxLength) throw new ArgumentOutOfRangeException(nameof(t), "Attention scratch would exceed the largest array.");
        return (int)n;
    }

    /// <summary>
    /// Row i of q, k, v is at <c>q[i * qStride]</c> etc. (d floats each); row i of the result goes to
    /// <c>output[i * outStride]</c>. When <paramref name="gate"/> is non-empty, <paramref name="blendRow"/> [d] and
    /// <paramref name="gate"/> [d] (already sigmoid-ed) blend the result as described on the class.
    /// <paramref name="scratch"/> must hold <see cref="ScratchFloats"/>(t, d) floats. Only d floats of each output row
    /// are written.
    /// </summary>
    public static void Run(ReadOnlySpan<float> q, int qStride, ReadOnlySpan<float> k, int kStride,
        ReadOnlySpan<float> v, int vStride, int t, int d, float scale, Span<float> output, int outStride,
        Span<float> scratch, ReadOnlySpan<float> blendRow, ReadOnlySpan<float> gate)
        => Run(q, qStride, k, kStride, v, vStride, t, d, scale, output, outStride, scratch, blendRow, gate, 0, KernelSelection.Isa);

    /// <summary>
    /// Computes only query rows <paramref name="firstRow"/>..t-1 (keys and values 0..t-1 as always): the
    /// last-timestep readout needs one row of the last chunk. Row indexing of q and output is unchanged.
    /// </summary>
    public static void Run(ReadOnlySpan<float> q, int qStride, ReadOnlySpan<float> k, int kStride,
        ReadOnlySpan<float> v, int vStride, int t, int d, float scale, Span<float> output, int outStride,
        Span<float> scratch, ReadOnlySpan<float> blendRow, ReadOnlySpan<float> gate, int firstRow)
        => Run(q, qStride, k, kStride, v, vStride, t, d, scale, output, outStride, scratch, blendRow, gate, firstRow, KernelSelection.Isa);

    /// <summary>Same as the public overload on an explicit path (tests).</summary>
    internal static void Run(ReadOnlySpan<float> q, int qStride, ReadOnlySpan<float> k, int kStride,
        ReadOnlySpan<float> v, int vStride, int t, int d, float scale, Span<float> output, int outStride,
        Span<float> scratch, ReadOnlySpan<float> blendRow, ReadOnlySpan<float> gate, KernelIsa isa)
        => Run(q, qStride, k, kStride, v, vStride, t, d, scale, output, outStride, scratch, blendRow, gate, 0, isa);

    /// <summary>The implementation: query rows firstRow..t-1 on an explicit path.</summary>
    internal static void Run(ReadOnlySpan<float> q, int qStride, ReadOnlySpan<float> k, int kStride,
        ReadOnlySpan<float> v, int vStride, int t, int d, float scale, Span<float> output, int outStride,
        Span<float> scratch, ReadOnlySpan<float> blendRow, ReadOnlySpan<float> gate, int firstRow, KernelIsa isa)
    {
        ElementwiseDriver.CheckIsa(isa);
        if (t < 0) throw new ArgumentOutOfRangeException(nameof(t), t, "T must be non-negative.");
        if (d < 1) throw new ArgumentOutOfRangeException(nameof(d), d, "Head width must be at least 1.");
        if (firstRow < 0 || (firstRow >= t && t > 0))
            throw new ArgumentOutOfRangeException(nameof(firstRow), firstRow, $"firstRow must be in [0, {t}).");
        if (t == 0) return;
        CheckRows(q.Length, qStride, t, d, nameof(q));
        CheckRows(k.Length, kStride, t, d, nameof(k));
        CheckRows(v.Length, vStride, t, d, nameof(v));
        CheckRows(output.Length, outStride, t, d, nameof(output));
        if (scratch.Length < ScratchFloats(t, d))
            throw new ArgumentException($"scratch has {scratch.Length} floats, ScratchFloats({t}, {d}) = {ScratchFloats(t, d)} needed.", nameof(scratch));
        if (!gate.IsEmpty)
        {
            if (gate.Length < d) throw new ArgumentException($"gate has {gate.Length} floats, d = {d} needed.", nameof(gate));
            if (blendRow.Length < d) throw new ArgumentException($"blendRow has {blendRow.Length} floats, d = {d} needed.", nameof(blendRow));
        }

        int w = isa switch
        {
            KernelIsa.Vector512 => Vector512<float>.Count,
            KernelIsa.Vector256 => Vector256<float>.Count,
            _ => Vector128<float>.Count,
        };
        int tp = RoundUp(t, Pad), dpw = RoundUp(d, w);
        Span<float> kt = scratch[..(d * tp)];
        Span<float> vs = scratch.Slice(d * tp, t * dpw);
        Span<float> s = scratch.Slice(d * tp + t * RoundUp(d, Pad), tp);
        Span<float> ob = scratch.Slice(d * tp + t * RoundUp(d, Pad) + tp, RoundUp(d, Pad));

        // Kᵀ: kt[e, j] = k[j, e]; padding keys are zero (their scores are computed, then masked). The bounds were
        // checked above (CheckRows, ScratchFloats), so the copies run on refs: with span indexing the transpose
        // of a 64×32 head cost about as much as its causal scores.
        ref float kr0 = ref MemoryMarshal.GetReference(k);
        ref float kt0 = ref MemoryMarshal.GetReference(kt);
        for (int j = 0; j < t; j++)
        {
            ref float kr = ref Unsafe.Add(ref kr0, (nint)j * kStride);
            ref float kc = ref Unsafe.Add(ref kt0, j);
            for (int e = 0; e < d; e++) Unsafe.Add(ref kc, (nint)e * tp) = Unsafe.Add(ref kr, e);
        }
        if (tp > t)
            for (int e = 0; e < d; e++) kt.Slice(e * tp + t, tp - t).Clear();
        // V rows padded to a whole number of vectors, padding zero: P·V needs no tail.
        ref float v0 = ref MemoryMarshal.GetReference(v);
        ref float vs0 = ref MemoryMarshal.GetReference(vs);
        for (int j = 0; j < t; j++)
        {
            Unsafe.CopyBlockUnaligned(ref Unsafe.As<float, byte>(ref Unsafe.Add(ref vs0, (nint)j * dpw)),
                ref Unsafe.As<float, byte>(ref Unsafe.Add(ref v0, (nint)j * vStride)), (uint)(d * sizeof(float)));
            if (dpw > d) vs.Slice(j * dpw + d, dpw - d).Clear();
        }

        ref float ktr = ref MemoryMarshal.GetReference(kt);
        ref float vsr = ref MemoryMarshal.GetReference(vs);
        ref float sr = ref MemoryMarshal.GetReference(s);
        ref float obr = ref MemoryMarshal.GetReference(ob);
        for (int i = firstRow; i < t; i++)
        {
            ReadOnlySpan<float> qi = q.Slice(i * qStride, d);
            switch (isa)
            {
                case KernelIsa.Vector512: Row512(qi, ref ktr, tp, ref vsr, dpw, i, scale, ref sr, ref obr); break;
                case KernelIsa.Vector256: Row256(qi, ref ktr, tp, ref vsr, dpw, i, scale, ref sr, ref obr); break;
                default: Row128(qi, ref ktr, tp, ref vsr, dpw, i, scale, ref sr, ref obr); break;
            }
            Store(ob[..d], output.Slice(i * outStride, d), blendRow, gate);
        }
    }

    private static void CheckRows(int length, int stride, int t, int d, string name)
    {
        if (t > 1 && stride < d)
            throw new ArgumentException($"{name}: stride {stride} is smaller than the row width {d}.", name);
        long need = (long)(t - 1) * stride + d;
        if (length < need)
            throw new ArgumentException($"{name} has {length} floats; {t} rows of {d} at stride {stride} need {need}.", name);
    }

    // out = o, or o + g·(blend − o) = g·blend + (1 − g)·o. Vector128 chunks with an overlapping last chunk
    // (d ≥ 4; the overlap recomputes the same values from ob), scalar only for d &lt; 4.
    private static void Store(ReadOnlySpan<float> o, Span<float> dst, ReadOnlySpan<float> blendRow, ReadOnlySpan<float> gate)
    {
        int d = o.Length;
        bool blend = !gate.IsEmpty;
        if (d < Vector128<float>.Count || !Vector128.IsHardwareAccelerated)
        {
            for (int e = 0; e < d; e++) dst[e] = blend ? o[e] + gate[e] * (blendRow[e] - o[e]) : o[e];
            return;
        }
        ref float or = ref MemoryMarshal.GetReference(o);
        ref float dr = ref MemoryMarshal.GetReference(dst);
        ref float gr = ref MemoryMarshal.GetReference(gate);
        ref float br = ref MemoryMarshal.GetReference(blendRow);
        int w = Vector128<float>.Count;
        for (int e = 0; ; e += w)
        {
            nuint at = (nuint)Math.Min(e, d - w);
            Vector128<float> x = Vector128.LoadUnsafe(ref or, at);
            if (blend)
                x = Vector128.MultiplyAddEstimate(Vector128.LoadUnsafe(ref gr, at), Vector128.LoadUnsafe(ref br, at) - x, x);
            x.StoreUnsafe(ref dr, at);
            if (e + w >= d) break;
        }
    }

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

    // One query row on Vector128: scores of keys 0..i into s, masked softmax numerators in place, then
    // ob[0..Dp) = (Σ_j p_j·V[j]) / (Σ_j p_j + 1e-8).
    private static void Row128(ReadOnlySpan<float> qi, ref float kt, int tp, ref float vs, int dpw, int i, float scale,
        ref float s, ref float ob)
    {
        int w = Vector128<float>.Count;
        int d = qi.Length;
        int nb = i / w + 1; // key vectors covering keys 0..i
        int b = 0;
        // Four key vectors at a time: four independent FMA chains over e hide the FMA latency.
        for (; b + 4 <= nb; b += 4)
        {
            Vector128<float> a0 = Vector128<float>.Zero, a1 = a0, a2 = a0, a3 = a0;
            for (int e = 0; e < d; e++)
            {
                Vector128<float> qe = Vector128.Create(qi[e] * scale);
                ref float row = ref Unsafe.Add(ref kt, e * tp + b * w);
                a0 = Vector128.MultiplyAddEstimate(qe, Vector128.LoadUnsafe(ref row), a0);
                a1 = Vector128.MultiplyAddEstimate(qe, Vector128.LoadUnsafe(ref row, (nuint)w), a1);
                a2 = Vector128.MultiplyAddEstimate(qe, Vector128.LoadUnsafe(ref row, (nuint)(2 * w)), a2);
                a3 = Vector128.MultiplyAddEstimate(qe, Vector128.LoadUnsafe(ref row, (nuint)(3 * w)), a3);
            }
            a0.StoreUnsafe(ref s, (nuint)(b * w));
            a1.StoreUnsafe(ref s, (nuint)((b + 1) * w));
            a2.StoreUnsafe(ref s, (nuint)((b + 2) * w));
            a3.StoreUnsafe(ref s, (nuint)((b + 3) * w));
        }
        // The last 1–3 key vectors: four chains over e (e mod 4) each, so a lone key vector is not bound by the
        // latency of d dependent FMAs.
        for (; b < nb; b++)
        {
            Vector128<float> a0 = Vector128<float>.Zero, a1 = a0, a2 = a0, a3 = a0;
            ref float col = ref Unsafe.Add(ref kt, b * w);
            int e = 0;
            for (; e + 4 <= d; e += 4)
            {
                a0 = Vector128.MultiplyAddEstimate(Vector128.Create(qi[e] * scale), Vector128.LoadUnsafe(ref col, (nuint)(e * tp)), a0);
                a1 = Vector128.MultiplyAddEstimate(Vector128.Create(qi[e + 1] * scale), Vector128.LoadUnsafe(ref col, (nuint)((e + 1) * tp)), a1);
                a2 = Vector128.MultiplyAddEstimate(Vector128.Create(qi[e + 2] * scale), Vector128.LoadUnsafe(ref col, (nuint)((e + 2) * tp)), a2);
                a3 = Vector128.MultiplyAddEstimate(Vector128.Create(qi[e + 3] * scale), Vector128.LoadUnsafe(ref col, (nuint)((e + 3) * tp)), a3);
            }
            for (; e < d; e++)
                a0 = Vector128.MultiplyAddEstimate(Vector128.Create(qi[e] * scale), Vector128.LoadUnsafe(ref col, (nuint)(e * tp)), a0);
            ((a0 + a1) + (a2 + a3)).StoreUnsafe(ref s, (nuint)(b * w));
        }

        // Lanes of the last key vector past key i are masked: −∞ for the max, 0 for the sum and P·V.
        int lastAt = (nb - 1) * w;
        Vector128<float> live = Vector128.LessThanOrEqual(Vector128<int>.Indices, Vector128.Create(i - lastAt)).AsSingle();
        Vector128<float> lastS = Vector128.ConditionalSelect(live, Vector128.LoadUnsafe(ref s, (nuint)lastAt), Vector128.Create(float.NegativeInfinity));
        Vector128<float> mx = lastS;
        for (int j = 0; j < lastAt; j += w) mx = Vector128.Max(mx, Vector128.LoadUnsafe(ref s, (nuint)j));
        Vector128<float> max = Vector128.Create(VectorMath.MaxAcross(mx));

        Vector128<float> sum = Vector128<float>.Zero;
        for (int j = 0; j < lastAt; j += w)
        {
            Vector128<float> p = VectorMath.Exp(Vector128.LoadUnsafe(ref s, (nuint)j) - max);
            p.StoreUnsafe(ref s, (nuint)j);
            sum += p;
        }
        {
            Vector128<float> p = VectorMath.Exp(lastS - max) & live; // exp(−∞) is 0 already; the AND also clears NaN garbage
            p.StoreUnsafe(ref s, (nuint)lastAt);
            sum += p;
        }
        Vector128<float> inv = Vector128.Create(1f / (Vector128.Sum(sum) + DenominatorEpsilon));

        // P·V over d: two vectors of Dp at a time, keys four at a time, eight accumulators (two FMAs per cycle
        // need eight chains in flight); then one vector with four.
        int n = i + 1;
        int c = 0;
        for (; c + 2 * w <= dpw; c += 2 * w)
        {
            Vector128<float> o0 = Vector128<float>.Zero, o1 = o0, o2 = o0, o3 = o0, u0 = o0, u1 = o0, u2 = o0, u3 = o0;
            ref float vc = ref Unsafe.Add(ref vs, c);
            int j = 0;
            for (; j + 4 <= n; j += 4)
            {
                Vector128<float> p0 = Vector128.Create(Unsafe.Add(ref s, j)), p1 = Vector128.Create(Unsafe.Add(ref s, j + 1));
                Vector128<float> p2 = Vector128.Create(Unsafe.Add(ref s, j + 2)), p3 = Vector128.Create(Unsafe.Add(ref s, j + 3));
                ref float v0 = ref Unsafe.Add(ref vc, j * dpw);
                o0 = Vector128.MultiplyAddEstimate(p0, Vector128.LoadUnsafe(ref v0), o0);
                u0 = Vector128.MultiplyAddEstimate(p0, Vector128.LoadUnsafe(ref v0, (nuint)w), u0);
                o1 = Vector128.MultiplyAddEstimate(p1, Vector128.LoadUnsafe(ref v0, (nuint)dpw), o1);
                u1 = Vector128.MultiplyAddEstimate(p1, Vector128.LoadUnsafe(ref v0, (nuint)(dpw + w)), u1);
                o2 = Vector128.MultiplyAddEstimate(p2, Vector128.LoadUnsafe(ref v0, (nuint)(2 * dpw)), o2);
                u2 = Vector128.MultiplyAddEstimate(p2, Vector128.LoadUnsafe(ref v0, (nuint)(2 * dpw + w)), u2);
                o3 = Vector128.MultiplyAddEstimate(p3, Vector128.LoadUnsafe(ref v0, (nuint)(3 * dpw)), o3);
                u3 = Vector128.MultiplyAddEstimate(p3, Vector128.LoadUnsafe(ref v0, (nuint)(3 * dpw + w)), u3);
            }
            for (; j < n; j++)
            {
                Vector128<float> p0 = Vector128.Create(Unsafe.Add(ref s, j));
                o0 = Vector128.MultiplyAddEstimate(p0, Vector128.LoadUnsafe(ref vc, (nuint)(j * dpw)), o0);
                u0 = Vector128.MultiplyAddEstimate(p0, Vector128.LoadUnsafe(ref vc, (nuint)(j * dpw + w)), u0);
            }
            (((o0 + o1) + (o2 + o3)) * inv).StoreUnsafe(ref ob, (nuint)c);
            (((u0 + u1) + (u2 + u3)) * inv).StoreUnsafe(ref ob, (nuint)(c + w));
        }
        for (; c < dpw; c += w)
        {
            Vector128<float> o0 = Vector128<float>.Zero, o1 = o0, o2 = o0, o3 = o0;
            ref float vc = ref Unsafe.Add(ref vs, c);
            int j = 0;
            for (; j + 4 <= n; j += 4)
            {
                o0 = Vector128.MultiplyAddEstimate(Vector128.Create(Unsafe.Add(ref s, j)), Vector128.LoadUnsafe(ref vc, (nuint)(j * dpw)), o0);
                o1 = Vector128.MultiplyAddEstimate(Vector128.Create(Unsafe.Add(ref s, j + 1)), Vector128.LoadUnsafe(ref vc, (nuint)((j + 1) * dpw)), o1);
                o2 = Vector128.MultiplyAddEstimate(Vector128.Create(Unsafe.Add(ref s, j + 2)), Vector128.LoadUnsafe(ref vc, (nuint)((j + 2) * dpw)), o2);
                o3 = Vector128.MultiplyAddEstimate(Vector128.Create(Unsafe.Add(ref s, j + 3)), Vector128.LoadUnsafe(ref vc, (nuint)((j + 3) * dpw)), o3);
            }
            for (; j < n; j++)
                o0 = Vector128.MultiplyAddEstimate(Vector128.Create(Unsafe.Add(ref s, j)), Vector128.LoadUnsafe(ref vc, (nuint)(j * dpw)), o0);
            (((o0 + o1) + (o2 + o3)) * inv).StoreUnsafe(ref ob, (nuint)c);
        }
    }

    // One query row on Vector256: scores of keys 0..i into s, masked softmax numerators in place, then
    // ob[0..Dp) = (Σ_j p_j·V[j]) / (Σ_j p_j + 1e-8).
    private static void Row256(ReadOnlySpan<float> qi, ref float kt, int tp, ref float vs, int dpw, int i, float scale,
        ref float s, ref float ob)
    {
        int w = Vector256<float>.Count;
        int d = qi.Length;
        int nb = i / w + 1; // key vectors covering keys 0..i
        int b = 0;
        // Four key vectors at a time: four independent FMA chains over e hide the FMA latency.
        for (; b + 4 <= nb; b += 4)
        {
            Vector256<float> a0 = Vector256<float>.Zero, a1 = a0, a2 = a0, a3 = a0;
            for (int e = 0; e < d; e++)
            {
                Vector256<float> qe = Vector256.Create(qi[e] * scale);
                ref float row = ref Unsafe.Add(ref kt, e * tp + b * w);
                a0 = Vector256.MultiplyAddEstimate(qe, Vector256.LoadUnsafe(ref row), a0);
                a1 = Vector256.MultiplyAddEstimate(qe, Vector256.LoadUnsafe(ref row, (nuint)w), a1);
                a2 = Vector256.MultiplyAddEstimate(qe, Vector256.LoadUnsafe(ref row, (nuint)(2 * w)), a2);
                a3 = Vector256.MultiplyAddEstimate(qe, Vector256.LoadUnsafe(ref row, (nuint)(3 * w)), a3);
            }
            a0.StoreUnsafe(ref s, (nuint)(b * w));
            a1.StoreUnsafe(ref s, (nuint)((b + 1) * w));
            a2.StoreUnsafe(ref s, (nuint)((b + 2) * w));
            a3.StoreUnsafe(ref s, (nuint)((b + 3) * w));
        }
        // The last 1–3 key vectors: four chains over e (e mod 4) each, so a lone key vector is not bound by the
        // latency of d dependent FMAs.
        for (; b < nb; b++)
        {
            Vector256<float> a0 = Vector256<float>.Zero, a1 = a0, a2 = a0, a3 = a0;
            ref float col = ref Unsafe.Add(ref kt, b * w);
            int e = 0;
            for (; e + 4 <= d; e += 4)
            {
                a0 = Vector256.MultiplyAddEstimate(Vector256.Create(qi[e] * scale), Vector256.LoadUnsafe(ref col, (nuint)(e * tp)), a0);
                a1 = Vector256.MultiplyAddEstimate(Vector256.Create(qi[e + 1] * scale), Vector256.LoadUnsafe(ref col, (nuint)((e + 1) * tp)), a1);
                a2 = Vector256.MultiplyAddEstimate(Vector256.Create(qi[e + 2] * scale), Vector256.LoadUnsafe(ref col, (nuint)((e + 2) * tp)), a2);
                a3 = Vector256.MultiplyAddEstimate(Vector256.Create(qi[e + 3] * scale), Vector256.LoadUnsafe(ref col, (nuint)((e + 3) * tp)), a3);
            }
            for (; e < d; e++)
                a0 = Vector256.MultiplyAddEstimate(Vector256.Create(qi[e] * scale), Vector256.LoadUnsafe(ref col, (nuint)(e * tp)), a0);
            ((a0 + a1) + (a2 + a3)).StoreUnsafe(ref s, (nuint)(b * w));
        }

        // Lanes of the last key vector past key i are masked: −∞ for the max, 0 for the sum and P·V.
        int lastAt = (nb - 1) * w;
        Vector256<float> live = Vector256.LessThanOrEqual(Vector256<int>.Indices, Vector256.Create(i - lastAt)).AsSingle();
        Vector256<float> lastS = Vector256.ConditionalSelect(live, Vector256.LoadUnsafe(ref s, (nuint)lastAt), Vector256.Create(float.NegativeInfinity));
        Vector256<float> mx = lastS;
        for (int j = 0; j < lastAt; j += w) mx = Vector256.Max(mx, Vector256.LoadUnsafe(ref s, (nuint)j));
        Vector256<float> max = Vector256.Create(VectorMath.MaxAcross(mx));

        Vector256<float> sum = Vector256<float>.Zero;
        for (int j = 0; j < lastAt; j += w)
        {
            Vector256<float> p = VectorMath.Exp(Vector256.LoadUnsafe(ref s, (nuint)j) - max);
            p.StoreUnsafe(ref s, (nuint)j);
            sum += p;
        }
        {
            Vector256<float> p = VectorMath.Exp(lastS - max) & live; // exp(−∞) is 0 already; the AND also clears NaN garbage
            p.StoreUnsafe(ref s, (nuint)lastAt);
            sum += p;
        }
        Vector256<float> inv = Vector256.Create(1f / (Vector256.Sum(sum) + DenominatorEpsilon));

        // P·V over d: two vectors of Dp at a time, keys four at a time, eight accumulators (two FMAs per cycle
        // need eight chains in flight); then one vector with four.
        int n = i + 1;
        int c = 0;
        for (; c + 2 * w <= dpw; c += 2 * w)
        {
            Vector256<float> o0 = Vector256<float>.Zero, o1 = o0, o2 = o0, o3 = o0, u0 = o0, u1 = o0, u2 = o0, u3 = o0;
            ref float vc = ref Unsafe.Add(ref vs, c);
            int j = 0;
            for (; j + 4 <= n; j += 4)
            {
                Vector256<float> p0 = Vector256.Create(Unsafe.Add(ref s, j)), p1 = Vector256.Create(Unsafe.Add(ref s, j + 1));
                Vector256<float> p2 = Vector256.Create(Unsafe.Add(ref s, j + 2)), p3 = Vector256.Create(Unsafe.Add(ref s, j + 3));
                ref float v0 = ref Unsafe.Add(ref vc, j * dpw);
                o0 = Vector256.MultiplyAddEstimate(p0, Vector256.LoadUnsafe(ref v0), o0);
                u0 = Vector256.MultiplyAddEstimate(p0, Vector256.LoadUnsafe(ref v0, (nuint)w), u0);
                o1 = Vector256.MultiplyAddEstimate(p1, Vector256.LoadUnsafe(ref v0, (nuint)dpw), o1);
                u1 = Vector256.MultiplyAddEstimate(p1, Vector256.LoadUnsafe(ref v0, (nuint)(dpw + w)), u1);
                o2 = Vector256.MultiplyAddEstimate(p2, Vector256.LoadUnsafe(ref v0, (nuint)(2 * dpw)), o2);
                u2 = Vector256.MultiplyAddEstimate(p2, Vector256.LoadUnsafe(ref v0, (nuint)(2 * dpw + w)), u2);
                o3 = Vector256.MultiplyAddEstimate(p3, Vector256.LoadUnsafe(ref v0, (nuint)(3 * dpw)), o3);
                u3 = Vector256.MultiplyAddEstimate(p3, Vector256.LoadUnsafe(ref v0, (nuint)(3 * dpw + w)), u3);
            }
            for (; j < n; j++)
            {
                Vector256<float> p0 = Vector256.Create(Unsafe.Add(ref s, j));
                o0 = Vector256.MultiplyAddEstimate(p0, Vector256.LoadUnsafe(ref vc, (nuint)(j * dpw)), o0);
                u0 = Vector256.MultiplyAddEstimate(p0, Vector256.LoadUnsafe(ref vc, (nuint)(j * dpw + w)), u0);
            }
            (((o0 + o1) + (o2 + o3)) * inv).StoreUnsafe(ref ob, (nuint)c);
            (((u0 + u1) + (u2 + u3)) * inv).StoreUnsafe(ref ob, (nuint)(c + w));
        }
        for (; c < dpw; c += w)
        {
            Vector256<float> o0 = Vector256<float>.Zero, o1 = o0, o2 = o0, o3 = o0;
            ref float vc = ref Unsafe.Add(ref vs, c);
            int j = 0;
            for (; j + 4 <= n; j += 4)
            {
                o0 = Vector256.MultiplyAddEstimate(Vector256.Create(Unsafe.Add(ref s, j)), Vector256.LoadUnsafe(ref vc, (nuint)(j * dpw)), o0);
                o1 = Vector256.MultiplyAddEstimate(Vector256.Create(Unsafe.Add(ref s, j + 1)), Vector256.LoadUnsafe(ref vc, (nuint)((j + 1) * dpw)), o1);
                o2 = Vector256.MultiplyAddEstimate(Vector256.Create(Unsafe.Add(ref s, j + 2)), Vector256.LoadUnsafe(ref vc, (nuint)((j + 2) * dpw)), o2);
                o3 = Vector256.MultiplyAddEstimate(Vector256.Create(Unsafe.Add(ref s, j + 3)), Vector256.LoadUnsafe(ref vc, (nuint)((j + 3) * dpw)), o3);
            }
            for (; j < n; j++)
                o0 = Vector256.MultiplyAddEstimate(Vector256.Create(Unsafe.Add(ref s, j)), Vector256.LoadUnsafe(ref vc, (nuint)(j * dpw)), o0);
            (((o0 + o1) + (o2 + o3)) * inv).StoreUnsafe(ref ob, (nuint)c);
        }
    }

    // One query row on Vector512: scores of keys 0..i into s, masked softmax numerators in place, then
    // ob[0..Dp) = (Σ_j p_j·V[j]) / (Σ_j p_j + 1e-8).
    private static void Row512(ReadOnlySpan<float> qi, ref float kt, int tp, ref float vs, int dpw, int i, float scale,
        ref float s, ref float ob)
    {
        int w = Vector512<float>.Count;
        int d = qi.Length;
        int nb = i / w + 1; // key vectors covering keys 0..i
        int b = 0;
        // Four key vectors at a time: four independent FMA chains over e hide the FMA latency.
        for (; b + 4 <= nb; b += 4)
        {
            Vector512<float> a0 = Vector512<float>.Zero, a1 = a0, a2 = a0, a3 = a0;
            for (int e = 0; e < d; e++)
            {
                Vector512<float> qe = Vector512.Create(qi[e] * scale);
                ref float row = ref Unsafe.Add(ref kt, e * tp + b * w);
                a0 = Vector512.MultiplyAddEstimate(qe, Vector512.LoadUnsafe(ref row), a0);
                a1 = Vector512.MultiplyAddEstimate(qe, Vector512.LoadUnsafe(ref row, (nuint)w), a1);
                a2 = Vector512.MultiplyAddEstimate(qe, Vector512.LoadUnsafe(ref row, (nuint)(2 * w)), a2);
                a3 = Vector512.MultiplyAddEstimate(qe, Vector512.LoadUnsafe(ref row, (nuint)(3 * w)), a3);
            }
            a0.StoreUnsafe(ref s, (nuint)(b * w));
            a1.StoreUnsafe(ref s, (nuint)((b + 1) * w));
            a2.StoreUnsafe(ref s, (nuint)((b + 2) * w));
            a3.StoreUnsafe(ref s, (nuint)((b + 3) * w));
        }
        // The last 1–3 key vectors: four chains over e (e mod 4) each, so a lone key vector is not bound by the
        // latency of d dependent FMAs.
        for (; b < nb; b++)
        {
            Vector512<float> a0 = Vector512<float>.Zero, a1 = a0, a2 = a0, a3 = a0;
            ref float col = ref Unsafe.Add(ref kt, b * w);
            int e = 0;
            for (; e + 4 <= d; e += 4)
            {
                a0 = Vector512.MultiplyAddEstimate(Vector512.Create(qi[e] * scale), Vector512.LoadUnsafe(ref col, (nuint)(e * tp)), a0);
                a1 = Vector512.MultiplyAddEstimate(Vector512.Create(qi[e + 1] * scale), Vector512.LoadUnsafe(ref col, (nuint)((e + 1) * tp)), a1);
                a2 = Vector512.MultiplyAddEstimate(Vector512.Create(qi[e + 2] * scale), Vector512.LoadUnsafe(ref col, (nuint)((e + 2) * tp)), a2);
                a3 = Vector512.MultiplyAddEstimate(Vector512.Create(qi[e + 3] * scale), Vector512.LoadUnsafe(ref col, (nuint)((e + 3) * tp)), a3);
            }
            for (; e < d; e++)
                a0 = Vector512.MultiplyAddEstimate(Vector512.Create(qi[e] * scale), Vector512.LoadUnsafe(ref col, (nuint)(e * tp)), a0);
            ((a0 + a1) + (a2 + a3)).StoreUnsafe(ref s, (nuint)(b * w));
        }

        // Lanes of the last key vector past key i are masked: −∞ for the max, 0 for the sum and P·V.
        int lastAt = (nb - 1) * w;
        Vector512<float> live = Vector512.LessThanOrEqual(Vector512<int>.Indices, Vector512.Create(i - lastAt)).AsSingle();
        Vector512<float> lastS = Vector512.ConditionalSelect(live, Vector512.LoadUnsafe(ref s, (nuint)lastAt), Vector512.Create(float.NegativeInfinity));
        Vector512<float> mx = lastS;
        for (int j = 0; j < lastAt; j += w) mx = Vector512.Max(mx, Vector512.LoadUnsafe(ref s, (nuint)j));
        Vector512<float> max = Vector512.Create(VectorMath.MaxAcross(mx));

        Vector512<float> sum = Vector512<float>.Zero;
        for (int j = 0; j < lastAt; j += w)
        {
            Vector512<float> p = VectorMath.Exp(Vector512.LoadUnsafe(ref s, (nuint)j) - max);
            p.StoreUnsafe(ref s, (nuint)j);
            sum += p;
        }
        {
            Vector512<float> p = VectorMath.Exp(lastS - max) & live; // exp(−∞) is 0 already; the AND also clears NaN garbage
            p.StoreUnsafe(ref s, (nuint)lastAt);
            sum += p;
        }
        Vector512<float> inv = Vector512.Create(1f / (Vector512.Sum(sum) + DenominatorEpsilon));

        // P·V over d: two vectors of Dp at a time, keys four at a time, eight accumulators (two FMAs per cycle
        // need eight chains in flight); then one vector with four.
        int n = i + 1;
        int c = 0;
        for (; c + 2 * w <= dpw; c += 2 * w)
        {
            Vector512<float> o0 = Vector512<float>.Zero, o1 = o0, o2 = o0, o3 = o0, u0 = o0, u1 = o0, u2 = o0, u3 = o0;
            ref float vc = ref Unsafe.Add(ref vs, c);
            int j = 0;
            for (; j + 4 <= n; j += 4)
            {
                Vector512<float> p0 = Vector512.Create(Unsafe.Add(ref s, j)), p1 = Vector512.Create(Unsafe.Add(ref s, j + 1));
                Vector512<float> p2 = Vector512.Create(Unsafe.Add(ref s, j + 2)), p3 = Vector512.Create(Unsafe.Add(ref s, j + 3));
                ref float v0 = ref Unsafe.Add(ref vc, j * dpw);
                o0 = Vector512.MultiplyAddEstimate(p0, Vector512.LoadUnsafe(ref v0), o0);
                u0 = Vector512.MultiplyAddEstimate(p0, Vector512.LoadUnsafe(ref v0, (nuint)w), u0);
                o1 = Vector512.MultiplyAddEstimate(p1, Vector512.LoadUnsafe(ref v0, (nuint)dpw), o1);
                u1 = Vector512.MultiplyAddEstimate(p1, Vector512.LoadUnsafe(ref v0, (nuint)(dpw + w)), u1);
                o2 = Vector512.MultiplyAddEstimate(p2, Vector512.LoadUnsafe(ref v0, (nuint)(2 * dpw)), o2);
                u2 = Vector512.MultiplyAddEstimate(p2, Vector512.LoadUnsafe(ref v0, (nuint)(2 * dpw + w)), u2);
                o3 = Vector512.MultiplyAddEstimate(p3, Vector512.LoadUnsafe(ref v0, (nuint)(3 * dpw)), o3);
                u3 = Vector512.MultiplyAddEstimate(p3, Vector512.LoadUnsafe(ref v0, (nuint)(3 * dpw + w)), u3);
            }
            for (; j < n; j++)
            {
                Vector512<float> p0 = Vector512.Create(Unsafe.Add(ref s, j));
                o0 = Vector512.MultiplyAddEstimate(p0, Vector512.LoadUnsafe(ref vc, (nuint)(j * dpw)), o0);
                u0 = Vector512.MultiplyAddEstimate(p0, Vector512.LoadUnsafe(ref vc, (nuint)(j * dpw + w)), u0);
            }
            (((o0 + o1) + (o2 + o3)) * inv).StoreUnsafe(ref ob, (nuint)c);
            (((u0 + u1) + (u2 + u3)) * inv).StoreUnsafe(ref ob, (nuint)(c + w));
        }
        for (; c < dpw; c += w)
        {
            Vector512<float> o0 = Vector512<float>.Zero, o1 = o0, o2 = o0, o3 = o0;
            ref float vc = ref Unsafe.Add(ref vs, c);
            int j = 0;
            for (; j + 4 <= n; j += 4)
            {
                o0 = Vector512.MultiplyAddEstimate(Vector512.Create(Unsafe.Add(ref s, j)), Vector512.LoadUnsafe(ref vc, (nuint)(j * dpw)), o0);
                o1 = Vector512.MultiplyAddEstimate(Vector512.Create(Unsafe.Add(ref s, j + 1)), Vector512.LoadUnsafe(ref vc, (nuint)((j + 1) * dpw)), o1);
                o2 = Vector512.MultiplyAddEstimate(Vector512.Create(Unsafe.Add(ref s, j + 2)), Vector512.LoadUnsafe(ref vc, (nuint)((j + 2) * dpw)), o2);
                o3 = Vector512.MultiplyAddEstimate(Vector512.Create(Unsafe.Add(ref s, j + 3)), Vector512.LoadUnsafe(ref vc, (nuint)((j + 3) * dpw)), o3);
            }
            for (; j < n; j++)
                o0 = Vector512.MultiplyAddEstimate(Vector512.Create(Unsafe.Add(ref s, j)), Vector512.LoadUnsafe(ref vc, (nuint)(j * dpw)), o0);
            (((o0 + o1) + (o2 + o3)) * inv).StoreUnsafe(ref ob, (nuint)c);
        }
    }
}
