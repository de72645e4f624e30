// Micro-kernels of Gemm. The three structs are the same algorithm at three vector widths; they are written out
// (not generic over the vector type) so every accumulator is a named local the JIT keeps in a register.
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace DualChunk.Kernels;

/// <summary>A micro-kernel shape and its tile routine; the Gemm driver is generic over it.</summary>
internal interface IGemmMicroKernel
{
    /// <summary>Rows per tile (MR).</summary>
    static abstract int Rows { get; }

    /// <summary>Columns per tile and per packed panel (NR).</summary>
    static abstract int Columns { get; }

    /// <summary>Full panels <see cref="RowPanels"/> computes at once (enough accumulator chains to hide the FMA latency).</summary>
    static abstract int RowPanelCount { get; }

    /// <summary>Name for logs, e.g. "avx512 6x64".</summary>
    static abstract string Name { get; }

    /// <summary>
    /// Computes a <paramref name="rows"/> × NR tile (1 ≤ rows ≤ MR) over one K block of <paramref name="kc"/> steps.
    /// A row r, step k is <c>a[r·lda + k]</c>; <paramref name="b"/> is the panel block, NR floats per k.
    /// Accumulators start at 0, or at <paramref name="partialIn"/> (row stride NR) if not null.
    /// If <paramref name="partialOut"/> is not null the raw sums go there (row stride NR); otherwise row r of
    /// <c>acc + bias</c> (plus the old value when <paramref name="accumulate"/>) is stored to <c>dst + r·ldd</c>,
    /// all NR columns: the caller points <paramref name="dst"/> at a scratch tile for a partial last panel.
    /// </summary>
    static abstract unsafe void Tile(int rows, float* a, nint lda, float* b, int kc, float* partialIn, float* partialOut,
        float* dst, nint ldd, float* bias, bool accumulate);

    /// <summary>
    /// One row over <see cref="RowPanelCount"/> consecutive full panels (panel i at <c>b + i·panelFloats</c>) and the
    /// whole K: <c>dst[j] = Σ_k a[k]·W[k, j] + bias[j]</c> (plus the old value when <paramref name="accumulate"/>) for
    /// RowPanelCount·NR columns, with the FMAs of <see cref="Tile"/> in the same order, so the same bits.
    /// </summary>
    static abstract unsafe void RowPanels(float* a, float* b, nint panelFloats, int k, float* dst, float* bias, bool accumulate);
}

/// <summary>A compile-time row count: generic code instantiated per struct gets it as a constant.</summary>
internal interface IGemmRowCount
{
    /// <summary>The row count.</summary>
    static abstract int Count { get; }
}

/// <summary>1 row.</summary>
internal readonly struct Rows1 : IGemmRowCount
{
    /// <inheritdoc/>
    public static int Count => 1;
}

/// <summary>2 rows.</summary>
internal readonly struct Rows2 : IGemmRowCount
{
    /// <inheritdoc/>
    public static int Count => 2;
}

/// <summary>3 rows.</summary>
internal readonly struct Rows3 : IGemmRowCount
{
    /// <inheritdoc/>
    public static int Count => 3;
}

/// <summary>4 rows.</summary>
internal readonly struct Rows4 : IGemmRowCount
{
    /// <inheritdoc/>
    public static int Count => 4;
}

/// <summary>5 rows.</summary>
internal readonly struct Rows5 : IGemmRowCount
{
    /// <inheritdoc/>
    public static int Count => 5;
}

/// <summary>6 rows.</summary>
internal readonly struct Rows6 : IGemmRowCount
{
    /// <inheritdoc/>
    public static int Count => 6;
}

/// <summary>
/// Vector512 path: 6 rows × 64 columns = 24 zmm accumulators (4 per row), 4 B loads and 6 broadcasts per k,
/// so 24 FMAs per 10 loads; 29 of the 32 zmm registers live.
/// </summary>
internal readonly struct GemmKernel512 : IGemmMicroKernel
{
    /// <summary>Rows per tile (MR).</summary>
    public static int Rows => 6;
    /// <summary>Columns per tile and per packed panel (NR = 4 vectors of 16 lanes).</summary>
    public static int Columns => 64;
    /// <summary>Two panels per GEMV step: 8 accumulator chains, two B streams.</summary>
    public static int RowPanelCount => 2;
    /// <summary>Name for logs.</summary>
    public static string Name => "avx512 6x64";

    /// <inheritdoc cref="IGemmMicroKernel.Tile"/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe void Tile(int rows, float* a, nint lda, float* b, int kc, float* partialIn, float* partialOut,
        float* dst, nint ldd, float* bias, bool accumulate)
    {
        // M tail: the same code specialised for fewer rows (the JIT drops the unused accumulators).
        switch (rows)
        {
            case 6: Tile<Rows6>(a, lda, b, kc, partialIn, partialOut, dst, ldd, bias, accumulate); break;
            case 5: Tile<Rows5>(a, lda, b, kc, partialIn, partialOut, dst, ldd, bias, accumulate); break;
            case 4: Tile<Rows4>(a, lda, b, kc, partialIn, partialOut, dst, ldd, bias, accumulate); break;
            case 3: Tile<Rows3>(a, lda, b, kc, partialIn, partialOut, dst, ldd, bias, accumulate); break;
            case 2: Tile<Rows2>(a, lda, b, kc, partialIn, partialOut, dst, ldd, bias, accumulate); break;
            case 1: Tile<Rows1>(a, lda, b, kc, partialIn, partialOut, dst, ldd, bias, accumulate); break;
            default: throw new UnreachableException();
        }
    }

    /// <summary>
    /// One TRows × 64 tile: acc = partialIn (or 0) + Σ_k a[r·lda + k] · b[k·64 + j] over k &lt; kc, with A read in place
    /// (one broadcast per row and k) and B a packed K-major panel block (4 vector loads per k).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Tile<TRows>(float* a, nint lda, float* b, int kc, float* partialIn, float* partialOut,
        float* dst, nint ldd, float* bias, bool accumulate)
        where TRows : struct, IGemmRowCount
    {
        int rows = TRows.Count;
        Vector512<float> c00 = default; Vector512<float> c01 = default; Vector512<float> c02 = default; Vector512<float> c03 = default;
        Vector512<float> c10 = default; Vector512<float> c11 = default; Vector512<float> c12 = default; Vector512<float> c13 = default;
        Vector512<float> c20 = default; Vector512<float> c21 = default; Vector512<float> c22 = default; Vector512<float> c23 = default;
        Vector512<float> c30 = default; Vector512<float> c31 = default; Vector512<float> c32 = default; Vector512<float> c33 = default;
        Vector512<float> c40 = default; Vector512<float> c41 = default; Vector512<float> c42 = default; Vector512<float> c43 = default;
        Vector512<float> c50 = default; Vector512<float> c51 = default; Vector512<float> c52 = default; Vector512<float> c53 = default;
        if (partialIn != null)
        {
            // Later K block: continue from the raw sums the previous block left (row stride 64).
            { c00 = Vector512.Load(partialIn + 0); c01 = Vector512.Load(partialIn + 16); c02 = Vector512.Load(partialIn + 32); c03 = Vector512.Load(partialIn + 48); }
            if (rows > 1) { c10 = Vector512.Load(partialIn + 64); c11 = Vector512.Load(partialIn + 80); c12 = Vector512.Load(partialIn + 96); c13 = Vector512.Load(partialIn + 112); }
            if (rows > 2) { c20 = Vector512.Load(partialIn + 128); c21 = Vector512.Load(partialIn + 144); c22 = Vector512.Load(partialIn + 160); c23 = Vector512.Load(partialIn + 176); }
            if (rows > 3) { c30 = Vector512.Load(partialIn + 192); c31 = Vector512.Load(partialIn + 208); c32 = Vector512.Load(partialIn + 224); c33 = Vector512.Load(partialIn + 240); }
            if (rows > 4) { c40 = Vector512.Load(partialIn + 256); c41 = Vector512.Load(partialIn + 272); c42 = Vector512.Load(partialIn + 288); c43 = Vector512.Load(partialIn + 304); }
            if (rows > 5) { c50 = Vector512.Load(partialIn + 320); c51 = Vector512.Load(partialIn + 336); c52 = Vector512.Load(partialIn + 352); c53 = Vector512.Load(partialIn + 368); }
        }

        float* a0 = a;
        float* a1 = a + 1 * lda;
        float* a2 = a + 2 * lda;
        float* a3 = a + 3 * lda;
        float* a4 = a + 4 * lda;
        float* a5 = a + 5 * lda;
        for (int k = 0; k < kc; k++)
        {
            var b0 = Vector512.Load(b + 0); var b1 = Vector512.Load(b + 16); var b2 = Vector512.Load(b + 32); var b3 = Vector512.Load(b + 48);
            b += 64;
            { var a0k = Vector512.Create(a0[k]); c00 = Vector512.FusedMultiplyAdd(a0k, b0, c00); c01 = Vector512.FusedMultiplyAdd(a0k, b1, c01); c02 = Vector512.FusedMultiplyAdd(a0k, b2, c02); c03 = Vector512.FusedMultiplyAdd(a0k, b3, c03); }
            if (rows > 1) { var a1k = Vector512.Create(a1[k]); c10 = Vector512.FusedMultiplyAdd(a1k, b0, c10); c11 = Vector512.FusedMultiplyAdd(a1k, b1, c11); c12 = Vector512.FusedMultiplyAdd(a1k, b2, c12); c13 = Vector512.FusedMultiplyAdd(a1k, b3, c13); }
            if (rows > 2) { var a2k = Vector512.Create(a2[k]); c20 = Vector512.FusedMultiplyAdd(a2k, b0, c20); c21 = Vector512.FusedMultiplyAdd(a2k, b1, c21); c22 = Vector512.FusedMultiplyAdd(a2k, b2, c22); c23 = Vector512.FusedMultiplyAdd(a2k, b3, c23); }
            if (rows > 3) { var a3k = Vector512.Create(a3[k]); c30 = Vector512.FusedMultiplyAdd(a3k, b0, c30); c31 = Vector512.FusedMultiplyAdd(a3k, b1, c31); c32 = Vector512.FusedMultiplyAdd(a3k, b2, c32); c33 = Vector512.FusedMultiplyAdd(a3k, b3, c33); }
            if (rows > 4) { var a4k = Vector512.Create(a4[k]); c40 = Vector512.FusedMultiplyAdd(a4k, b0, c40); c41 = Vector512.FusedMultiplyAdd(a4k, b1, c41); c42 = Vector512.FusedMultiplyAdd(a4k, b2, c42); c43 = Vector512.FusedMultiplyAdd(a4k, b3, c43); }
            if (rows > 5) { var a5k = Vector512.Create(a5[k]); c50 = Vector512.FusedMultiplyAdd(a5k, b0, c50); c51 = Vector512.FusedMultiplyAdd(a5k, b1, c51); c52 = Vector512.FusedMultiplyAdd(a5k, b2, c52); c53 = Vector512.FusedMultiplyAdd(a5k, b3, c53); }
        }

        if (partialOut != null)
        {
            // Not the last K block: park the raw sums (exact float round trip, so blocking does not change any bit).
            { c00.Store(partialOut + 0); c01.Store(partialOut + 16); c02.Store(partialOut + 32); c03.Store(partialOut + 48); }
            if (rows > 1) { c10.Store(partialOut + 64); c11.Store(partialOut + 80); c12.Store(partialOut + 96); c13.Store(partialOut + 112); }
            if (rows > 2) { c20.Store(partialOut + 128); c21.Store(partialOut + 144); c22.Store(partialOut + 160); c23.Store(partialOut + 176); }
            if (rows > 3) { c30.Store(partialOut + 192); c31.Store(partialOut + 208); c32.Store(partialOut + 224); c33.Store(partialOut + 240); }
            if (rows > 4) { c40.Store(partialOut + 256); c41.Store(partialOut + 272); c42.Store(partialOut + 288); c43.Store(partialOut + 304); }
            if (rows > 5) { c50.Store(partialOut + 320); c51.Store(partialOut + 336); c52.Store(partialOut + 352); c53.Store(partialOut + 368); }
            return;
        }

        // Last K block: C = (acc + b) [+ C], stored straight from the registers.
        var bias0 = Vector512.Load(bias + 0); var bias1 = Vector512.Load(bias + 16); var bias2 = Vector512.Load(bias + 32); var bias3 = Vector512.Load(bias + 48);
        StoreRow(dst + 0 * ldd, c00, c01, c02, c03, bias0, bias1, bias2, bias3, accumulate);
        if (rows > 1) StoreRow(dst + 1 * ldd, c10, c11, c12, c13, bias0, bias1, bias2, bias3, accumulate);
        if (rows > 2) StoreRow(dst + 2 * ldd, c20, c21, c22, c23, bias0, bias1, bias2, bias3, accumulate);
        if (rows > 3) StoreRow(dst + 3 * ldd, c30, c31, c32, c33, bias0, bias1, bias2, bias3, accumulate);
        if (rows > 4) StoreRow(dst + 4 * ldd, c40, c41, c42, c43, bias0, bias1, bias2, bias3, accumulate);
        if (rows > 5) StoreRow(dst + 5 * ldd, c50, c51, c52, c53, bias0, bias1, bias2, bias3, accumulate);
    }

    /// <inheritdoc cref="IGemmMicroKernel.RowPanels"/>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void RowPanels(float* a, float* b, nint panelFloats, int k, float* dst, float* bias, bool accumulate)
    {
        Vector512<float> c00 = default, c01 = default, c02 = default, c03 = default;
        Vector512<float> c10 = default, c11 = default, c12 = default, c13 = default;
        float* b1 = b + panelFloats;
        for (int i = 0; i < k; i++)
        {
            var ak = Vector512.Create(a[i]);
            c00 = Vector512.FusedMultiplyAdd(ak, Vector512.Load(b + 0), c00); c01 = Vector512.FusedMultiplyAdd(ak, Vector512.Load(b + 16), c01);
            c02 = Vector512.FusedMultiplyAdd(ak, Vector512.Load(b + 32), c02); c03 = Vector512.FusedMultiplyAdd(ak, Vector512.Load(b + 48), c03);
            c10 = Vector512.FusedMultiplyAdd(ak, Vector512.Load(b1 + 0), c10); c11 = Vector512.FusedMultiplyAdd(ak, Vector512.Load(b1 + 16), c11);
            c12 = Vector512.FusedMultiplyAdd(ak, Vector512.Load(b1 + 32), c12); c13 = Vector512.FusedMultiplyAdd(ak, Vector512.Load(b1 + 48), c13);
            b += 64;
            b1 += 64;
        }
        StoreRow(dst, c00, c01, c02, c03, Vector512.Load(bias + 0), Vector512.Load(bias + 16), Vector512.Load(bias + 32), Vector512.Load(bias + 48), accumulate);
        StoreRow(dst + 64, c10, c11, c12, c13, Vector512.Load(bias + 64), Vector512.Load(bias + 80), Vector512.Load(bias + 96), Vector512.Load(bias + 112), accumulate);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void StoreRow(float* d, Vector512<float> x0, Vector512<float> x1, Vector512<float> x2, Vector512<float> x3, Vector512<float> bias0, Vector512<float> bias1, Vector512<float> bias2, Vector512<float> bias3, bool accumulate)
    {
        x0 += bias0; x1 += bias1; x2 += bias2; x3 += bias3;
        if (accumulate)
        {
            x0 += Vector512.Load(d + 0); x1 += Vector512.Load(d + 16); x2 += Vector512.Load(d + 32); x3 += Vector512.Load(d + 48);
        }
        x0.Store(d + 0); x1.Store(d + 16); x2.Store(d + 32); x3.Store(d + 48);
    }
}

/// <summary>
/// Vector256 path: 6 rows × 16 columns = 12 ymm accumulators (2 per row), 2 B loads and 6 broadcasts per k;
/// 15 of the 16 ymm registers live.
/// </summary>
internal readonly struct GemmKernel256 : IGemmMicroKernel
{
    /// <summary>Rows per tile (MR).</summary>
    public static int Rows => 6;
    /// <summary>Columns per tile and per packed panel (NR = 2 vectors of 8 lanes).</summary>
    public static int Columns => 16;
    /// <summary>Four panels per GEMV step: 8 accumulator chains (the 1-row tile has 2, FMA-latency-bound).</summary>
    public static int RowPanelCount => 4;
    /// <summary>Name for logs.</summary>
    public static string Name => "avx2 6x16";

    /// <inheritdoc cref="IGemmMicroKernel.Tile"/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe void Tile(int rows, float* a, nint lda, float* b, int kc, float* partialIn, float* partialOut,
        float* dst, nint ldd, float* bias, bool accumulate)
    {
        // M tail: the same code specialised for fewer rows (the JIT drops the unused accumulators).
        switch (rows)
        {
            case 6: Tile<Rows6>(a, lda, b, kc, partialIn, partialOut, dst, ldd, bias, accumulate); break;
            case 5: Tile<Rows5>(a, lda, b, kc, partialIn, partialOut, dst, ldd, bias, accumulate); break;
            case 4: Tile<Rows4>(a, lda, b, kc, partialIn, partialOut, dst, ldd, bias, accumulate); break;
            case 3: Tile<Rows3>(a, lda, b, kc, partialIn, partialOut, dst, ldd, bias, accumulate); break;
            case 2: Tile<Rows2>(a, lda, b, kc, partialIn, partialOut, dst, ldd, bias, accumulate); break;
            case 1: Tile<Rows1>(a, lda, b, kc, partialIn, partialOut, dst, ldd, bias, accumulate); break;
            default: throw new UnreachableException();
        }
    }

    /// <summary>
    /// One TRows × 16 tile: acc = partialIn (or 0) + Σ_k a[r·lda + k] · b[k·16 + j] over k &lt; kc, with A read in place
    /// (one broadcast per row and k) and B a packed K-major panel block (2 vector loads per k).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Tile<TRows>(float* a, nint lda, float* b, int kc, float* partialIn, float* partialOut,
        float* dst, nint ldd, float* bias, bool accumulate)
        where TRows : struct, IGemmRowCount
    {
        int rows = TRows.Count;
        Vector256<float> c00 = default; Vector256<float> c01 = default;
        Vector256<float> c10 = default; Vector256<float> c11 = default;
        Vector256<float> c20 = default; Vector256<float> c21 = default;
        Vector256<float> c30 = default; Vector256<float> c31 = default;
        Vector256<float> c40 = default; Vector256<float> c41 = default;
        Vector256<float> c50 = default; Vector256<float> c51 = default;
        if (partialIn != null)
        {
            // Later K block: continue from the raw sums the previous block left (row stride 16).
            { c00 = Vector256.Load(partialIn + 0); c01 = Vector256.Load(partialIn + 8); }
            if (rows > 1) { c10 = Vector256.Load(partialIn + 16); c11 = Vector256.Load(partialIn + 24); }
            if (rows > 2) { c20 = Vector256.Load(partialIn + 32); c21 = Vector256.Load(partialIn + 40); }
            if (rows > 3) { c30 = Vector256.Load(partialIn + 48); c31 = Vector256.Load(partialIn + 56); }
            if (rows > 4) { c40 = Vector256.Load(partialIn + 64); c41 = Vector256.Load(partialIn + 72); }
            if (rows > 5) { c50 = Vector256.Load(partialIn + 80); c51 = Vector256.Load(partialIn + 88); }
        }

        float* a0 = a;
        float* a1 = a + 1 * lda;
        float* a2 = a + 2 * lda;
        float* a3 = a + 3 * lda;
        float* a4 = a + 4 * lda;
        float* a5 = a + 5 * lda;
        for (int k = 0; k < kc; k++)
        {
            var b0 = Vector256.Load(b + 0); var b1 = Vector256.Load(b + 8);
            b += 16;
            { var a0k = Vector256.Create(a0[k]); c00 = Vector256.FusedMultiplyAdd(a0k, b0, c00); c01 = Vector256.FusedMultiplyAdd(a0k, b1, c01); }
            if (rows > 1) { var a1k = Vector256.Create(a1[k]); c10 = Vector256.FusedMultiplyAdd(a1k, b0, c10); c11 = Vector256.FusedMultiplyAdd(a1k, b1, c11); }
            if (rows > 2) { var a2k = Vector256.Create(a2[k]); c20 = Vector256.FusedMultiplyAdd(a2k, b0, c20); c21 = Vector256.FusedMultiplyAdd(a2k, b1, c21); }
            if (rows > 3) { var a3k = Vector256.Create(a3[k]); c30 = Vector256.FusedMultiplyAdd(a3k, b0, c30); c31 = Vector256.FusedMultiplyAdd(a3k, b1, c31); }
            if (rows > 4) { var a4k = Vector256.Create(a4[k]); c40 = Vector256.FusedMultiplyAdd(a4k, b0, c40); c41 = Vector256.FusedMultiplyAdd(a4k, b1, c41); }
            if (rows > 5) { var a5k = Vector256.Create(a5[k]); c50 = Vector256.FusedMultiplyAdd(a5k, b0, c50); c51 = Vector256.FusedMultiplyAdd(a5k, b1, c51); }
        }

        if (partialOut != null)
        {
            // Not the last K block: park the raw sums (exact float round trip, so blocking does not change any bit).
            { c00.Store(partialOut + 0); c01.Store(partialOut + 8); }
            if (rows > 1) { c10.Store(partialOut + 16); c11.Store(partialOut + 24); }
            if (rows > 2) { c20.Store(partialOut + 32); c21.Store(partialOut + 40); }
            if (rows > 3) { c30.Store(partialOut + 48); c31.Store(partialOut + 56); }
            if (rows > 4) { c40.Store(partialOut + 64); c41.Store(partialOut + 72); }
            if (rows > 5) { c50.Store(partialOut + 80); c51.Store(partialOut + 88); }
            return;
        }

        // Last K block: C = (acc + b) [+ C], stored straight from the registers.
        var bias0 = Vector256.Load(bias + 0); var bias1 = Vector256.Load(bias + 8);
        StoreRow(dst + 0 * ldd, c00, c01, bias0, bias1, accumulate);
        if (rows > 1) StoreRow(dst + 1 * ldd, c10, c11, bias0, bias1, accumulate);
        if (rows > 2) StoreRow(dst + 2 * ldd, c20, c21, bias0, bias1, accumulate);
        if (rows > 3) StoreRow(dst + 3 * ldd, c30, c31, bias0, bias1, accumulate);
        if (rows > 4) StoreRow(dst + 4 * ldd, c40, c41, bias0, bias1, accumulate);
        if (rows > 5) StoreRow(dst + 5 * ldd, c50, c51, bias0, bias1, accumulate);
    }

    /// <inheritdoc cref="IGemmMicroKernel.RowPanels"/>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void RowPanels(float* a, float* b, nint panelFloats, int k, float* dst, float* bias, bool accumulate)
    {
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default;
        Vector256<float> c20 = default, c21 = default, c30 = default, c31 = default;
        float* b1 = b + panelFloats, b2 = b1 + panelFloats, b3 = b2 + panelFloats;
        for (int i = 0; i < k; i++)
        {
            var ak = Vector256.Create(a[i]);
            c00 = Vector256.FusedMultiplyAdd(ak, Vector256.Load(b + 0), c00); c01 = Vector256.FusedMultiplyAdd(ak, Vector256.Load(b + 8), c01);
            c10 = Vector256.FusedMultiplyAdd(ak, Vector256.Load(b1 + 0), c10); c11 = Vector256.FusedMultiplyAdd(ak, Vector256.Load(b1 + 8), c11);
            c20 = Vector256.FusedMultiplyAdd(ak, Vector256.Load(b2 + 0), c20); c21 = Vector256.FusedMultiplyAdd(ak, Vector256.Load(b2 + 8), c21);
            c30 = Vector256.FusedMultiplyAdd(ak, Vector256.Load(b3 + 0), c30); c31 = Vector256.FusedMultiplyAdd(ak, Vector256.Load(b3 + 8), c31);
            b += 16; b1 += 16; b2 += 16; b3 += 16;
        }
        StoreRow(dst + 0, c00, c01, Vector256.Load(bias + 0), Vector256.Load(bias + 8), accumulate);
        StoreRow(dst + 16, c10, c11, Vector256.Load(bias + 16), Vector256.Load(bias + 24), accumulate);
        StoreRow(dst + 32, c20, c21, Vector256.Load(bias + 32), Vector256.Load(bias + 40), accumulate);
        StoreRow(dst + 48, c30, c31, Vector256.Load(bias + 48), Vector256.Load(bias + 56), accumulate);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void StoreRow(float* d, Vector256<float> x0, Vector256<float> x1, Vector256<float> bias0, Vector256<float> bias1, bool accumulate)
    {
        x0 += bias0; x1 += bias1;
        if (accumulate)
        {
            x0 += Vector256.Load(d + 0); x1 += Vector256.Load(d + 8);
        }
        x0.Store(d + 0); x1.Store(d + 8);
    }
}

/// <summary>
/// Portable Vector128 path: 4 rows × 8 columns = 8 accumulators (2 per row). MultiplyAddEstimate fuses where the
/// hardware has FMA and falls back to multiply + add (not a slow software fma) where it does not.
/// </summary>
internal readonly struct GemmKernel128 : IGemmMicroKernel
{
    /// <summary>Rows per tile (MR).</summary>
    public static int Rows => 4;
    /// <summary>Columns per tile and per packed panel (NR = 2 vectors of 4 lanes).</summary>
    public static int Columns => 8;
    /// <summary>Four panels per GEMV step: 8 accumulator chains.</summary>
    public static int RowPanelCount => 4;
    /// <summary>Name for logs.</summary>
    public static string Name => "portable 4x8";

    /// <inheritdoc cref="IGemmMicroKernel.Tile"/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe void Tile(int rows, float* a, nint lda, float* b, int kc, float* partialIn, float* partialOut,
        float* dst, nint ldd, float* bias, bool accumulate)
    {
        // M tail: the same code specialised for fewer rows (the JIT drops the unused accumulators).
        switch (rows)
        {
            case 4: Tile<Rows4>(a, lda, b, kc, partialIn, partialOut, dst, ldd, bias, accumulate); break;
            case 3: Tile<Rows3>(a, lda, b, kc, partialIn, partialOut, dst, ldd, bias, accumulate); break;
            case 2: Tile<Rows2>(a, lda, b, kc, partialIn, partialOut, dst, ldd, bias, accumulate); break;
            case 1: Tile<Rows1>(a, lda, b, kc, partialIn, partialOut, dst, ldd, bias, accumulate); break;
            default: throw new UnreachableException();
        }
    }

    /// <summary>
    /// One TRows × 8 tile: acc = partialIn (or 0) + Σ_k a[r·lda + k] · b[k·8 + j] over k &lt; kc, with A read in place
    /// (one broadcast per row and k) and B a packed K-major panel block (2 vector loads per k).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Tile<TRows>(float* a, nint lda, float* b, int kc, float* partialIn, float* partialOut,
        float* dst, nint ldd, float* bias, bool accumulate)
        where TRows : struct, IGemmRowCount
    {
        int rows = TRows.Count;
        Vector128<float> c00 = default; Vector128<float> c01 = default;
        Vector128<float> c10 = default; Vector128<float> c11 = default;
        Vector128<float> c20 = default; Vector128<float> c21 = default;
        Vector128<float> c30 = default; Vector128<float> c31 = default;
        if (partialIn != null)
        {
            // Later K block: continue from the raw sums the previous block left (row stride 8).
            { c00 = Vector128.Load(partialIn + 0); c01 = Vector128.Load(partialIn + 4); }
            if (rows > 1) { c10 = Vector128.Load(partialIn + 8); c11 = Vector128.Load(partialIn + 12); }
            if (rows > 2) { c20 = Vector128.Load(partialIn + 16); c21 = Vector128.Load(partialIn + 20); }
            if (rows > 3) { c30 = Vector128.Load(partialIn + 24); c31 = Vector128.Load(partialIn + 28); }
        }

        float* a0 = a;
        float* a1 = a + 1 * lda;
        float* a2 = a + 2 * lda;
        float* a3 = a + 3 * lda;
        for (int k = 0; k < kc; k++)
        {
            var b0 = Vector128.Load(b + 0); var b1 = Vector128.Load(b + 4);
            b += 8;
            { var a0k = Vector128.Create(a0[k]); c00 = Vector128.MultiplyAddEstimate(a0k, b0, c00); c01 = Vector128.MultiplyAddEstimate(a0k, b1, c01); }
            if (rows > 1) { var a1k = Vector128.Create(a1[k]); c10 = Vector128.MultiplyAddEstimate(a1k, b0, c10); c11 = Vector128.MultiplyAddEstimate(a1k, b1, c11); }
            if (rows > 2) { var a2k = Vector128.Create(a2[k]); c20 = Vector128.MultiplyAddEstimate(a2k, b0, c20); c21 = Vector128.MultiplyAddEstimate(a2k, b1, c21); }
            if (rows > 3) { var a3k = Vector128.Create(a3[k]); c30 = Vector128.MultiplyAddEstimate(a3k, b0, c30); c31 = Vector128.MultiplyAddEstimate(a3k, b1, c31); }
        }

        if (partialOut != null)
        {
            // Not the last K block: park the raw sums (exact float round trip, so blocking does not change any bit).
            { c00.Store(partialOut + 0); c01.Store(partialOut + 4); }
            if (rows > 1) { c10.Store(partialOut + 8); c11.Store(partialOut + 12); }
            if (rows > 2) { c20.Store(partialOut + 16); c21.Store(partialOut + 20); }
            if (rows > 3) { c30.Store(partialOut + 24); c31.Store(partialOut + 28); }
            return;
        }

        // Last K block: C = (acc + b) [+ C], stored straight from the registers.
        var bias0 = Vector128.Load(bias + 0); var bias1 = Vector128.Load(bias + 4);
        StoreRow(dst + 0 * ldd, c00, c01, bias0, bias1, accumulate);
        if (rows > 1) StoreRow(dst + 1 * ldd, c10, c11, bias0, bias1, accumulate);
        if (rows > 2) StoreRow(dst + 2 * ldd, c20, c21, bias0, bias1, accumulate);
        if (rows > 3) StoreRow(dst + 3 * ldd, c30, c31, bias0, bias1, accumulate);
    }

    /// <inheritdoc cref="IGemmMicroKernel.RowPanels"/>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void RowPanels(float* a, float* b, nint panelFloats, int k, float* dst, float* bias, bool accumulate)
    {
        Vector128<float> c00 = default, c01 = default, c10 = default, c11 = default;
        Vector128<float> c20 = default, c21 = default, c30 = default, c31 = default;
        float* b1 = b + panelFloats, b2 = b1 + panelFloats, b3 = b2 + panelFloats;
        for (int i = 0; i < k; i++)
        {
            var ak = Vector128.Create(a[i]);
            c00 = Vector128.MultiplyAddEstimate(ak, Vector128.Load(b + 0), c00); c01 = Vector128.MultiplyAddEstimate(ak, Vector128.Load(b + 4), c01);
            c10 = Vector128.MultiplyAddEstimate(ak, Vector128.Load(b1 + 0), c10); c11 = Vector128.MultiplyAddEstimate(ak, Vector128.Load(b1 + 4), c11);
            c20 = Vector128.MultiplyAddEstimate(ak, Vector128.Load(b2 + 0), c20); c21 = Vector128.MultiplyAddEstimate(ak, Vector128.Load(b2 + 4), c21);
            c30 = Vector128.MultiplyAddEstimate(ak, Vector128.Load(b3 + 0), c30); c31 = Vector128.MultiplyAddEstimate(ak, Vector128.Load(b3 + 4), c31);
            b += 8; b1 += 8; b2 += 8; b3 += 8;
        }
        StoreRow(dst + 0, c00, c01, Vector128.Load(bias + 0), Vector128.Load(bias + 4), accumulate);
        StoreRow(dst + 8, c10, c11, Vector128.Load(bias + 8), Vector128.Load(bias + 12), accumulate);
        StoreRow(dst + 16, c20, c21, Vector128.Load(bias + 16), Vector128.Load(bias + 20), accumulate);
        StoreRow(dst + 24, c30, c31, Vector128.Load(bias + 24), Vector128.Load(bias + 28), accumulate);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void StoreRow(float* d, Vector128<float> x0, Vector128<float> x1, Vector128<float> bias0, Vector128<float> bias1, bool accumulate)
    {
        x0 += bias0; x1 += bias1;
        if (accumulate)
        {
            x0 += Vector128.Load(d + 0); x1 += Vector128.Load(d + 4);
        }
        x0.Store(d + 0); x1.Store(d + 4);
    }
}
