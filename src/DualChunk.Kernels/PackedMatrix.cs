namespace DualChunk.Kernels;

/// <summary>
/// A weight matrix W [K, N] (row-major, "x · W" convention) repacked once, at load, into the
/// panel layout of the GEMM micro-kernel selected for this process. Immutable and thread-safe.
/// </summary>
/// <remarks>
/// Layout (private to <see cref="Gemm"/>): W is cut into panels of <c>NR</c> consecutive columns, NR being the
/// micro-kernel width of the ISA path (64 for Vector512, 16 for Vector256, 8 for the portable path). Inside a
/// panel the data is K-major: row k of the panel is NR contiguous floats, so the micro-kernel reads one
/// contiguous, 64-byte aligned strip per k. The last panel is zero-padded to NR columns.
/// </remarks>
public sealed class PackedMatrix
{
    /// <summary>
    /// Column-split granularity: <see cref="Gemm.Run(ReadOnlySpan{float}, int, int, PackedMatrix, ReadOnlySpan{float}, Span{float}, int, GemmEpilogue, int, int)"/>
    /// accepts a column range only if it starts at a multiple of this. It is a multiple of the panel width of every
    /// ISA path, so a split computes exactly the same panels (and bits) as one call.
    /// </summary>
    public const int PanelWidth = 64;

    /// <summary>
    /// True when a column-range GEMM call may start at <paramref name="column"/>: the columns from there on can be
    /// computed alone, with the bits a whole-width call stores.
    /// </summary>
    public static bool CanStartColumnRange(int column) => column >= 0 && column % PanelWidth == 0;

    /// <summary>Rows of W: the input width.</summary>
    public int K { get; }

    /// <summary>Columns of W: the output width.</summary>
    public int N { get; }

    /// <summary>The ISA path whose micro-kernel this layout is for.</summary>
    internal KernelIsa Isa { get; }

    /// <summary>Columns per panel (the micro-kernel's NR).</summary>
    internal int PanelColumns { get; }

    /// <summary>Number of panels, ceil(N / NR).</summary>
    internal int PanelCount { get; }

    /// <summary>Pinned storage (never moves); the panels start at <see cref="PanelOffset"/>, 64-byte aligned.</summary>
    private readonly float[] _storage;

    /// <summary>Index in <see cref="_storage"/> of the first float of panel 0.</summary>
    internal int PanelOffset { get; }

    /// <summary>Floats in all panels: PanelCount · K · NR.</summary>
    internal int PanelFloats => PanelCount * K * PanelColumns;

    /// <summary>All panels, panel p at [p · K · NR, (p + 1) · K · NR).</summary>
    internal ReadOnlySpan<float> Panels => _storage.AsSpan(PanelOffset, PanelFloats);

    private PackedMatrix(int k, int n, KernelIsa isa, int panelColumns, int panelCount, float[] storage, int offset)
    {
        K = k;
        N = n;
        Isa = isa;
        PanelColumns = panelColumns;
        PanelCount = panelCount;
        _storage = storage;
        PanelOffset = offset;
    }

    /// <summary>Packs row-major <paramref name="w"/> [k, n] for this process's kernel path.</summary>
    public static PackedMatrix Pack(ReadOnlySpan<float> w, int k, int n) => Pack(w, k, n, KernelSelection.Isa);

    /// <summary>Packs row-major <paramref name="w"/> [k, n] for the kernel path <paramref name="isa"/> (tests build every supported layout).</summary>
    internal static unsafe PackedMatrix Pack(ReadOnlySpan<float> w, int k, int n, KernelIsa isa)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(k);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(n);
        if (w.Length != (long)k * n)
            throw new ArgumentException($"W has {w.Length} floats, expected K*N = {k}*{n}.", nameof(w));
        if (isa > KernelSelection.Isa || isa < KernelIsa.Portable)
            throw new ArgumentException($"ISA path {isa} is not supported by this process (best is {KernelSelection.Isa}).", nameof(isa));

        int nr = Gemm.PanelColumnsOf(isa);
        int panelCount = (n + nr - 1) / nr;
        long floats = (long)panelCount * k * nr;
        const int alignFloats = 16; // 64 bytes
        if (floats + alignFloats > Array.MaxLength)
            throw new ArgumentException($"W [{k}, {n}] is too large to pack.", nameof(w));

        // Pinned (POH) so the alignment computed here stays valid; zeroed, so the padding columns are 0.
        var storage = GC.AllocateArray<float>((int)floats + alignFloats, pinned: true);
        int offset;
        fixed (float* p = storage)
            offset = (int)(((64 - ((nint)p & 63)) & 63) / sizeof(float));

        var panels = storage.AsSpan(offset, (int)floats);
        for (int panel = 0; panel < panelCount; panel++)
        {
            int j0 = panel * nr;
            int cols = Math.Min(nr, n - j0);
            var dst = panels.Slice(panel * k * nr, k * nr);
            for (int kk = 0; kk < k; kk++)
                w.Slice(kk * n + j0, cols).CopyTo(dst.Slice(kk * nr, cols));
        }
        return new PackedMatrix(k, n, isa, nr, panelCount, storage, offset);
    }

    /// <summary>Unpacks to row-major W [K, N] (tests and diagnostics; allocates).</summary>
    internal float[] ToRowMajor()
    {
        var w = new float[K * N];
        var panels = Panels;
        int nr = PanelColumns;
        for (int panel = 0; panel < PanelCount; panel++)
        {
            int j0 = panel * nr;
            int cols = Math.Min(nr, N - j0);
            for (int kk = 0; kk < K; kk++)
                panels.Slice(panel * K * nr + kk * nr, cols).CopyTo(w.AsSpan(kk * N + j0, cols));
        }
        return w;
    }
}
