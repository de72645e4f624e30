using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace DualChunk.Kernels;

/// <summary>
/// Edifice's masked causal softmax attention over T positions of one head:
/// <c>S = q·kᵀ·scale</c>; <c>S[i][j] = -1e9</c> for j &gt; i; <c>P = exp(S - rowmax) / (rowsum + 1e-8)</c>; <c>o = P·v</c>.
/// Masked entries contribute exp(-1e9 - max) = 0 exactly in float32, so they are skipped or given exactly 0.
/// Optionally blends with one shared row: <c>out = g ⊙ blendRow + (1 - g) ⊙ o</c>.
/// </summary>
/// <remarks>
/// <para>Query rows go in blocks of W (the vector width: 16, 8 or 4 lanes) starting at multiples of W, one row per lane:
/// per call, Q is transposed into scratch as Qᵀ·scale [d, Tp] (Tp = T rounded up to 16, lanes past T zero), so a block's
/// scores against key j are one vector Sᵀ[j] = Σ_e k[j, e]·Qᵀ[e] (k broadcast, read in place). The causal mask is the
/// lanes r &lt; j − i0 of the block's keys j ≥ i0; they are stored as −∞. The softmax then runs down the keys, lane-wise:
/// the row maxima are a running vector max, exp and the row sums are vertical, and 1/(sum + 1e-8) is one vector
/// division; no horizontal reductions. A block uses keys 0..min(i0 + W, T) − 1.</para>
/// <para>P·V goes in groups of R rows (8 on Vector512, else 4) over one or two vectors of output columns: each V vector
/// load feeds R rows, each p broadcast (from the block's Pᵀ) one or two columns. A group uses keys 0..row0 + R − 1 only
/// (a row's Pᵀ lanes past its own key are exactly 0, so 0·v adds nothing). V is copied into scratch as contiguous rows
/// [T, d↑W] with zero lanes past d (a firstRow call reads its whole column vectors in place and copies only a partial
/// last one), so no load reads past a row. The 1/(sum + 1e-8) factor and the optional blend are applied to the register
/// tile, fused into the store. The scratch regions start on a 64-byte boundary, so no vector access splits a cache
/// line.</para>
/// <para>A row's result does not depend on T beyond it (keys past the row get exactly 0 weight, and every score is the
/// same chain of FMAs whichever loop computes it), so row i of a call over T keys equals row i of a call over i + 1 keys
/// bitwise: a stream appending chunk summaries one at a time gets the rows of a whole-sequence call.
/// A row's arithmetic depends only on its block and group, which depend only on its index and T: a
/// <c>firstRow</c> call computes the whole block containing firstRow (rows before firstRow are neither read from q nor
/// stored: their lanes are zero), so its rows equal a full call's bitwise. firstRow = t − 1 (the last-timestep
/// readout) has its own one-row path with the keys in the lanes, in the arithmetic of that row's lane. Lanes past T−1 in the last block (zero Qᵀ lanes) are computed and dropped.</para>
/// <para>Assumes real scores (rowmax &gt; −1e9 + 104): then every masked exp is exactly 0 in float32, as in Edifice.</para>
/// <para>Accuracy: exp is <see cref="VectorMath"/>'s algorithm (≈1.4 ulp); the tests hold each output element to
/// 2e-6·max|reference| + 2e-6·|reference| against the float64 twin when the scores are exact in float32, plus, in
/// general, the float32 rounding of the scores pushed through the softmax: (1 − g_e)·Σ_j p_ij·δ_ij·|v_je − o_ie| with
/// δ_ij = (d + 2)·2^-24·scale·Σ_e|q_ie·k_je| (p, o the reference's probabilities and unblended output).</para>
/// The algorithm is written once (<see cref="Attend{TOps, TV}"/>), generic over a vector-ops struct per width;
/// the JIT specializes it for Vector128, Vector256 and Vector512.
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
    /// up to 15 floats to reach a 64-byte boundary + Qᵀ [d, T↑16] + one block's scores [T↑16, 16] + 16 row factors +
    /// V [T, d↑16] + one spilled output vector [16], i.e. O(T·(d + 16)), never O(T²).
    /// </summary>
    public static int ScratchFloats(int t, int d)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(t);
        ArgumentOutOfRangeException.ThrowIfNegative(d);
        long tp = RoundUp(t, Pad);
        long n = (Pad - 1) + d * tp + tp * Pad + Pad + (long)t * RoundUp(d, Pad) + Pad;
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
    /// last-timestep readout needs one row of the last chunk. Row indexing of q and output is unchanged; q rows
    /// before firstRow are not read, so the caller need not compute them.
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
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Run(ReadOnlySpan<float> q, int qStride, ReadOnlySpan<float> k, int kStride,
        ReadOnlySpan<float> v, int vStride, int t, int d, float scale, Span<float> output, int outStride,
        Span<float> scratch, ReadOnlySpan<float> blendRow, ReadOnlySpan<float> gate, int firstRow, KernelIsa isa)
    {
        KernelSelection.CheckIsa(isa);
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

        ref float q0 = ref MemoryMarshal.GetReference(q);
        ref float k0 = ref MemoryMarshal.GetReference(k);
        ref float v0 = ref MemoryMarshal.GetReference(v);
        ref float o0 = ref MemoryMarshal.GetReference(output);
        ref float s0 = ref MemoryMarshal.GetReference(scratch);
        ref float b0 = ref MemoryMarshal.GetReference(blendRow);
        ref float g0 = ref MemoryMarshal.GetReference(gate);
        bool blend = !gate.IsEmpty;
        if (firstRow == t - 1)
        {
            // One row (the last-timestep readout): its own path, the same arithmetic as the row's lane in a block.
            switch (isa)
            {
                case KernelIsa.Vector512: AttendLastRow<V512, Vector512<float>>(ref q0, qStride, ref k0, kStride, ref v0, vStride, t, d, scale, ref o0, outStride, ref s0, ref b0, ref g0, blend); break;
                case KernelIsa.Vector256: AttendLastRow<V256, Vector256<float>>(ref q0, qStride, ref k0, kStride, ref v0, vStride, t, d, scale, ref o0, outStride, ref s0, ref b0, ref g0, blend); break;
                default: AttendLastRow<V128, Vector128<float>>(ref q0, qStride, ref k0, kStride, ref v0, vStride, t, d, scale, ref o0, outStride, ref s0, ref b0, ref g0, blend); break;
            }
            return;
        }
        switch (isa)
        {
            case KernelIsa.Vector512: Attend<V512, Vector512<float>>(ref q0, qStride, ref k0, kStride, ref v0, vStride, t, d, scale, ref o0, outStride, ref s0, ref b0, ref g0, blend, firstRow); break;
            case KernelIsa.Vector256: Attend<V256, Vector256<float>>(ref q0, qStride, ref k0, kStride, ref v0, vStride, t, d, scale, ref o0, outStride, ref s0, ref b0, ref g0, blend, firstRow); break;
            default: Attend<V128, Vector128<float>>(ref q0, qStride, ref k0, kStride, ref v0, vStride, t, d, scale, ref o0, outStride, ref s0, ref b0, ref g0, blend, firstRow); break;
        }
    }

    // kt[e, j] = k[j, e]·scale (here Qᵀ·scale from the q rows). Its own method: inside Run, scale was spilled and
    // reloaded every element. With AVX, 8×8 tiles go through registers (unpack pairs of rows, shuffle pairs of pairs,
    // swap 128-bit halves: 24 shuffles per 64 floats instead of 64 scalar strided stores); the rest (j past the last
    // whole 8 rows, e past the last whole 8 columns) is scalar. Both multiply each element once by scale, so the result
    // is the same.
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
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

    // Where P·V results go: the output row stride, d, and the optional blend (blendRow, gate); tmp holds one spilled
    // vector for a partial last column vector.
    private readonly ref struct Sink(int stride, int d, bool blend, ref float blendRow, ref float gate, ref float tmp)
    {
        public readonly int Stride = stride, D = d;
        public readonly bool Blend = blend;
        public readonly ref float BlendRow = ref blendRow;
        public readonly ref float Gate = ref gate;
        public readonly ref float Tmp = ref tmp;
    }

    /// <summary>
    /// The algorithm on one vector width (see the class remarks): Qᵀ·scale into scratch, then per query block of W rows
    /// the scores against keys 0..n-1 with the running max, exp and the row sums down the keys, then P·V in groups of
    /// R rows fused with the 1/(sum + 1e-8) scaling, the blend and the store.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Attend<TOps, TV>(ref float q, int qStride, ref float k, int kStride, ref float v, int vStride,
        int t, int d, float scale, ref float output, int outStride, ref float scratch, ref float blendRow, ref float gate,
        bool blend, int firstRow)
        where TOps : struct, ISimd<TV>
        where TV : struct
    {
        int w = TOps.Count;
        int rows = w == 16 ? 8 : 4; // P·V rows per group: 8 × 2 vectors = 16 accumulators need AVX-512's 32 registers
        int tp = RoundUp(t, Pad);
        // Regions start on a 64-byte boundary (the scratch array's may not): no vector load or store splits a cache line.
        unsafe { scratch = ref Unsafe.Add(ref scratch, (int)(-(nint)Unsafe.AsPointer(ref scratch) & 63) / sizeof(float)); }
        ref float qt = ref scratch;                       // Qᵀ·scale [d, Tp]: row e holds q[i, e]·scale in lane i
        ref float pt = ref Unsafe.Add(ref qt, d * tp);    // one block's Sᵀ, then Pᵀ [n, W]: key j's vector at j·W
        ref float inv = ref Unsafe.Add(ref pt, tp * Pad); // the block's W factors 1/(sum + 1e-8)
        ref float vt = ref Unsafe.Add(ref inv, Pad);      // V [T, d↑W], or its columns dFull..d-1 [T, W]; lanes past d zero
        var sink = new Sink(outStride, d, blend, ref blendRow, ref gate, ref Unsafe.Add(ref vt, t * RoundUp(d, Pad)));

        // A firstRow call starts at the block containing firstRow. The q rows before firstRow are not read: their Qᵀ
        // lanes are zeroed like the lanes past T (lanes are independent, so no stored row depends on them).
        int first = firstRow / w * w;
        TransposeScaled(ref Unsafe.Add(ref q, (nint)firstRow * qStride), qStride, ref Unsafe.Add(ref qt, firstRow), tp, t - firstRow, d, scale);
        for (int e = 0; e < d; e++)
        {
            MemoryMarshal.CreateSpan(ref Unsafe.Add(ref qt, (nint)e * tp + first), firstRow - first).Clear();
            MemoryMarshal.CreateSpan(ref Unsafe.Add(ref qt, (nint)e * tp + t), tp - t).Clear();
        }

        // V goes into scratch as contiguous rows [T, d↑W] with zero lanes past d. A firstRow call (one block) reads V's
        // whole column vectors in place instead and copies only the partial last one (d not a multiple of W), which
        // would read past the row, into [T, W]; the values and their order are the same either way.
        int dFull = d / w * w, dTail = d - dFull;
        if (firstRow == 0)
        {
            int dpw = RoundUp(d, w);
            for (int j = 0; j < t; j++)
            {
                ref float src = ref Unsafe.Add(ref v, (nint)j * vStride);
                ref float dst = ref Unsafe.Add(ref vt, (nint)j * dpw);
                int e = 0;
                for (; e < dFull; e += w) TOps.Store(TOps.Load(ref src, (nuint)e), ref dst, (nuint)e);
                for (; e < d; e++) Unsafe.Add(ref dst, e) = Unsafe.Add(ref src, e);
                for (; e < dpw; e++) Unsafe.Add(ref dst, e) = 0;
            }
            v = ref vt;
            vStride = dpw;
            dFull = dpw;
        }
        else if (dTail > 0)
        {
            for (int j = 0; j < t; j++)
            {
                ref float src = ref Unsafe.Add(ref v, (nint)j * vStride + dFull);
                ref float dst = ref Unsafe.Add(ref vt, (nint)j * w);
                int e = 0;
                for (; e < dTail; e++) Unsafe.Add(ref dst, e) = Unsafe.Add(ref src, e);
                for (; e < w; e++) Unsafe.Add(ref dst, e) = 0;
            }
        }

        for (int i0 = first; i0 < t; i0 += w)
        {
            int n = Math.Min(i0 + w, t); // keys 0..n-1: the block's last row (or row t-1) sees all of them
            TV max = Scores<TOps, TV>(ref Unsafe.Add(ref qt, i0), tp, i0, ref k, kStride, d, n, ref pt);
            TV sum = TOps.Zero;
            for (int j = 0; j < n; j++)
            {
                TV p = VectorMath.ExpNonPositive<TOps, TV>(TOps.Subtract(TOps.Load(ref pt, (nuint)(j * w)), max)); // −∞ lanes: 0
                TOps.Store(p, ref pt, (nuint)(j * w));
                sum = TOps.Add(sum, p);
            }
            TOps.Store(Reciprocal<TOps, TV>(TOps.Add(sum, TOps.Create(DenominatorEpsilon))), ref inv, 0);

            for (int r0 = 0; r0 < w && i0 + r0 < t; r0 += rows)
            {
                int row0 = i0 + r0;
                if (row0 + rows <= firstRow) continue;
                int nk = Math.Min(row0 + rows, t);
                int live = Math.Min(rows, t - row0), skip = Math.Max(0, firstRow - row0);
                ref float orow = ref Unsafe.Add(ref output, (nint)row0 * sink.Stride);
                ref float pr = ref Unsafe.Add(ref pt, r0);
                ref float ir = ref Unsafe.Add(ref inv, r0);
                for (int c = 0; c < d; c += 2 * w)
                {
                    ref float va = ref c < dFull ? ref Unsafe.Add(ref v, c) : ref vt;
                    int sa = c < dFull ? vStride : w;
                    if (c + w < d)
                    {
                        ref float vb = ref c + w < dFull ? ref Unsafe.Add(ref v, c + w) : ref vt;
                        int sb = c + w < dFull ? vStride : w;
                        if (w == 16) PairPV8<TOps, TV>(ref pr, nk, ref va, sa, ref vb, sb, ref orow, c, ref ir, live, skip, in sink);
                        else PairPV4<TOps, TV>(ref pr, nk, ref va, sa, ref vb, sb, ref orow, c, ref ir, live, skip, in sink);
                    }
                    else if (w == 16) SinglePV8<TOps, TV>(ref pr, nk, ref va, sa, ref orow, c, ref ir, live, skip, in sink);
                    else SinglePV4<TOps, TV>(ref pr, nk, ref va, sa, ref orow, c, ref ir, live, skip, in sink);
                }
            }
        }
    }

    /// <summary>
    /// Row t−1 alone, in the arithmetic its lane gets in <see cref="Attend{TOps, TV}"/> (so the same bits), with the
    /// keys in the lanes: each score is that lane's FMA chain over e (on Vector512 even and odd e in two chains,
    /// summed before an odd d's last e; else one chain) over Kᵀ; the max is the same running maxps over keys, exp the
    /// same vector exp, the sum the same running add over keys, the factor the same division; P·V is the row's
    /// accumulator chains of the R-row kernels (a column pair: one chain over keys per vector; a last single vector:
    /// even and odd keys in two chains), with the same fused store. Work: a t × d transpose and t·d/W vector FMAs for
    /// the scores, 2·t·d/W for P·V, where the block path computes W rows' scores and R rows' P·V.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AttendLastRow<TOps, TV>(ref float q, int qStride, ref float k, int kStride, ref float v, int vStride,
        int t, int d, float scale, ref float output, int outStride, ref float scratch, ref float blendRow, ref float gate, bool blend)
        where TOps : struct, ISimd<TV>
        where TV : struct
    {
        int w = TOps.Count, tp = RoundUp(t, Pad), last = t - 1;
        unsafe { scratch = ref Unsafe.Add(ref scratch, (int)(-(nint)Unsafe.AsPointer(ref scratch) & 63) / sizeof(float)); }
        // The regions of Attend's layout: Kᵀ in Qᵀ's; the scores (then p) in Pᵀ's, with q·scale after them (running
        // into V's region at most, d ≤ t·d↑16, which is not written before the scores are done); V's partial last column
        // vector in V's, the spill vector after it.
        ref float kt = ref scratch;
        ref float sc = ref Unsafe.Add(ref kt, d * tp);
        ref float qs = ref Unsafe.Add(ref sc, tp);
        ref float vt = ref Unsafe.Add(ref sc, tp * Pad + Pad);
        var sink = new Sink(outStride, d, blend, ref blendRow, ref gate, ref Unsafe.Add(ref vt, t * RoundUp(d, Pad)));

        ref float qr = ref Unsafe.Add(ref q, (nint)last * qStride);
        for (int e = 0; e < d; e++) Unsafe.Add(ref qs, e) = Unsafe.Add(ref qr, e) * scale;

        // Kᵀ [d, Tp] (TransposeScaled with scale 1: exact), so the scores go W keys per vector: per e one Kᵀ load and one
        // q broadcast, the lane's chain over e as in Scores (on Vector512 even and odd e in two chains). Lanes past t
        // hold whatever the scratch held and are never read back.
        TransposeScaled(ref k, kStride, ref kt, tp, t, d, 1f);
        int j = 0;
        for (; j < t; j += w)
        {
            TOps.Store(ScoreChain<TOps, TV>(ref qs, ref Unsafe.Add(ref kt, j), tp, d), ref sc, (nuint)j);
        }
        float max = float.NegativeInfinity;
        for (j = 0; j < t; j++) max = MaxNative(max, Unsafe.Add(ref sc, j));

        // exp with the keys in the lanes (lane-wise, so each p is the bits a block computes); keys past t are not used.
        TV m = TOps.Create(max);
        for (j = 0; j + w <= t; j += w)
            TOps.Store(VectorMath.ExpNonPositive<TOps, TV>(TOps.Subtract(TOps.Load(ref sc, (nuint)j), m)), ref sc, (nuint)j);
        if (j < t)
        {
            MemoryMarshal.CreateSpan(ref Unsafe.Add(ref sc, t), tp - t).Fill(float.NegativeInfinity);
            TOps.Store(VectorMath.ExpNonPositive<TOps, TV>(TOps.Subtract(TOps.Load(ref sc, (nuint)j), m)), ref sc, (nuint)j);
        }
        float sum = 0;
        for (j = 0; j < t; j++) sum += Unsafe.Add(ref sc, j);
        float inv = 1f / (sum + DenominatorEpsilon);

        // V's partial last column vector (d not a multiple of W) into [t, W] with zero lanes past d, as a firstRow call.
        int dFull = d / w * w, dTail = d - dFull;
        if (dTail > 0)
        {
            for (j = 0; j < t; j++)
            {
                ref float src = ref Unsafe.Add(ref v, (nint)j * vStride + dFull);
                ref float dst = ref Unsafe.Add(ref vt, (nint)j * w);
                int e = 0;
                for (; e < dTail; e++) Unsafe.Add(ref dst, e) = Unsafe.Add(ref src, e);
                for (; e < w; e++) Unsafe.Add(ref dst, e) = 0;
            }
        }
        ref float orow = ref Unsafe.Add(ref output, (nint)last * outStride);
        TV f = TOps.Create(inv);
        for (int c = 0; c < d; c += 2 * w)
        {
            ref float va = ref c < dFull ? ref Unsafe.Add(ref v, c) : ref vt;
            int sa = c < dFull ? vStride : w;
            if (c + w < d)
            {
                ref float vb = ref c + w < dFull ? ref Unsafe.Add(ref v, c + w) : ref vt;
                int sb = c + w < dFull ? vStride : w;
                TV x0 = TOps.Zero, x1 = x0;
                for (j = 0; j < t; j++)
                {
                    TV p = TOps.Create(Unsafe.Add(ref sc, j));
                    x0 = TOps.MultiplyAddEstimate(p, TOps.Load(ref va, 0), x0);
                    x1 = TOps.MultiplyAddEstimate(p, TOps.Load(ref vb, 0), x1);
                    va = ref Unsafe.Add(ref va, sa);
                    vb = ref Unsafe.Add(ref vb, sb);
                }
                Emit<TOps, TV>(TOps.Multiply(x0, f), ref orow, c, in sink);
                Emit<TOps, TV>(TOps.Multiply(x1, f), ref orow, c + w, in sink);
            }
            else
            {
                TV x0 = TOps.Zero, x1 = x0;
                for (j = 0; j + 2 <= t; j += 2)
                {
                    x0 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref sc, j)), TOps.Load(ref va, 0), x0);
                    x1 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref sc, j + 1)), TOps.Load(ref va, (nuint)sa), x1);
                    va = ref Unsafe.Add(ref va, 2 * sa);
                }
                if (j < t) x0 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref sc, j)), TOps.Load(ref va, 0), x0);
                Emit<TOps, TV>(TOps.Multiply(TOps.Add(x0, x1), f), ref orow, c, in sink);
            }
        }
    }

    // Scalar maxps(a, b): a > b ? a : b (b when either is NaN), the lane operation of TOps.MaxNative(max, s).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float MaxNative(float a, float b) => a > b ? a : b;

    /// <summary>
    /// Sᵀ of the block's query lanes (qc = Qᵀ at lane i0) against keys 0..n-1 into pt (key j at j·W), lanes of key
    /// j past their row set to −∞; returns the lane-wise max, i.e. the row maxima.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static TV Scores<TOps, TV>(ref float qc, int tp, int i0, ref float k, int kStride, int d, int n, ref float pt)
        where TOps : struct, ISimd<TV>
        where TV : struct
    {
        TV ninf = TOps.Create(float.NegativeInfinity);
        TV max = ninf;
        int j = 0;
        for (; j + 8 <= n; j += 8)
        {
            // Eight keys per step: one Qᵀ load and eight k broadcasts (in place, eight rows) feed eight FMAs. With
            // AVX-512's 32 registers e goes in pairs (even, odd) into separate accumulators: sixteen chains.
            TV a0 = TOps.Zero, a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
            ref float k0 = ref Unsafe.Add(ref k, (nint)j * kStride);
            ref float k1 = ref Unsafe.Add(ref k0, kStride);
            ref float k2 = ref Unsafe.Add(ref k1, kStride);
            ref float k3 = ref Unsafe.Add(ref k2, kStride);
            ref float k4 = ref Unsafe.Add(ref k3, kStride);
            ref float k5 = ref Unsafe.Add(ref k4, kStride);
            ref float k6 = ref Unsafe.Add(ref k5, kStride);
            ref float k7 = ref Unsafe.Add(ref k6, kStride);
            ref float qe = ref qc;
            int e = 0;
            if (TOps.Count == 16)
            {
                TV b0 = a0, b1 = a0, b2 = a0, b3 = a0, b4 = a0, b5 = a0, b6 = a0, b7 = a0;
                for (; e + 2 <= d; e += 2)
                {
                    // k rows advance by pointer (no index register: the loads stay fused into the FMAs).
                    TV x = TOps.Load(ref qe, 0), y = TOps.Load(ref qe, (nuint)tp);
                    qe = ref Unsafe.Add(ref qe, 2 * tp);
                    a0 = TOps.MultiplyAddEstimate(TOps.Create(k0), x, a0);
                    a1 = TOps.MultiplyAddEstimate(TOps.Create(k1), x, a1);
                    a2 = TOps.MultiplyAddEstimate(TOps.Create(k2), x, a2);
                    a3 = TOps.MultiplyAddEstimate(TOps.Create(k3), x, a3);
                    a4 = TOps.MultiplyAddEstimate(TOps.Create(k4), x, a4);
                    a5 = TOps.MultiplyAddEstimate(TOps.Create(k5), x, a5);
                    a6 = TOps.MultiplyAddEstimate(TOps.Create(k6), x, a6);
                    a7 = TOps.MultiplyAddEstimate(TOps.Create(k7), x, a7);
                    b0 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref k0, 1)), y, b0);
                    b1 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref k1, 1)), y, b1);
                    b2 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref k2, 1)), y, b2);
                    b3 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref k3, 1)), y, b3);
                    b4 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref k4, 1)), y, b4);
                    b5 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref k5, 1)), y, b5);
                    b6 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref k6, 1)), y, b6);
                    b7 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref k7, 1)), y, b7);
                    k0 = ref Unsafe.Add(ref k0, 2); k1 = ref Unsafe.Add(ref k1, 2); k2 = ref Unsafe.Add(ref k2, 2); k3 = ref Unsafe.Add(ref k3, 2);
                    k4 = ref Unsafe.Add(ref k4, 2); k5 = ref Unsafe.Add(ref k5, 2); k6 = ref Unsafe.Add(ref k6, 2); k7 = ref Unsafe.Add(ref k7, 2);
                }
                a0 = TOps.Add(a0, b0); a1 = TOps.Add(a1, b1); a2 = TOps.Add(a2, b2); a3 = TOps.Add(a3, b3);
                a4 = TOps.Add(a4, b4); a5 = TOps.Add(a5, b5); a6 = TOps.Add(a6, b6); a7 = TOps.Add(a7, b7);
            }
            // Every e on the narrower paths (indexed: their broadcasts are separate loads, and eight pointer increments
            // would crowd the front end); an odd d's last e on AVX-512, whose k pointers have advanced by e already.
            for (int e0 = e; e < d; e++)
            {
                TV x = TOps.Load(ref qe, 0);
                qe = ref Unsafe.Add(ref qe, tp);
                int o = e - e0;
                a0 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref k0, o)), x, a0);
                a1 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref k1, o)), x, a1);
                a2 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref k2, o)), x, a2);
                a3 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref k3, o)), x, a3);
                a4 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref k4, o)), x, a4);
                a5 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref k5, o)), x, a5);
                a6 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref k6, o)), x, a6);
                a7 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref k7, o)), x, a7);
            }
            max = Put<TOps, TV>(a0, j, i0, ninf, max, ref pt);
            max = Put<TOps, TV>(a1, j + 1, i0, ninf, max, ref pt);
            max = Put<TOps, TV>(a2, j + 2, i0, ninf, max, ref pt);
            max = Put<TOps, TV>(a3, j + 3, i0, ninf, max, ref pt);
            max = Put<TOps, TV>(a4, j + 4, i0, ninf, max, ref pt);
            max = Put<TOps, TV>(a5, j + 5, i0, ninf, max, ref pt);
            max = Put<TOps, TV>(a6, j + 6, i0, ninf, max, ref pt);
            max = Put<TOps, TV>(a7, j + 7, i0, ninf, max, ref pt);
        }
        // Fewer than eight keys left (the last block): one key at a time, with the eight-key loop's chains over e (on
        // AVX-512 even and odd e summed before an odd d's last e, else one chain), so a score does not depend on
        // which loop computed it, i.e. on T: a row's result is the same in a call of any T > row (streaming needs it).
        for (; j < n; j++)
        {
            TV a0 = ScoreChain<TOps, TV>(ref Unsafe.Add(ref k, (nint)j * kStride), ref qc, tp, d);
            max = Put<TOps, TV>(a0, j, i0, ninf, max, ref pt);
        }
        return max;
    }

    /// <summary>
    /// One vector of scores Σ_e row[e]·cols[e·tp], row[e] broadcast, in the eight-key loop's chains: on AVX-512 even
    /// and odd e in two chains summed before an odd d's last e, else one chain. Scores' remaining keys (a k row
    /// against Qᵀ) and the one-row path (the q row against Kᵀ) both use it.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TV ScoreChain<TOps, TV>(ref float row, ref float cols, int tp, int d)
        where TOps : struct, ISimd<TV>
        where TV : struct
    {
        TV a0 = TOps.Zero, a1 = a0;
        int e = 0;
        if (TOps.Count == 16)
        {
            for (; e + 2 <= d; e += 2)
            {
                a0 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref row, e)), TOps.Load(ref cols, (nuint)((nint)e * tp)), a0);
                a1 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref row, e + 1)), TOps.Load(ref cols, (nuint)((nint)(e + 1) * tp)), a1);
            }
            a0 = TOps.Add(a0, a1);
        }
        for (; e < d; e++)
            a0 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref row, e)), TOps.Load(ref cols, (nuint)((nint)e * tp)), a0);
        return a0;
    }

    // Key j's scores for the lanes r (rows i0 + r): lanes with j > i0 + r, i.e. r < j − i0, are masked to −∞. Stores
    // them at j·W and returns the updated max.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TV Put<TOps, TV>(TV s, int j, int i0, TV ninf, TV max, ref float pt)
        where TOps : struct, ISimd<TV>
        where TV : struct
    {
        if (j > i0) s = TOps.ConditionalSelect(TOps.LanesFrom(j - i0), s, ninf);
        TOps.Store(s, ref pt, (nuint)(j * TOps.Count));
        return TOps.MaxNative(max, s);
    }

    // 1/x lane-wise: one correctly rounded division, the same bits as the scalar 1f / x per lane. ISimd has no division,
    // so the three vector types are matched here (the JIT keeps only the branch of the instantiation).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TV Reciprocal<TOps, TV>(TV x)
        where TOps : struct, ISimd<TV>
        where TV : struct
    {
        if (typeof(TV) == typeof(Vector512<float>))
        {
            Vector512<float> r = Vector512<float>.One / Unsafe.As<TV, Vector512<float>>(ref x);
            return Unsafe.As<Vector512<float>, TV>(ref r);
        }
        if (typeof(TV) == typeof(Vector256<float>))
        {
            Vector256<float> r = Vector256<float>.One / Unsafe.As<TV, Vector256<float>>(ref x);
            return Unsafe.As<Vector256<float>, TV>(ref r);
        }
        Vector128<float> s = Vector128<float>.One / Unsafe.As<TV, Vector128<float>>(ref x);
        return Unsafe.As<Vector128<float>, TV>(ref s);
    }

    /// <summary>
    /// Output columns c..c+2W-1 of the eight rows whose Pᵀ lanes start at p (keys 0..nk-1, key j's lanes at p + j·W):
    /// per key two V vectors (va, vb at strides sa, sb) and eight p broadcasts feed sixteen FMAs, sixteen chains.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PairPV8<TOps, TV>(ref float p, int nk, ref float va, int sa, ref float vb, int sb,
        ref float orow, int c, ref float inv, int live, int skip, in Sink sink)
        where TOps : struct, ISimd<TV>
        where TV : struct
    {
        TV a0 = TOps.Zero, a1 = a0, b0 = a0, b1 = a0, c0 = a0, c1 = a0, d0 = a0, d1 = a0;
        TV e0 = a0, e1 = a0, f0 = a0, f1 = a0, g0 = a0, g1 = a0, h0 = a0, h1 = a0;
        int w = TOps.Count;
        for (int j = 0; j < nk; j++)
        {
            TV x = TOps.Load(ref va, 0), y = TOps.Load(ref vb, 0);
            va = ref Unsafe.Add(ref va, sa);
            vb = ref Unsafe.Add(ref vb, sb);
            TV s = TOps.Create(p);
            a0 = TOps.MultiplyAddEstimate(s, x, a0); a1 = TOps.MultiplyAddEstimate(s, y, a1);
            s = TOps.Create(Unsafe.Add(ref p, 1));
            b0 = TOps.MultiplyAddEstimate(s, x, b0); b1 = TOps.MultiplyAddEstimate(s, y, b1);
            s = TOps.Create(Unsafe.Add(ref p, 2));
            c0 = TOps.MultiplyAddEstimate(s, x, c0); c1 = TOps.MultiplyAddEstimate(s, y, c1);
            s = TOps.Create(Unsafe.Add(ref p, 3));
            d0 = TOps.MultiplyAddEstimate(s, x, d0); d1 = TOps.MultiplyAddEstimate(s, y, d1);
            s = TOps.Create(Unsafe.Add(ref p, 4));
            e0 = TOps.MultiplyAddEstimate(s, x, e0); e1 = TOps.MultiplyAddEstimate(s, y, e1);
            s = TOps.Create(Unsafe.Add(ref p, 5));
            f0 = TOps.MultiplyAddEstimate(s, x, f0); f1 = TOps.MultiplyAddEstimate(s, y, f1);
            s = TOps.Create(Unsafe.Add(ref p, 6));
            g0 = TOps.MultiplyAddEstimate(s, x, g0); g1 = TOps.MultiplyAddEstimate(s, y, g1);
            s = TOps.Create(Unsafe.Add(ref p, 7));
            h0 = TOps.MultiplyAddEstimate(s, x, h0); h1 = TOps.MultiplyAddEstimate(s, y, h1);
            p = ref Unsafe.Add(ref p, w);
        }
        Emit2<TOps, TV>(a0, a1, 0, ref orow, c, ref inv, live, skip, in sink);
        Emit2<TOps, TV>(b0, b1, 1, ref orow, c, ref inv, live, skip, in sink);
        Emit2<TOps, TV>(c0, c1, 2, ref orow, c, ref inv, live, skip, in sink);
        Emit2<TOps, TV>(d0, d1, 3, ref orow, c, ref inv, live, skip, in sink);
        Emit2<TOps, TV>(e0, e1, 4, ref orow, c, ref inv, live, skip, in sink);
        Emit2<TOps, TV>(f0, f1, 5, ref orow, c, ref inv, live, skip, in sink);
        Emit2<TOps, TV>(g0, g1, 6, ref orow, c, ref inv, live, skip, in sink);
        Emit2<TOps, TV>(h0, h1, 7, ref orow, c, ref inv, live, skip, in sink);
    }

    /// <summary>
    /// One vector of output columns c..c+W-1 of eight rows: per key pair one V vector each and eight p broadcasts
    /// each feed eight FMAs into separate accumulators for even and odd keys, sixteen chains.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void SinglePV8<TOps, TV>(ref float p, int nk, ref float va, int sa,
        ref float orow, int c, ref float inv, int live, int skip, in Sink sink)
        where TOps : struct, ISimd<TV>
        where TV : struct
    {
        TV a0 = TOps.Zero, a1 = a0, b0 = a0, b1 = a0, c0 = a0, c1 = a0, d0 = a0, d1 = a0;
        TV e0 = a0, e1 = a0, f0 = a0, f1 = a0, g0 = a0, g1 = a0, h0 = a0, h1 = a0;
        int w = TOps.Count;
        int j = 0;
        for (; j + 2 <= nk; j += 2)
        {
            TV x = TOps.Load(ref va, 0), y = TOps.Load(ref va, (nuint)sa);
            va = ref Unsafe.Add(ref va, 2 * sa);
            ref float p1 = ref Unsafe.Add(ref p, w);
            a0 = TOps.MultiplyAddEstimate(TOps.Create(p), x, a0); a1 = TOps.MultiplyAddEstimate(TOps.Create(p1), y, a1);
            b0 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref p, 1)), x, b0); b1 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref p1, 1)), y, b1);
            c0 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref p, 2)), x, c0); c1 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref p1, 2)), y, c1);
            d0 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref p, 3)), x, d0); d1 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref p1, 3)), y, d1);
            e0 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref p, 4)), x, e0); e1 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref p1, 4)), y, e1);
            f0 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref p, 5)), x, f0); f1 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref p1, 5)), y, f1);
            g0 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref p, 6)), x, g0); g1 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref p1, 6)), y, g1);
            h0 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref p, 7)), x, h0); h1 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref p1, 7)), y, h1);
            p = ref Unsafe.Add(ref p, 2 * w);
        }
        if (j < nk)
        {
            TV x = TOps.Load(ref va, 0);
            a0 = TOps.MultiplyAddEstimate(TOps.Create(p), x, a0);
            b0 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref p, 1)), x, b0);
            c0 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref p, 2)), x, c0);
            d0 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref p, 3)), x, d0);
            e0 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref p, 4)), x, e0);
            f0 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref p, 5)), x, f0);
            g0 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref p, 6)), x, g0);
            h0 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref p, 7)), x, h0);
        }
        Emit1<TOps, TV>(TOps.Add(a0, a1), 0, ref orow, c, ref inv, live, skip, in sink);
        Emit1<TOps, TV>(TOps.Add(b0, b1), 1, ref orow, c, ref inv, live, skip, in sink);
        Emit1<TOps, TV>(TOps.Add(c0, c1), 2, ref orow, c, ref inv, live, skip, in sink);
        Emit1<TOps, TV>(TOps.Add(d0, d1), 3, ref orow, c, ref inv, live, skip, in sink);
        Emit1<TOps, TV>(TOps.Add(e0, e1), 4, ref orow, c, ref inv, live, skip, in sink);
        Emit1<TOps, TV>(TOps.Add(f0, f1), 5, ref orow, c, ref inv, live, skip, in sink);
        Emit1<TOps, TV>(TOps.Add(g0, g1), 6, ref orow, c, ref inv, live, skip, in sink);
        Emit1<TOps, TV>(TOps.Add(h0, h1), 7, ref orow, c, ref inv, live, skip, in sink);
    }

    /// <summary>
    /// Output columns c..c+2W-1 of four rows: per key two V vectors and four p broadcasts feed eight FMAs, eight chains
    /// (the narrower paths have 16 registers).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PairPV4<TOps, TV>(ref float p, int nk, ref float va, int sa, ref float vb, int sb,
        ref float orow, int c, ref float inv, int live, int skip, in Sink sink)
        where TOps : struct, ISimd<TV>
        where TV : struct
    {
        TV a0 = TOps.Zero, a1 = a0, b0 = a0, b1 = a0, c0 = a0, c1 = a0, d0 = a0, d1 = a0;
        int w = TOps.Count;
        for (int j = 0; j < nk; j++)
        {
            TV x = TOps.Load(ref va, 0), y = TOps.Load(ref vb, 0);
            va = ref Unsafe.Add(ref va, sa);
            vb = ref Unsafe.Add(ref vb, sb);
            TV s = TOps.Create(p);
            a0 = TOps.MultiplyAddEstimate(s, x, a0); a1 = TOps.MultiplyAddEstimate(s, y, a1);
            s = TOps.Create(Unsafe.Add(ref p, 1));
            b0 = TOps.MultiplyAddEstimate(s, x, b0); b1 = TOps.MultiplyAddEstimate(s, y, b1);
            s = TOps.Create(Unsafe.Add(ref p, 2));
            c0 = TOps.MultiplyAddEstimate(s, x, c0); c1 = TOps.MultiplyAddEstimate(s, y, c1);
            s = TOps.Create(Unsafe.Add(ref p, 3));
            d0 = TOps.MultiplyAddEstimate(s, x, d0); d1 = TOps.MultiplyAddEstimate(s, y, d1);
            p = ref Unsafe.Add(ref p, w);
        }
        Emit2<TOps, TV>(a0, a1, 0, ref orow, c, ref inv, live, skip, in sink);
        Emit2<TOps, TV>(b0, b1, 1, ref orow, c, ref inv, live, skip, in sink);
        Emit2<TOps, TV>(c0, c1, 2, ref orow, c, ref inv, live, skip, in sink);
        Emit2<TOps, TV>(d0, d1, 3, ref orow, c, ref inv, live, skip, in sink);
    }

    /// <summary>One vector of output columns c..c+W-1 of four rows: two chains over keys (even, odd) per row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void SinglePV4<TOps, TV>(ref float p, int nk, ref float va, int sa,
        ref float orow, int c, ref float inv, int live, int skip, in Sink sink)
        where TOps : struct, ISimd<TV>
        where TV : struct
    {
        TV a0 = TOps.Zero, a1 = a0, b0 = a0, b1 = a0, c0 = a0, c1 = a0, d0 = a0, d1 = a0;
        int w = TOps.Count;
        int j = 0;
        for (; j + 2 <= nk; j += 2)
        {
            TV x = TOps.Load(ref va, 0), y = TOps.Load(ref va, (nuint)sa);
            va = ref Unsafe.Add(ref va, 2 * sa);
            ref float p1 = ref Unsafe.Add(ref p, w);
            a0 = TOps.MultiplyAddEstimate(TOps.Create(p), x, a0); a1 = TOps.MultiplyAddEstimate(TOps.Create(p1), y, a1);
            b0 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref p, 1)), x, b0); b1 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref p1, 1)), y, b1);
            c0 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref p, 2)), x, c0); c1 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref p1, 2)), y, c1);
            d0 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref p, 3)), x, d0); d1 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref p1, 3)), y, d1);
            p = ref Unsafe.Add(ref p, 2 * w);
        }
        if (j < nk)
        {
            TV x = TOps.Load(ref va, 0);
            a0 = TOps.MultiplyAddEstimate(TOps.Create(p), x, a0);
            b0 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref p, 1)), x, b0);
            c0 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref p, 2)), x, c0);
            d0 = TOps.MultiplyAddEstimate(TOps.Create(Unsafe.Add(ref p, 3)), x, d0);
        }
        Emit1<TOps, TV>(TOps.Add(a0, a1), 0, ref orow, c, ref inv, live, skip, in sink);
        Emit1<TOps, TV>(TOps.Add(b0, b1), 1, ref orow, c, ref inv, live, skip, in sink);
        Emit1<TOps, TV>(TOps.Add(c0, c1), 2, ref orow, c, ref inv, live, skip, in sink);
        Emit1<TOps, TV>(TOps.Add(d0, d1), 3, ref orow, c, ref inv, live, skip, in sink);
    }

    // Row r of a group (output row orow + r·stride, factor inv[r]): stored only if it is a real row (r < live) at or
    // after firstRow (r ≥ skip). Emit2 stores columns c.. and c+W.., Emit1 columns c...
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Emit2<TOps, TV>(TV x0, TV x1, int r, ref float orow, int c, ref float inv, int live, int skip, in Sink sink)
        where TOps : struct, ISimd<TV>
        where TV : struct
    {
        if (r >= live || r < skip) return;
        ref float o = ref Unsafe.Add(ref orow, (nint)r * sink.Stride);
        TV f = TOps.Create(Unsafe.Add(ref inv, r));
        Emit<TOps, TV>(TOps.Multiply(x0, f), ref o, c, in sink);
        Emit<TOps, TV>(TOps.Multiply(x1, f), ref o, c + TOps.Count, in sink);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Emit1<TOps, TV>(TV x, int r, ref float orow, int c, ref float inv, int live, int skip, in Sink sink)
        where TOps : struct, ISimd<TV>
        where TV : struct
    {
        if (r >= live || r < skip) return;
        Emit<TOps, TV>(TOps.Multiply(x, TOps.Create(Unsafe.Add(ref inv, r))), ref Unsafe.Add(ref orow, (nint)r * sink.Stride), c, in sink);
    }

    // Columns c..min(c + W, d)-1 of one output row from x = o·inv: x, or x + g·(blend − x) = g·blend + (1 − g)·x.
    // A partial last vector (c + W > d) goes through Tmp and is stored lane by lane with the same arithmetic.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Emit<TOps, TV>(TV x, ref float dst, int c, in Sink sink)
        where TOps : struct, ISimd<TV>
        where TV : struct
    {
        if (c + TOps.Count <= sink.D)
        {
            if (sink.Blend)
                x = TOps.MultiplyAddEstimate(TOps.Load(ref sink.Gate, (nuint)c), TOps.Subtract(TOps.Load(ref sink.BlendRow, (nuint)c), x), x);
            TOps.Store(x, ref dst, (nuint)c);
            return;
        }
        TOps.Store(x, ref sink.Tmp, 0);
        for (int e = c; e < sink.D; e++)
        {
            float xe = Unsafe.Add(ref sink.Tmp, e - c);
            Unsafe.Add(ref dst, e) = sink.Blend ? float.MultiplyAddEstimate(Unsafe.Add(ref sink.Gate, e), Unsafe.Add(ref sink.BlendRow, e) - xe, xe) : xe;
        }
    }
}
