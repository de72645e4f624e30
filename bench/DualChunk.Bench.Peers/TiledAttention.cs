using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using DualChunk.Kernels;

namespace DualChunk.Bench.Peers;

/// <summary>
/// (b) Tiled dense causal attention, flash-style, vectorised like the engine's own kernels: per head, query blocks of
/// 64 rows against key tiles of 64 (tiles above the diagonal skipped, the diagonal tile cut at the group's last row),
/// online softmax (running max and sum per query row). Per (block, tile) the K tile is transposed once into Kᵀ·scale
/// [D, 64]; then per group of 4 query rows: the scores [4, 64] by register tiles of 4 rows × 2 key vectors (q broadcast,
/// one FMA per lane), the running max and exp over whole vectors, and P·V into the [64, D] accumulator by 4 rows × 2
/// output vectors (p broadcast, V read in place). Vector512, Vector256 or Vector128, chosen once as the engine's kernels
/// choose (<see cref="KernelSelection.Isa"/>), on the engine's own vector types and softmax exp
/// (<c>ISimd</c>, <c>VectorMath.ExpNonPositive</c>). Planned: Kᵀ, the scores of one group, the accumulator and the row
/// statistics: constant in N.
/// </summary>
public sealed class TiledAttention : AttentionMethod
{
    private const int Br = 64, Bc = 64, R = 4;

    private static readonly KernelIsa Isa = KernelSelection.Isa;

    public override string Key => "tiled";
    public override string Label => "tiled dense (flash-style)";
    public override bool UsesChunks => false;
    public override long PlannedBytes(long n, long c) => 4L * ScratchFloats;
    public override double Work(long n, long c) => CausalFlops(n);

    /// <summary>The FLOPs causal attention needs, all heads: QKᵀ and P·V over the N(N+1)/2 unmasked pairs, 2·D each.</summary>
    public static double CausalFlops(long n) => 2.0 * 2 * HeadDim * Heads * (n * (n + 1) / 2.0);

    private const int KtAt = 0, SAt = KtAt + HeadDim * Bc, AccAt = SAt + R * Bc, MAt = AccAt + Br * HeadDim, LAt = MAt + Br,
        ScratchFloats = LAt + Br;

    public override void Run(float[] qkv, int n, int c, float[] output)
    {
        ArgumentNullException.ThrowIfNull(qkv);
        ArgumentNullException.ThrowIfNull(output);
        if (qkv.Length < (long)n * 3 * Hidden || output.Length < (long)n * Hidden)
            throw new ArgumentException($"qkv needs {n}×{3 * Hidden} floats and output {n}×{Hidden} for N = {n}.");
        var scratch = new float[ScratchFloats];
        for (int h = 0; h < Heads; h++)
        {
            switch (Isa)
            {
                case KernelIsa.Vector512: Head<V512, Vector512<float>>(qkv, n, h, scratch, output); break;
                case KernelIsa.Vector256: Head<V256, Vector256<float>>(qkv, n, h, scratch, output); break;
                default: Head<V128, Vector128<float>>(qkv, n, h, scratch, output); break;
            }
        }
    }

    private static void Head<TOps, TV>(float[] qkvArray, int n, int head, float[] scratchArray, float[] outputArray)
        where TOps : struct, ISimd<TV>
        where TV : struct
    {
        const int Row = 3 * Hidden;
        ref float qkv = ref MemoryMarshal.GetArrayDataReference(qkvArray);
        ref float scratch = ref MemoryMarshal.GetArrayDataReference(scratchArray);
        ref float q = ref Unsafe.Add(ref qkv, head * HeadDim);
        ref float k = ref Unsafe.Add(ref qkv, Hidden + head * HeadDim);
        ref float v = ref Unsafe.Add(ref qkv, 2 * Hidden + head * HeadDim);
        ref float kt = ref Unsafe.Add(ref scratch, KtAt);
        ref float s = ref Unsafe.Add(ref scratch, SAt);
        ref float acc = ref Unsafe.Add(ref scratch, AccAt);
        ref float m = ref Unsafe.Add(ref scratch, MAt);
        ref float l = ref Unsafe.Add(ref scratch, LAt);
        int w = TOps.Count;

        for (int i0 = 0; i0 < n; i0 += Br)
        {
            int rows = Math.Min(Br, n - i0);
            MemoryMarshal.CreateSpan(ref m, Br).Fill(float.NegativeInfinity);
            MemoryMarshal.CreateSpan(ref l, Br).Clear();
            MemoryMarshal.CreateSpan(ref acc, Br * HeadDim).Clear();
            for (int j0 = 0; j0 < i0 + rows; j0 += Bc)
            {
                int cols = Math.Min(Bc, n - j0);
                // Kᵀ·scale [D, Bc], zero past the last key: the score tiles read whole vectors.
                for (int e = 0; e < HeadDim; e++)
                {
                    ref float dst = ref Unsafe.Add(ref kt, e * Bc);
                    for (int j = 0; j < cols; j++) Unsafe.Add(ref dst, j) = Unsafe.Add(ref k, (nint)(j0 + j) * Row + e) * Scale;
                    for (int j = cols; j < Bc; j++) Unsafe.Add(ref dst, j) = 0;
                }
                for (int r0 = 0; r0 < rows; r0 += R)
                {
                    int live = Math.Min(R, rows - r0), iFirst = i0 + r0, iLast = iFirst + live - 1;
                    // Keys this group needs: all of a tile below the diagonal, up to its last row on the diagonal.
                    int keys = Math.Min(cols, iLast - j0 + 1);
                    int kvEnd = (keys + 2 * w - 1) / (2 * w) * (2 * w);
                    Scores<TOps, TV>(ref q, iFirst, live, ref kt, kvEnd, ref s);
                    float c0 = 0, c1 = 0, c2 = 0, c3 = 0;
                    for (int r = 0; r < R; r++)
                    {
                        ref float sr = ref Unsafe.Add(ref s, r * Bc);
                        if (r >= live)
                        {
                            MemoryMarshal.CreateSpan(ref sr, Bc).Clear(); // a tail group's missing rows add nothing
                            continue;
                        }
                        int i = iFirst + r;
                        for (int j = Math.Max(0, i - j0 + 1); j < kvEnd; j++) Unsafe.Add(ref sr, j) = float.NegativeInfinity;
                        float corr = Softmax<TOps, TV>(ref sr, kvEnd, ref Unsafe.Add(ref m, r0 + r), ref Unsafe.Add(ref l, r0 + r));
                        switch (r) { case 0: c0 = corr; break; case 1: c1 = corr; break; case 2: c2 = corr; break; default: c3 = corr; break; }
                    }
                    Pv<TOps, TV>(ref Unsafe.Add(ref v, (nint)j0 * Row), keys, ref s, ref Unsafe.Add(ref acc, r0 * HeadDim), c0, c1, c2, c3);
                }
            }
            for (int r = 0; r < rows; r++)
            {
                float inv = 1f / (Unsafe.Add(ref l, r) + CausalAttention.DenominatorEpsilon);
                ref float src = ref Unsafe.Add(ref acc, r * HeadDim);
                ref float dst = ref outputArray[(i0 + r) * Hidden + head * HeadDim];
                var f = TOps.Create(inv);
                for (int e = 0; e < HeadDim; e += w) TOps.Store(TOps.Multiply(TOps.Load(ref src, (nuint)e), f), ref dst, (nuint)e);
            }
        }
    }

    /// <summary>S[r, 0..kvEnd) = q[iFirst + r]·Kᵀ for 4 rows (rows past <paramref name="live"/> repeat the last one).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Scores<TOps, TV>(ref float q, int iFirst, int live, ref float kt, int kvEnd, ref float s)
        where TOps : struct, ISimd<TV>
        where TV : struct
    {
        const int Row = 3 * Hidden;
        int w = TOps.Count;
        ref float q0 = ref Unsafe.Add(ref q, (nint)iFirst * Row);
        ref float q1 = ref Unsafe.Add(ref q, (nint)(iFirst + Math.Min(1, live - 1)) * Row);
        ref float q2 = ref Unsafe.Add(ref q, (nint)(iFirst + Math.Min(2, live - 1)) * Row);
        ref float q3 = ref Unsafe.Add(ref q, (nint)(iFirst + Math.Min(3, live - 1)) * Row);
        for (int kv = 0; kv < kvEnd; kv += 2 * w)
        {
            TV s00 = TOps.Zero, s01 = TOps.Zero, s10 = TOps.Zero, s11 = TOps.Zero;
            TV s20 = TOps.Zero, s21 = TOps.Zero, s30 = TOps.Zero, s31 = TOps.Zero;
            ref float kc = ref Unsafe.Add(ref kt, kv);
            for (int e = 0; e < HeadDim; e++)
            {
                TV k0 = TOps.Load(ref kc, (nuint)(e * Bc)), k1 = TOps.Load(ref kc, (nuint)(e * Bc + w));
                TV b = TOps.Create(Unsafe.Add(ref q0, e));
                s00 = TOps.MultiplyAddEstimate(b, k0, s00); s01 = TOps.MultiplyAddEstimate(b, k1, s01);
                b = TOps.Create(Unsafe.Add(ref q1, e));
                s10 = TOps.MultiplyAddEstimate(b, k0, s10); s11 = TOps.MultiplyAddEstimate(b, k1, s11);
                b = TOps.Create(Unsafe.Add(ref q2, e));
                s20 = TOps.MultiplyAddEstimate(b, k0, s20); s21 = TOps.MultiplyAddEstimate(b, k1, s21);
                b = TOps.Create(Unsafe.Add(ref q3, e));
                s30 = TOps.MultiplyAddEstimate(b, k0, s30); s31 = TOps.MultiplyAddEstimate(b, k1, s31);
            }
            TOps.Store(s00, ref s, (nuint)kv); TOps.Store(s01, ref s, (nuint)(kv + w));
            TOps.Store(s10, ref s, (nuint)(Bc + kv)); TOps.Store(s11, ref s, (nuint)(Bc + kv + w));
            TOps.Store(s20, ref s, (nuint)(2 * Bc + kv)); TOps.Store(s21, ref s, (nuint)(2 * Bc + kv + w));
            TOps.Store(s30, ref s, (nuint)(3 * Bc + kv)); TOps.Store(s31, ref s, (nuint)(3 * Bc + kv + w));
        }
    }

    /// <summary>
    /// One row's online-softmax step over keys 0..kvEnd of a tile (masked keys are −∞): new max, the rescale factor of
    /// what the row has so far (returned), p = exp(s − max) in place and the running sum.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Softmax<TOps, TV>(ref float sr, int kvEnd, ref float m, ref float l)
        where TOps : struct, ISimd<TV>
        where TV : struct
    {
        int w = TOps.Count;
        TV mx = TOps.Load(ref sr, 0);
        for (int j = w; j < kvEnd; j += w) mx = TOps.MaxNative(mx, TOps.Load(ref sr, (nuint)j));
        float mNew = MathF.Max(m, SimdReductions.MaxAcross(mx));
        float corr = MathF.Exp(m - mNew); // 0 on the row's first tile (m = −∞)
        TV mv = TOps.Create(mNew), sum = TOps.Zero;
        for (int j = 0; j < kvEnd; j += w)
        {
            TV p = VectorMath.ExpNonPositive<TOps, TV>(TOps.Subtract(TOps.Load(ref sr, (nuint)j), mv));
            TOps.Store(p, ref sr, (nuint)j);
            sum = TOps.Add(sum, p);
        }
        l = l * corr + SimdReductions.Sum(sum);
        m = mNew;
        return corr;
    }

    /// <summary>acc[r] = corr_r·acc[r] + Σ_j p[r, j]·v[j] for 4 rows over keys 0..keys-1, 2 output vectors at a time.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Pv<TOps, TV>(ref float v, int keys, ref float p, ref float acc, float c0, float c1, float c2, float c3)
        where TOps : struct, ISimd<TV>
        where TV : struct
    {
        const int Row = 3 * Hidden;
        int w = TOps.Count;
        for (int dv = 0; dv < HeadDim; dv += 2 * w)
        {
            ref float a = ref Unsafe.Add(ref acc, dv);
            TV f = TOps.Create(c0);
            TV a00 = TOps.Multiply(TOps.Load(ref a, 0), f), a01 = TOps.Multiply(TOps.Load(ref a, (nuint)w), f);
            f = TOps.Create(c1);
            TV a10 = TOps.Multiply(TOps.Load(ref a, HeadDim), f), a11 = TOps.Multiply(TOps.Load(ref a, (nuint)(HeadDim + w)), f);
            f = TOps.Create(c2);
            TV a20 = TOps.Multiply(TOps.Load(ref a, 2 * HeadDim), f), a21 = TOps.Multiply(TOps.Load(ref a, (nuint)(2 * HeadDim + w)), f);
            f = TOps.Create(c3);
            TV a30 = TOps.Multiply(TOps.Load(ref a, 3 * HeadDim), f), a31 = TOps.Multiply(TOps.Load(ref a, (nuint)(3 * HeadDim + w)), f);
            for (int j = 0; j < keys; j++)
            {
                ref float vr = ref Unsafe.Add(ref v, (nint)j * Row + dv);
                TV v0 = TOps.Load(ref vr, 0), v1 = TOps.Load(ref vr, (nuint)w);
                TV b = TOps.Create(Unsafe.Add(ref p, j));
                a00 = TOps.MultiplyAddEstimate(b, v0, a00); a01 = TOps.MultiplyAddEstimate(b, v1, a01);
                b = TOps.Create(Unsafe.Add(ref p, Bc + j));
                a10 = TOps.MultiplyAddEstimate(b, v0, a10); a11 = TOps.MultiplyAddEstimate(b, v1, a11);
                b = TOps.Create(Unsafe.Add(ref p, 2 * Bc + j));
                a20 = TOps.MultiplyAddEstimate(b, v0, a20); a21 = TOps.MultiplyAddEstimate(b, v1, a21);
                b = TOps.Create(Unsafe.Add(ref p, 3 * Bc + j));
                a30 = TOps.MultiplyAddEstimate(b, v0, a30); a31 = TOps.MultiplyAddEstimate(b, v1, a31);
            }
            TOps.Store(a00, ref a, 0); TOps.Store(a01, ref a, (nuint)w);
            TOps.Store(a10, ref a, HeadDim); TOps.Store(a11, ref a, (nuint)(HeadDim + w));
            TOps.Store(a20, ref a, 2 * HeadDim); TOps.Store(a21, ref a, (nuint)(2 * HeadDim + w));
            TOps.Store(a30, ref a, 3 * HeadDim); TOps.Store(a31, ref a, (nuint)(3 * HeadDim + w));
        }
    }
}
