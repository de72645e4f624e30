using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace DualChunk.Kernels;

/// <summary>What the GEMM does with x · W + b before it stores a tile.</summary>
public enum GemmEpilogue
{
    /// <summary>C = A · W + b.</summary>
    Bias = 0,

    /// <summary>C = GELU(A · W + b), the exact erf GELU.</summary>
    BiasGelu = 1,

    /// <summary>C = C + (A · W + b): the residual add.</summary>
    BiasAccumulate = 2,

    /// <summary>
    /// C = SiLU(C) ⊙ (A · W + b), SiLU(g) = g · sigmoid(g): the two-operand epilogue of a SwiGLU FFN. On entry C holds
    /// the gate's pre-activation (x · W_gate + b_gate, from a <see cref="Bias"/> call); A · W + b is the "up" branch.
    /// </summary>
    BiasSiluGate = 3,
}

/// <summary>C [M, N] = epilogue(A [M, K] · W [K, N] + b [N]), W pre-packed.</summary>
/// <remarks>
/// Blocking (per call, single thread; sizes from the CPU's caches, <see cref="GemmBlocking"/>): M blocks of
/// <see cref="RowBlock"/> rows (their A rows stay in L2 while every panel of W streams past) → panels of NR columns
/// (<see cref="PackedMatrix"/>) → K blocks (the panel block stays in L2 while the M block's tiles stream over it) →
/// MR-row tiles computed by a register-blocked micro-kernel (<see cref="GemmKernel512"/>, <see cref="GemmKernel256"/>,
/// <see cref="GemmKernel128"/>). A one-row call (a GEMV) runs several panels at once instead, for enough independent
/// FMA chains to hide the FMA latency. Every element of C is the same chain of float FMAs over k = 0..K-1 whichever
/// tile, block or column range it falls in, so results do not depend on M, on the blocking, on the column split or
/// on the tail path.
/// </remarks>
public static class Gemm
{
    /// <summary>
    /// Rows per M block on this machine's path (a multiple of every MR: 6, 6, 4; 72 unless the L2 is tiny): the A rows
    /// of one block stay in L2 while W streams past. A caller splitting rows across threads keeps A blocked as in one
    /// call by splitting at multiples of this.
    /// </summary>
    public static int RowBlock => BlockingOf(SelectedIsa).RowBlock;

    /// <summary>The blocking of each path on this machine's caches.</summary>
    private static readonly GemmBlocking Blocking512 = GemmBlocking.For(GemmKernel512.Columns, CpuCaches.Current),
        Blocking256 = GemmBlocking.For(GemmKernel256.Columns, CpuCaches.Current),
        Blocking128 = GemmBlocking.For(GemmKernel128.Columns, CpuCaches.Current);

    /// <summary>The blocking path <paramref name="isa"/> uses on this machine.</summary>
    internal static GemmBlocking BlockingOf(KernelIsa isa) => isa switch
    {
        KernelIsa.Vector512 => Blocking512,
        KernelIsa.Vector256 => Blocking256,
        _ => Blocking128,
    };

    /// <summary>For logs and <c>inspect</c>: the caches and the blocking derived from them, e.g. "72 rows x K 1445 from L1D 32 KB, L2 1024 KB, …".</summary>
    public static string BlockingDescription => $"{BlockingOf(SelectedIsa)} from {CpuCaches.Current}";

    /// <summary>Widest NR of any path (floats per row of a scratch tile).</summary>
    private const int MaxPanelColumns = 64;

    /// <summary>Widest MR of any path.</summary>
    private const int MaxTileRows = 6;

    /// <summary>The path chosen once for this process (a JIT-time constant in optimized code).</summary>
    private static readonly KernelIsa SelectedIsa = KernelSelection.Isa;

    /// <summary>Name of the micro-kernel chosen for this process, for logs and <c>inspect</c>.</summary>
    public static string MicroKernel => MicroKernelOf(SelectedIsa);

    /// <summary>Name of the micro-kernel of path <paramref name="isa"/>, e.g. "avx512 6x64".</summary>
    internal static string MicroKernelOf(KernelIsa isa) => isa switch
    {
        KernelIsa.Vector512 => GemmKernel512.Name,
        KernelIsa.Vector256 => GemmKernel256.Name,
        _ => GemmKernel128.Name,
    };

    /// <summary>Panel width NR of path <paramref name="isa"/>.</summary>
    internal static int PanelColumnsOf(KernelIsa isa) => isa switch
    {
        KernelIsa.Vector512 => GemmKernel512.Columns,
        KernelIsa.Vector256 => GemmKernel256.Columns,
        _ => GemmKernel128.Columns,
    };

    /// <summary>
    /// Computes rows 0..m-1 of C. Row r of A starts at <c>a[r * lda]</c>; row r of C at <c>c[r * ldc]</c>.
    /// Only C[r, 0..N) is written (never the padding up to ldc). A and C must not overlap.
    /// </summary>
    /// <exception cref="ArgumentException">A span is too short for m, lda/ldc, K and N, or lda &lt; K, ldc &lt; N.</exception>
    public static void Run(ReadOnlySpan<float> a, int m, int lda, PackedMatrix w, ReadOnlySpan<float> bias,
        Span<float> c, int ldc, GemmEpilogue epilogue)
    {
        ArgumentNullException.ThrowIfNull(w);
        Run(a, m, lda, w, bias, c, ldc, epilogue, 0, w.N, SelectedIsa);
    }

    /// <summary>
    /// Computes columns [<paramref name="columnStart"/>, <paramref name="columnStart"/> + <paramref name="columnCount"/>)
    /// of rows 0..m-1 of C, bit for bit what a whole-width call stores there. <paramref name="columnStart"/> must be a
    /// multiple of <see cref="PackedMatrix.PanelWidth"/>; A, C and b are addressed as in the whole-width call.
    /// </summary>
    public static void Run(ReadOnlySpan<float> a, int m, int lda, PackedMatrix w, ReadOnlySpan<float> bias,
        Span<float> c, int ldc, GemmEpilogue epilogue, int columnStart, int columnCount)
        => Run(a, m, lda, w, bias, c, ldc, epilogue, columnStart, columnCount, SelectedIsa);

    /// <summary>Whole-width call on path <paramref name="isa"/> (tests run every supported path).</summary>
    internal static void Run(ReadOnlySpan<float> a, int m, int lda, PackedMatrix w, ReadOnlySpan<float> bias,
        Span<float> c, int ldc, GemmEpilogue epilogue, KernelIsa isa)
    {
        ArgumentNullException.ThrowIfNull(w);
        Run(a, m, lda, w, bias, c, ldc, epilogue, 0, w.N, isa);
    }

    /// <summary>Column-range call on path <paramref name="isa"/>; <paramref name="w"/> must be packed for it.</summary>
    internal static void Run(ReadOnlySpan<float> a, int m, int lda, PackedMatrix w, ReadOnlySpan<float> bias,
        Span<float> c, int ldc, GemmEpilogue epilogue, int columnStart, int columnCount, KernelIsa isa)
        => Run(a, m, lda, w, bias, c, ldc, epilogue, columnStart, columnCount, isa, BlockingOf(isa));

    /// <summary>Column-range call on path <paramref name="isa"/> with a forced blocking (tests: results must not depend on it).</summary>
    [SkipLocalsInit]
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static unsafe void Run(ReadOnlySpan<float> a, int m, int lda, PackedMatrix w, ReadOnlySpan<float> bias,
        Span<float> c, int ldc, GemmEpilogue epilogue, int columnStart, int columnCount, KernelIsa isa, GemmBlocking blocking)
    {
        Validate(a, m, lda, w, bias, c, ldc, epilogue, columnStart, columnCount, isa);
        if (blocking.RowBlock is < 1 or > GemmBlocking.MaxRowBlock || blocking.MaxKBlock < 1)
            throw new ArgumentOutOfRangeException(nameof(blocking), blocking, $"RowBlock must be in [1, {GemmBlocking.MaxRowBlock}], MaxKBlock at least 1.");
        if (m == 0 || columnCount == 0)
            return;

        // Bounded scratch, no heap: raw sums between K blocks for one M block, one tile for a partial last panel,
        // and the bias of that panel zero-padded to NR (so the kernel never reads past b).
        int kBlocks = Math.Max(1, (w.K + blocking.MaxKBlock - 1) / blocking.MaxKBlock);
        Span<float> partialSums = kBlocks > 1 && m > 1 ? stackalloc float[blocking.RowBlock * MaxPanelColumns] : default;
        Span<float> edgeTile = stackalloc float[MaxTileRows * MaxPanelColumns];
        Span<float> edgeBias = stackalloc float[MaxPanelColumns];
        Span<float> gateTile = epilogue == GemmEpilogue.BiasSiluGate ? stackalloc float[MaxTileRows * MaxPanelColumns] : default;

        fixed (float* aPtr = a)
        fixed (float* cPtr = c)
        fixed (float* biasPtr = bias)
        fixed (float* panels = w.Panels)
        fixed (float* partialPtr = partialSums)
        fixed (float* edgeTilePtr = edgeTile)
        fixed (float* edgeBiasPtr = edgeBias)
        fixed (float* gateTilePtr = gateTile)
        {
            var args = new DriverArgs
            {
                A = aPtr, M = m, Lda = lda, Panels = panels, K = w.K, N = w.N, Bias = biasPtr, C = cPtr, Ldc = ldc,
                Epilogue = epilogue, ColumnStart = columnStart, ColumnEnd = columnStart + columnCount, KBlocks = kBlocks,
                RowBlock = blocking.RowBlock,
                PartialSums = partialPtr, EdgeTile = edgeTilePtr, EdgeBias = edgeBiasPtr, GateTile = gateTilePtr,
            };
            switch (isa)
            {
                case KernelIsa.Vector512: Drive<GemmKernel512>(in args); break;
                case KernelIsa.Vector256: Drive<GemmKernel256>(in args); break;
                default: Drive<GemmKernel128>(in args); break;
            }
        }
    }

    /// <summary>Cheap checks that make every later pointer access in bounds.</summary>
    private static void Validate(ReadOnlySpan<float> a, int m, int lda, PackedMatrix w, ReadOnlySpan<float> bias,
        ReadOnlySpan<float> c, int ldc, GemmEpilogue epilogue, int columnStart, int columnCount, KernelIsa isa)
    {
        ArgumentNullException.ThrowIfNull(w);
        ArgumentOutOfRangeException.ThrowIfNegative(m);
        if (epilogue is not (GemmEpilogue.Bias or GemmEpilogue.BiasGelu or GemmEpilogue.BiasAccumulate or GemmEpilogue.BiasSiluGate))
            throw new ArgumentOutOfRangeException(nameof(epilogue), epilogue, "Unknown epilogue.");
        if (isa != w.Isa)
            throw new ArgumentException($"W is packed for the {w.Isa} path, the call asks for {isa}.", nameof(w));
        if (lda < w.K)
            throw new ArgumentException($"lda = {lda} is less than K = {w.K}.", nameof(lda));
        if (ldc < w.N)
            throw new ArgumentException($"ldc = {ldc} is less than N = {w.N}.", nameof(ldc));
        if (bias.Length < w.N)
            throw new ArgumentException($"Bias has {bias.Length} floats, N = {w.N}.", nameof(bias));
        if (m > 0 && a.Length < (long)(m - 1) * lda + w.K)
            throw new ArgumentException($"A has {a.Length} floats, {m} rows of K = {w.K} at stride {lda} need {(long)(m - 1) * lda + w.K}.", nameof(a));
        if (m > 0 && c.Length < (long)(m - 1) * ldc + w.N)
            throw new ArgumentException($"C has {c.Length} floats, {m} rows of N = {w.N} at stride {ldc} need {(long)(m - 1) * ldc + w.N}.", nameof(c));
        if (columnStart < 0 || columnStart % PackedMatrix.PanelWidth != 0 || columnStart > w.N)
            throw new ArgumentOutOfRangeException(nameof(columnStart), columnStart, $"Must be a multiple of {PackedMatrix.PanelWidth} in [0, N = {w.N}].");
        if (columnCount < 0 || columnCount > w.N - columnStart)
            throw new ArgumentOutOfRangeException(nameof(columnCount), columnCount, $"Columns [{columnStart}, {columnStart}+{columnCount}) exceed N = {w.N}.");
    }

    /// <summary>Validated pointers and sizes of one call.</summary>
    private unsafe struct DriverArgs
    {
        public float* A;
        public int M;
        public int Lda;
        public float* Panels;
        public int K;
        public int N;
        public float* Bias;
        public float* C;
        public int Ldc;
        public GemmEpilogue Epilogue;
        public int ColumnStart;
        public int ColumnEnd;
        public int KBlocks;
        public int RowBlock;
        public float* PartialSums;
        public float* EdgeTile;
        public float* EdgeBias;
        public float* GateTile;
    }

    /// <summary>The blocked loop nest, specialised per micro-kernel.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Drive<TKernel>(in DriverArgs p)
        where TKernel : struct, IGemmMicroKernel
    {
        int mr = TKernel.Rows;
        int nr = TKernel.Columns;
        if (p.M == 1)
        {
            DriveRow<TKernel>(in p);
            return;
        }
        int kBlocks = p.KBlocks;
        // Balanced K blocks (e.g. K = 287, blocks ≤ 128 → 96 + 96 + 95) rather than full blocks and a sliver.
        int kBlock = (p.K + kBlocks - 1) / kBlocks;
        bool accumulate = p.Epilogue == GemmEpilogue.BiasAccumulate;
        nint lda = p.Lda;
        nint ldc = p.Ldc;

        for (int rowBlock = 0; rowBlock < p.M; rowBlock += p.RowBlock)
        {
            int rowBlockEnd = Math.Min(p.M, rowBlock + p.RowBlock);
            for (int j0 = p.ColumnStart; j0 < p.ColumnEnd; j0 += nr)
            {
                // N tail: a panel with fewer than NR live columns (end of W or of the requested range) is computed
                // whole (its padding columns are zero) into a scratch tile; only the live columns reach C.
                int liveColumns = Math.Min(nr, p.ColumnEnd - j0);
                bool edgePanel = liveColumns < nr;
                float* panel = p.Panels + (nint)(j0 / nr) * p.K * nr;
                float* bias = p.Bias + j0;
                if (edgePanel)
                {
                    new ReadOnlySpan<float>(bias, liveColumns).CopyTo(new Span<float>(p.EdgeBias, nr));
                    new Span<float>(p.EdgeBias + liveColumns, nr - liveColumns).Clear();
                    bias = p.EdgeBias;
                }

                for (int kb = 0; kb < kBlocks; kb++)
                {
                    int k0 = kb * kBlock;
                    int kc = Math.Min(kBlock, p.K - k0);
                    bool lastKBlock = kb == kBlocks - 1;
                    float* panelBlock = panel + (nint)k0 * nr;
                    for (int r0 = rowBlock; r0 < rowBlockEnd; r0 += mr)
                    {
                        int rows = Math.Min(mr, rowBlockEnd - r0);
                        float* aTile = p.A + r0 * lda + k0;
                        float* partial = p.PartialSums + (nint)(r0 - rowBlock) * nr;
                        float* partialIn = kb == 0 ? null : partial;
                        if (!lastKBlock)
                        {
                            TKernel.Tile(rows, aTile, lda, panelBlock, kc, partialIn, partial, null, 0, null, false);
                            continue;
                        }

                        // GELU runs on each finished NR-wide row segment while it is still in L1: on C for a full
                        // panel, on the scratch tile (before the copy) for an edge panel. It is a branch-free
                        // per-lane formula, so its results cannot depend on N, on the column split or on the tile.
                        bool gelu = p.Epilogue == GemmEpilogue.BiasGelu;
                        float* cTile = p.C + r0 * ldc + j0;
                        if (p.Epilogue == GemmEpilogue.BiasSiluGate)
                        {
                            // The up branch goes to the scratch tile; SiLU(gate) ⊙ up is formed on whole NR-wide
                            // segments (an edge panel's live gate columns copied to a zero-padded tile first).
                            TKernel.Tile(rows, aTile, lda, panelBlock, kc, partialIn, null, p.EdgeTile, nr, bias, false);
                            if (!edgePanel)
                            {
                                SiluGateRows<TKernel>(cTile, ldc, p.EdgeTile, nr, rows, nr);
                            }
                            else
                            {
                                for (int r = 0; r < rows; r++)
                                {
                                    new ReadOnlySpan<float>(cTile + r * ldc, liveColumns).CopyTo(new Span<float>(p.GateTile + r * nr, nr));
                                    new Span<float>(p.GateTile + r * nr + liveColumns, nr - liveColumns).Clear();
                                }
                                SiluGateRows<TKernel>(p.GateTile, nr, p.EdgeTile, nr, rows, nr);
                                StoreEdgeTile(p.GateTile, nr, rows, liveColumns, cTile, ldc, false);
                            }
                        }
                        else if (!edgePanel)
                        {
                            TKernel.Tile(rows, aTile, lda, panelBlock, kc, partialIn, null, cTile, ldc, bias, accumulate);
                            if (gelu)
                                GeluRows<TKernel>(cTile, ldc, rows, nr);
                        }
                        else
                        {
                            TKernel.Tile(rows, aTile, lda, panelBlock, kc, partialIn, null, p.EdgeTile, nr, bias, false);
                            if (gelu)
                                GeluRows<TKernel>(p.EdgeTile, nr, rows, nr);
                            StoreEdgeTile(p.EdgeTile, nr, rows, liveColumns, cTile, ldc, accumulate);
                        }
                    }
                }
            }
        }
    }

    /// <summary>
    /// One row (a GEMV): <see cref="IGemmMicroKernel.RowPanels"/> over groups of full panels, each over the whole K
    /// (nothing is reused, so K blocks would only add partial-sum traffic); a last partial panel goes through the
    /// scratch tile as in <see cref="Drive{TKernel}"/>. Same FMA chain per element, so the same bits.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void DriveRow<TKernel>(in DriverArgs p)
        where TKernel : struct, IGemmMicroKernel
    {
        int nr = TKernel.Columns, group = TKernel.RowPanelCount;
        bool accumulate = p.Epilogue == GemmEpilogue.BiasAccumulate, gelu = p.Epilogue == GemmEpilogue.BiasGelu;
        bool siluGate = p.Epilogue == GemmEpilogue.BiasSiluGate;
        nint panelFloats = (nint)p.K * nr;
        int fullEnd = p.ColumnStart + (p.ColumnEnd - p.ColumnStart) / nr * nr;
        int j0 = p.ColumnStart;
        for (; j0 + group * nr <= fullEnd; j0 += group * nr)
        {
            float* panels = p.Panels + (nint)(j0 / nr) * panelFloats;
            if (siluGate)
            {
                // The up branch to the scratch tile (group·NR ≤ its MR·64 floats), then C = SiLU(C) ⊙ up.
                TKernel.RowPanels(p.A, panels, panelFloats, p.K, p.EdgeTile, p.Bias + j0, false);
                SiluGateRows<TKernel>(p.C + j0, 0, p.EdgeTile, 0, 1, group * nr);
                continue;
            }
            TKernel.RowPanels(p.A, panels, panelFloats, p.K, p.C + j0, p.Bias + j0, accumulate);
            if (gelu)
                GeluRows<TKernel>(p.C + j0, 0, 1, group * nr);
        }
        for (; j0 < p.ColumnEnd; j0 += nr)
        {
            int liveColumns = Math.Min(nr, p.ColumnEnd - j0);
            float* panel = p.Panels + (nint)(j0 / nr) * panelFloats;
            float* c = p.C + j0;
            if (liveColumns == nr && !siluGate)
            {
                TKernel.Tile(1, p.A, p.Lda, panel, p.K, null, null, c, p.Ldc, p.Bias + j0, accumulate);
                if (gelu)
                    GeluRows<TKernel>(c, 0, 1, nr);
                continue;
            }
            // A partial panel (or the gate's up branch): through the scratch tile, as in Drive.
            new ReadOnlySpan<float>(p.Bias + j0, liveColumns).CopyTo(new Span<float>(p.EdgeBias, nr));
            new Span<float>(p.EdgeBias + liveColumns, nr - liveColumns).Clear();
            TKernel.Tile(1, p.A, p.Lda, panel, p.K, null, null, p.EdgeTile, nr, p.EdgeBias, false);
            if (siluGate)
            {
                new ReadOnlySpan<float>(c, liveColumns).CopyTo(new Span<float>(p.GateTile, nr));
                new Span<float>(p.GateTile + liveColumns, nr - liveColumns).Clear();
                SiluGateRows<TKernel>(p.GateTile, nr, p.EdgeTile, nr, 1, nr);
                StoreEdgeTile(p.GateTile, nr, 1, liveColumns, c, p.Ldc, false);
                continue;
            }
            if (gelu)
                GeluRows<TKernel>(p.EdgeTile, nr, 1, nr);
            StoreEdgeTile(p.EdgeTile, nr, 1, liveColumns, c, p.Ldc, accumulate);
        }
    }

    /// <summary>
    /// In-place GELU on <paramref name="rows"/> row segments of <paramref name="width"/> floats (NR, a multiple of the
    /// vector width of <typeparamref name="TKernel"/>'s path): whole vectors, no span or driver call per segment.
    /// </summary>
    private static unsafe void GeluRows<TKernel>(float* tile, nint stride, int rows, int width)
        where TKernel : struct, IGemmMicroKernel
    {
        // typeof tests on a struct type argument are JIT-time constants: each instantiation keeps one call.
        if (typeof(TKernel) == typeof(GemmKernel512))
            GeluRows<V512, Vector512<float>>(tile, stride, rows, width);
        else if (typeof(TKernel) == typeof(GemmKernel256))
            GeluRows<V256, Vector256<float>>(tile, stride, rows, width);
        else
            GeluRows<V128, Vector128<float>>(tile, stride, rows, width);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void GeluRows<TSimd, TVec>(float* tile, nint stride, int rows, int width)
        where TSimd : struct, ISimd<TVec>
        where TVec : struct
    {
        nuint w = (nuint)TSimd.Count;
        for (int r = 0; r < rows; r++)
        {
            ref float row = ref *(tile + r * stride);
            for (nuint j = 0; j < (nuint)width; j += w)
                TSimd.Store(VectorMath.Gelu<TSimd, TVec>(TSimd.Load(ref row, j)), ref row, j);
        }
    }

    /// <summary>gate[r, j] = SiLU(gate[r, j]) · up[r, j] on <paramref name="rows"/> row segments of <paramref name="width"/> floats (NR).</summary>
    private static unsafe void SiluGateRows<TKernel>(float* gate, nint gateStride, float* up, nint upStride, int rows, int width)
        where TKernel : struct, IGemmMicroKernel
    {
        if (typeof(TKernel) == typeof(GemmKernel512))
            SiluGateRows<V512, Vector512<float>>(gate, gateStride, up, upStride, rows, width);
        else if (typeof(TKernel) == typeof(GemmKernel256))
            SiluGateRows<V256, Vector256<float>>(gate, gateStride, up, upStride, rows, width);
        else
            SiluGateRows<V128, Vector128<float>>(gate, gateStride, up, upStride, rows, width);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void SiluGateRows<TSimd, TVec>(float* gate, nint gateStride, float* up, nint upStride, int rows, int width)
        where TSimd : struct, ISimd<TVec>
        where TVec : struct
    {
        nuint w = (nuint)TSimd.Count;
        for (int r = 0; r < rows; r++)
        {
            ref float g = ref *(gate + r * gateStride);
            ref float u = ref *(up + r * upStride);
            for (nuint j = 0; j < (nuint)width; j += w)
                TSimd.Store(TSimd.Multiply(VectorMath.Silu<TSimd, TVec>(TSimd.Load(ref g, j)), TSimd.Load(ref u, j)), ref g, j);
        }
    }

    /// <summary>Copies the live columns of a scratch tile (acc + b, or its GELU) to C, adding to C for the residual epilogue.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void StoreEdgeTile(float* tile, int tileStride, int rows, int liveColumns, float* c, nint ldc,
        bool accumulate)
    {
        for (int r = 0; r < rows; r++)
        {
            var source = new ReadOnlySpan<float>(tile + r * tileStride, liveColumns);
            var destination = new Span<float>(c + r * ldc, liveColumns);
            if (accumulate)
            {
                // Same single rounding as the register path: C + (acc + b).
                for (int j = 0; j < liveColumns; j++)
                    destination[j] += source[j];
            }
            else
            {
                source.CopyTo(destination);
            }
        }
    }

}
