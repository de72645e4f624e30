using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace DualChunk.Kernels;

/// <summary>
/// Edifice's masked causal softmax attention over T positions of one head:
/// <c>S = q·kᵀ·scale</c>; <c>S[i][j] = -1e9</c> for j &gt; i; <c>P = exp(S - rowmax) / (rowsum + 1e-8)</c>; <c>o = P·v</c>.
/// Masked entries contribute exp(-1e9 - max) = 0 exactly in float32, so they are skipped, not computed.
/// Optionally blends with one shared row: <c>out = g ⊙ blendRow + (1 - g) ⊙ o</c>.
/// </summary>
/// <remarks>
/// <para>Fused, per call: K is transposed into scratch as Kᵀ·scale [d, Tp] (Tp = T rounded up to 16, padding keys
/// zero) so scores vectorize over keys; V is copied into scratch as [T↑4, Dp] (Dp = d rounded up to the vector
/// width; the padding rows T..T↑4 are zero, the padding lanes d..Dp are never read back) so P·V vectorizes over d.</para>
/// <para>Query rows go in blocks of four starting at multiples of four, a register-blocked tile: each Kᵀ vector load
/// (scores) and each V vector load (P·V) feeds four rows. A block never straddles a key vector (widths are multiples
/// of four), so its rows share the number of key vectors. Row i uses keys 0..i: lanes of its last key vector past i are
/// masked out of the max and the sum and its numerators there are stored as 0, so P·V can run every row of the block
/// over the block's keys 0..i0+3 (0·v adds nothing). A row's arithmetic depends only on its block, which depends only
/// on its index: a <c>firstRow</c> call computes the whole block containing firstRow (rows before firstRow are not
/// stored), so its rows equal a full call's bitwise. Rows past T-1 in the last block repeat q row T-1 and are dropped.
/// The 1/(sum + 1e-8) factor and the optional blend are applied once to the d-vector of the result, fused into the
/// store.</para>
/// <para>Assumes real scores (rowmax &gt; −1e9 + 104): then every masked exp is exactly 0 in float32, as in Edifice.</para>
/// <para>Accuracy: exp is <see cref="VectorMath"/>'s (≈1.4 ulp); the tests hold the result to
/// 2e-6·max|reference| + 2e-6·|reference| against the float64 twin.</para>
/// The algorithm is written once (<see cref="Block{TOps, TV}"/>), generic over a vector-ops struct per width;
/// the JIT specializes it for Vector128, Vector256 and Vector512.
/// </remarks>
public static class CausalAttention
{
    /// <summary>Edifice's mask value.</summary>
    public const float MaskValue = -1e9f;

    /// <summary>Edifice's softmax denominator guard.</summary>
    public const float DenominatorEpsilon = 1e-8f;

    private const int Pad = 16; // widest vector: the scratch layout fits every path
    private const int Rows = 4; // query rows per block

    private static int RoundUp(int x, int m) => (x + m - 1) / m * m;

    /// <summary>
    /// Floats of scratch one call needs for <paramref name="t"/> positions of head width <paramref name="d"/>:
    /// Kᵀ [d, T↑16] + V [T↑4, d↑16] + four score rows [T↑16] + four output rows [d↑16] + four row factors, i.e. O(T·d), never O(T²).
    /// </summary>
    public static int ScratchFloats(int t, int d)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(t);
        ArgumentOutOfRangeException.ThrowIfNegative(d);
        long tp = RoundUp(t, Pad), dp = RoundUp(d, Pad);
        long n = d * tp + RoundUp(t, Rows) * dp + Rows * tp + Rows * dp + Rows;
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
        int tp = RoundUp(t, Pad), dp = RoundUp(d, Pad), t4 = RoundUp(t, Rows), dpw = RoundUp(d, w);
        Span<float> kt = scratch[..(d * tp)];
        Span<float> vs = scratch.Slice(d * tp, t4 * dpw);
        Span<float> s = scratch.Slice(d * tp + t4 * dp, Rows * tp);
        Span<float> ob = scratch.Slice(d * tp + t4 * dp + Rows * tp, Rows * dp);

        // Kᵀ·scale: kt[e, j] = k[j, e]·scale; padding keys are zero (their scores are computed, then masked). The
        // bounds were checked above (CheckRows, ScratchFloats), so the copies run on refs.
        TransposeScaled(ref MemoryMarshal.GetReference(k), kStride, ref MemoryMarshal.GetReference(kt), tp, t, d, scale);
        if (tp > t)
            for (int e = 0; e < d; e++) kt.Slice(e * tp + t, tp - t).Clear();
        // V rows at stride Dp; lanes d..Dp only ever reach output lanes past d (not stored), so they are not cleared.
        // Rows t..t↑4 are zero: the last block's P·V reads them with p = 0.
        ref float v0 = ref MemoryMarshal.GetReference(v);
        ref float vs0 = ref MemoryMarshal.GetReference(vs);
        for (int j = 0; j < t; j++)
            Unsafe.CopyBlockUnaligned(ref Unsafe.As<float, byte>(ref Unsafe.Add(ref vs0, (nint)j * dpw)),
                ref Unsafe.As<float, byte>(ref Unsafe.Add(ref v0, (nint)j * vStride)), (uint)(d * sizeof(float)));
        if (t4 > t) vs[(t * dpw)..].Clear();

        ref float q0 = ref MemoryMarshal.GetReference(q);
        ref float ktr = ref MemoryMarshal.GetReference(kt);
        ref float vsr = ref MemoryMarshal.GetReference(vs);
        ref float sr = ref MemoryMarshal.GetReference(s);
        ref float obr = ref MemoryMarshal.GetReference(ob);
        Span<float> inv = scratch.Slice(d * tp + t4 * dp + Rows * tp + Rows * dp, Rows); // 1/(sum + 1e-8) per row of the block
        ref float invr = ref MemoryMarshal.GetReference(inv);
        for (int i0 = firstRow / Rows * Rows; i0 < t; i0 += Rows)
        {
            // Rows past t-1 (last block only) repeat q row t-1; their results are dropped.
            ref float qa = ref Unsafe.Add(ref q0, (nint)i0 * qStride);
            ref float qb = ref Unsafe.Add(ref q0, (nint)Math.Min(i0 + 1, t - 1) * qStride);
            ref float qc = ref Unsafe.Add(ref q0, (nint)Math.Min(i0 + 2, t - 1) * qStride);
            ref float qd = ref Unsafe.Add(ref q0, (nint)Math.Min(i0 + 3, t - 1) * qStride);
            switch (isa)
            {
                case KernelIsa.Vector512: Block<V512, Vector512<float>>(ref qa, ref qb, ref qc, ref qd, d, ref ktr, tp, ref vsr, dpw, i0, ref sr, ref obr, dp, ref invr); break;
                case KernelIsa.Vector256: Block<V256, Vector256<float>>(ref qa, ref qb, ref qc, ref qd, d, ref ktr, tp, ref vsr, dpw, i0, ref sr, ref obr, dp, ref invr); break;
                default: Block<V128, Vector128<float>>(ref qa, ref qb, ref qc, ref qd, d, ref ktr, tp, ref vsr, dpw, i0, ref sr, ref obr, dp, ref invr); break;
            }
            for (int r = Math.Max(0, firstRow - i0); r < Rows && i0 + r < t; r++)
                Store(ob.Slice(r * dp, d), inv[r], output.Slice((i0 + r) * outStride, d), blendRow, gate);
        }
    }

    // kt[e, j] = k[j, e]·scale. Its own method: inside Run, scale was spilled and reloaded every element. With AVX,
    // 8×8 tiles go through registers (unpack pairs of rows, shuffle pairs of pairs, swap 128-bit halves: 24 shuffles
    // per 64 floats instead of 64 scalar strided stores); the rest (j past the last whole 8 rows, e past the last
    // whole 8 columns) is scalar. Both multiply each element once by scale, so the result is the same.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void TransposeScaled(ref float k, int kStride, ref float kt, int tp, int t, int d, float scale)
    {
        int j0 = 0;
        if (Avx.IsSupported)
        {
            Vector256<float> sc = Vector256.Create(scale);
            int e8 = d & ~7;
            for (; j0 + 8 <= t; j0 += 8)
            {
                ref float kr = ref Unsafe.Add(ref k, (nint)j0 * kStride);
                for (int e = 0; e < e8; e += 8)
                {
                    ref float src = ref Unsafe.Add(ref kr, e);
                    Vector256<float> r0 = Vector256.LoadUnsafe(ref src) * sc;
                    Vector256<float> r1 = Vector256.LoadUnsafe(ref src, (nuint)kStride) * sc;
                    Vector256<float> r2 = Vector256.LoadUnsafe(ref src, (nuint)(2 * kStride)) * sc;
                    Vector256<float> r3 = Vector256.LoadUnsafe(ref src, (nuint)(3 * kStride)) * sc;
                    Vector256<float> r4 = Vector256.LoadUnsafe(ref src, (nuint)(4 * kStride)) * sc;
                    Vector256<float> r5 = Vector256.LoadUnsafe(ref src, (nuint)(5 * kStride)) * sc;
                    Vector256<float> r6 = Vector256.LoadUnsafe(ref src, (nuint)(6 * kStride)) * sc;
                    Vector256<float> r7 = Vector256.LoadUnsafe(ref src, (nuint)(7 * kStride)) * sc;
                    // t0 = r0[0] r1[0] r0[1] r1[1] | r0[4] r1[4] r0[5] r1[5], t1 the same for columns 2, 3 | 6, 7; …
                    Vector256<float> t0 = Avx.UnpackLow(r0, r1), t1 = Avx.UnpackHigh(r0, r1);
                    Vector256<float> t2 = Avx.UnpackLow(r2, r3), t3 = Avx.UnpackHigh(r2, r3);
                    Vector256<float> t4 = Avx.UnpackLow(r4, r5), t5 = Avx.UnpackHigh(r4, r5);
                    Vector256<float> t6 = Avx.UnpackLow(r6, r7), t7 = Avx.UnpackHigh(r6, r7);
                    // s0 = rows 0..3 of column 0 | of column 4, s1 columns 1 | 5, …; s4..s7 the same for rows 4..7.
                    Vector256<float> s0 = Avx.Shuffle(t0, t2, 0x44), s1 = Avx.Shuffle(t0, t2, 0xEE);
                    Vector256<float> s2 = Avx.Shuffle(t1, t3, 0x44), s3 = Avx.Shuffle(t1, t3, 0xEE);
                    Vector256<float> s4 = Avx.Shuffle(t4, t6, 0x44), s5 = Avx.Shuffle(t4, t6, 0xEE);
                    Vector256<float> s6 = Avx.Shuffle(t5, t7, 0x44), s7 = Avx.Shuffle(t5, t7, 0xEE);
                    ref float dst = ref Unsafe.Add(ref kt, (nint)e * tp + j0);
                    Avx.Permute2x128(s0, s4, 0x20).StoreUnsafe(ref dst);
                    Avx.Permute2x128(s1, s5, 0x20).StoreUnsafe(ref dst, (nuint)tp);
                    Avx.Permute2x128(s2, s6, 0x20).StoreUnsafe(ref dst, (nuint)(2 * tp));
                    Avx.Permute2x128(s3, s7, 0x20).StoreUnsafe(ref dst, (nuint)(3 * tp));
                    Avx.Permute2x128(s0, s4, 0x31).StoreUnsafe(ref dst, (nuint)(4 * tp));
                    Avx.Permute2x128(s1, s5, 0x31).StoreUnsafe(ref dst, (nuint)(5 * tp));
                    Avx.Permute2x128(s2, s6, 0x31).StoreUnsafe(ref dst, (nuint)(6 * tp));
                    Avx.Permute2x128(s3, s7, 0x31).StoreUnsafe(ref dst, (nuint)(7 * tp));
                }
                for (int jj = j0; jj < j0 + 8; jj++)
                {
                    ref float krj = ref Unsafe.Add(ref k, (nint)jj * kStride);
                    ref float kc = ref Unsafe.Add(ref kt, jj);
                    for (int e = e8; e < d; e++) Unsafe.Add(ref kc, (nint)e * tp) = Unsafe.Add(ref krj, e) * scale;
                }
            }
        }
        for (int j = j0; j < t; j++)
        {
            ref float kr = ref Unsafe.Add(ref k, (nint)j * kStride);
            ref float kc = ref Unsafe.Add(ref kt, j);
            for (int e = 0; e < d; e++) Unsafe.Add(ref kc, (nint)e * tp) = Unsafe.Add(ref kr, e) * scale;
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

    // x = o·inv; out = x, or x + g·(blend − x) = g·blend + (1 − g)·x. Vector128 chunks with an overlapping last chunk
    // (d ≥ 4; the overlap recomputes the same values from o), scalar only for d &lt; 4.
    private static void Store(ReadOnlySpan<float> o, float inv, Span<float> dst, ReadOnlySpan<float> blendRow, ReadOnlySpan<float> gate)
    {
        int d = o.Length;
        bool blend = !gate.IsEmpty;
        if (d < Vector128<float>.Count || !Vector128.IsHardwareAccelerated)
        {
            for (int e = 0; e < d; e++)
            {
                float x = o[e] * inv;
                dst[e] = blend ? x + gate[e] * (blendRow[e] - x) : x;
            }
            return;
        }
        ref float or = ref MemoryMarshal.GetReference(o);
        ref float dr = ref MemoryMarshal.GetReference(dst);
        ref float gr = ref MemoryMarshal.GetReference(gate);
        ref float br = ref MemoryMarshal.GetReference(blendRow);
        Vector128<float> iv = Vector128.Create(inv);
        int w = Vector128<float>.Count;
        for (int e = 0; ; e += w)
        {
            nuint at = (nuint)Math.Min(e, d - w);
            Vector128<float> x = Vector128.LoadUnsafe(ref or, at) * iv;
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

    /// <summary>
    /// Query rows i0..i0+3 (q rows qa..qd): scores into the four score rows s + r·Tp, numerators in place, raw
    /// P·V sums into the four output rows ob + r·Dp and 1/(sum + 1e-8) into inv[r].
    /// </summary>
    private static void Block<TOps, TV>(ref float qa, ref float qb, ref float qc, ref float qd, int d, ref float kt, int tp,
        ref float vs, int dpw, int i0, ref float s, ref float ob, int dp, ref float inv)
        where TOps : struct, ISimd<TV>
        where TV : struct
    {
        int w = TOps.Count;
        int nb = (i0 + Rows - 1) / w + 1; // key vectors covering keys 0..i0+3: the same for each row of the block
        ref float sa = ref s;
        ref float sb = ref Unsafe.Add(ref s, tp);
        ref float sc = ref Unsafe.Add(ref s, 2 * tp);
        ref float sd = ref Unsafe.Add(ref s, 3 * tp);

        // Scores, two key vectors × four rows per step over e: two Kᵀ loads and four q broadcasts feed eight FMAs,
        // eight independent chains (one per row and key vector) keep both FMA ports busy.
        int b = 0;
        for (; b + 2 <= nb; b += 2)
        {
            TV a0 = TOps.Zero, a1 = a0, b0 = a0, b1 = a0, c0 = a0, c1 = a0, d0 = a0, d1 = a0;
            ref float col = ref Unsafe.Add(ref kt, b * w);
            for (int e = 0; e < d; e++)
            {
                ref float row = ref Unsafe.Add(ref col, (nint)e * tp);
                TV k0 = TOps.Load(ref row, 0), k1 = TOps.Load(ref row, (nuint)w);
                TV x = TOps.Create(Unsafe.Add(ref qa, e));
                a0 = TOps.MultiplyAddEstimate(x, k0, a0); a1 = TOps.MultiplyAddEstimate(x, k1, a1);
                x = TOps.Create(Unsafe.Add(ref qb, e));
                b0 = TOps.MultiplyAddEstimate(x, k0, b0); b1 = TOps.MultiplyAddEstimate(x, k1, b1);
                x = TOps.Create(Unsafe.Add(ref qc, e));
                c0 = TOps.MultiplyAddEstimate(x, k0, c0); c1 = TOps.MultiplyAddEstimate(x, k1, c1);
                x = TOps.Create(Unsafe.Add(ref qd, e));
                d0 = TOps.MultiplyAddEstimate(x, k0, d0); d1 = TOps.MultiplyAddEstimate(x, k1, d1);
            }
            nuint at = (nuint)(b * w), at1 = at + (nuint)w;
            TOps.Store(a0, ref sa, at); TOps.Store(a1, ref sa, at1);
            TOps.Store(b0, ref sb, at); TOps.Store(b1, ref sb, at1);
            TOps.Store(c0, ref sc, at); TOps.Store(c1, ref sc, at1);
            TOps.Store(d0, ref sd, at); TOps.Store(d1, ref sd, at1);
        }
        // One key vector left: two chains over e (even, odd) per row, eight chains again.
        if (b < nb)
        {
            TV a0 = TOps.Zero, a1 = a0, b0 = a0, b1 = a0, c0 = a0, c1 = a0, d0 = a0, d1 = a0;
            ref float col = ref Unsafe.Add(ref kt, b * w);
            int e = 0;
            for (; e + 2 <= d; e += 2)
            {
                ref float row = ref Unsafe.Add(ref col, (nint)e * tp);
                TV k0 = TOps.Load(ref row, 0), k1 = TOps.Load(ref row, (nuint)tp);
                a0 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref qa, e)), k0, a0); a1 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref qa, e + 1)), k1, a1);
                b0 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref qb, e)), k0, b0); b1 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref qb, e + 1)), k1, b1);
                c0 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref qc, e)), k0, c0); c1 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref qc, e + 1)), k1, c1);
                d0 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref qd, e)), k0, d0); d1 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref qd, e + 1)), k1, d1);
            }
            if (e < d)
            {
                TV k0 = TOps.Load(ref Unsafe.Add(ref col, (nint)e * tp), 0);
                a0 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref qa, e)), k0, a0);
                b0 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref qb, e)), k0, b0);
                c0 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref qc, e)), k0, c0);
                d0 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref qd, e)), k0, d0);
            }
            nuint at = (nuint)(b * w);
            TOps.Store(TOps.Add(a0, a1), ref sa, at);
            TOps.Store(TOps.Add(b0, b1), ref sb, at);
            TOps.Store(TOps.Add(c0, c1), ref sc, at);
            TOps.Store(TOps.Add(d0, d1), ref sd, at);
        }

        inv = Softmax<TOps, TV>(ref sa, i0, nb);
        Unsafe.Add(ref inv, 1) = Softmax<TOps, TV>(ref sb, i0 + 1, nb);
        Unsafe.Add(ref inv, 2) = Softmax<TOps, TV>(ref sc, i0 + 2, nb);
        Unsafe.Add(ref inv, 3) = Softmax<TOps, TV>(ref sd, i0 + 3, nb);

        // P·V over d for keys 0..i0+3 (a row's numerators past its own key are 0), two vectors of Dp × four rows
        // per key: two V loads and four p broadcasts feed eight FMAs, eight chains.
        ref float oa = ref ob;
        ref float obb = ref Unsafe.Add(ref ob, dp);
        ref float oc = ref Unsafe.Add(ref ob, 2 * dp);
        ref float od = ref Unsafe.Add(ref ob, 3 * dp);
        int n = i0 + Rows;
        int c = 0;
        for (; c + 2 * w <= dpw; c += 2 * w)
        {
            TV a0 = TOps.Zero, a1 = a0, b0 = a0, b1 = a0, c0 = a0, c1 = a0, d0 = a0, d1 = a0;
            ref float vc = ref Unsafe.Add(ref vs, c);
            for (int j = 0; j < n; j++)
            {
                ref float vr = ref Unsafe.Add(ref vc, (nint)j * dpw);
                TV v0 = TOps.Load(ref vr, 0), v1 = TOps.Load(ref vr, (nuint)w);
                TV p = TOps.Create(Unsafe.Add(ref sa, j));
                a0 = TOps.MultiplyAddEstimate(p, v0, a0); a1 = TOps.MultiplyAddEstimate(p, v1, a1);
                p = TOps.Create(Unsafe.Add(ref sb, j));
                b0 = TOps.MultiplyAddEstimate(p, v0, b0); b1 = TOps.MultiplyAddEstimate(p, v1, b1);
                p = TOps.Create(Unsafe.Add(ref sc, j));
                c0 = TOps.MultiplyAddEstimate(p, v0, c0); c1 = TOps.MultiplyAddEstimate(p, v1, c1);
                p = TOps.Create(Unsafe.Add(ref sd, j));
                d0 = TOps.MultiplyAddEstimate(p, v0, d0); d1 = TOps.MultiplyAddEstimate(p, v1, d1);
            }
            nuint at = (nuint)c, at1 = at + (nuint)w;
            TOps.Store(a0, ref oa, at); TOps.Store(a1, ref oa, at1);
            TOps.Store(b0, ref obb, at); TOps.Store(b1, ref obb, at1);
            TOps.Store(c0, ref oc, at); TOps.Store(c1, ref oc, at1);
            TOps.Store(d0, ref od, at); TOps.Store(d1, ref od, at1);
        }
        // One vector of Dp left: two chains over keys (even, odd) per row; n is a multiple of four, no key tail.
        if (c < dpw)
        {
            TV a0 = TOps.Zero, a1 = a0, b0 = a0, b1 = a0, c0 = a0, c1 = a0, d0 = a0, d1 = a0;
            ref float vc = ref Unsafe.Add(ref vs, c);
            for (int j = 0; j < n; j += 2)
            {
                ref float vr = ref Unsafe.Add(ref vc, (nint)j * dpw);
                TV v0 = TOps.Load(ref vr, 0), v1 = TOps.Load(ref vr, (nuint)dpw);
                a0 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref sa, j)), v0, a0); a1 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref sa, j + 1)), v1, a1);
                b0 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref sb, j)), v0, b0); b1 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref sb, j + 1)), v1, b1);
                c0 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref sc, j)), v0, c0); c1 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref sc, j + 1)), v1, c1);
                d0 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref sd, j)), v0, d0); d1 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref sd, j + 1)), v1, d1);
            }
            nuint at = (nuint)c;
            TOps.Store(TOps.Add(a0, a1), ref oa, at);
            TOps.Store(TOps.Add(b0, b1), ref obb, at);
            TOps.Store(TOps.Add(c0, c1), ref oc, at);
            TOps.Store(TOps.Add(d0, d1), ref od, at);
        }
    }

    // Row i's masked softmax numerators in place over its nb key vectors (lanes of the last one past key i: −∞ for
    // the max, stored as 0); returns 1/(Σ numerators + 1e-8).
    private static float Softmax<TOps, TV>(ref float s, int i, int nb)
        where TOps : struct, ISimd<TV>
        where TV : struct
    {
        int w = TOps.Count;
        int lastAt = (nb - 1) * w;
        TV live = TOps.LanesUpTo(i - lastAt);
        TV lastS = TOps.ConditionalSelect(live, TOps.Load(ref s, (nuint)lastAt), TOps.Create(float.NegativeInfinity));
        TV mx = lastS;
        for (int j = 0; j < lastAt; j += w) mx = TOps.Max(mx, TOps.Load(ref s, (nuint)j));
        TV max = TOps.Create(TOps.MaxAcross(mx));

        TV sum = TOps.Zero;
        for (int j = 0; j < lastAt; j += w)
        {
            TV p = VectorMath.Exp<TOps, TV>(TOps.Subtract(TOps.Load(ref s, (nuint)j), max));
            TOps.Store(p, ref s, (nuint)j);
            sum = TOps.Add(sum, p);
        }
        {
            TV p = TOps.And(VectorMath.Exp<TOps, TV>(TOps.Subtract(lastS, max)), live); // exp(−∞) is 0 already; the AND also clears NaN garbage
            TOps.Store(p, ref s, (nuint)lastAt);
            sum = TOps.Add(sum, p);
        }
        return 1f / (TOps.Sum(sum) + DenominatorEpsilon);
    }
}
