namespace DualChunk.Kernels;

/// <summary>
/// Rows per M block and the largest K block of one GEMM path, derived from the data caches (<see cref="CpuCaches"/>).
/// Blocking never changes a result bit: every element of C is the same chain of FMAs over k whatever the blocks
/// (a later K block resumes from the raw sums the previous one stored, an exact round trip).
/// </summary>
/// <remarks>
/// The loop nest (<see cref="Gemm"/>) reuses two things: the M block's A rows [RowBlock, kc], read by every panel,
/// and one panel block [kc, NR], read by every MR-row tile of the M block. Both are sized to live in L2 together
/// (three quarters of it: the rest is for the C tiles and the stream of the next panel), so W streams from memory
/// once per M block and the tiles read both from L2 (the micro-kernel needs NR·4 bytes of B per MR·NR/16 FMA
/// cycles, 21 B/cycle on the 6×64 kernel, well inside L2 bandwidth).
/// <list type="bullet">
/// <item>RowBlock: 64 rows (a chunk, the unit the model's row groups are made of) rounded up to whole tiles of every
/// path (a multiple of 12 = lcm(6, 4)), 72; fewer only when 72 rows of an L1-sized K block would not fit.</item>
/// <item>MaxKBlock: the largest kc with (RowBlock + NR)·kc·4 bytes ≤ ¾ L2, and never less than the panel block
/// that fits L1D (L1D / (NR·4), the old rule). With a 1 MB L2 that is 1445 on the 6×64 kernel: K = 256, 287 and
/// 1024 run as one K block (no partial sums stored and reloaded; measured: docs/performance-notes.md, issue 24).</item>
/// </list>
/// </remarks>
internal readonly record struct GemmBlocking(int RowBlock, int MaxKBlock)
{
    /// <summary>Largest RowBlock (the driver's partial-sum scratch is sized for it).</summary>
    public const int MaxRowBlock = 72;

    /// <summary>Row blocks are multiples of this: the least common multiple of every path's MR (6, 6, 4).</summary>
    public const int RowGranule = 12;

    /// <summary>The blocking for micro-kernel panels of <paramref name="panelColumns"/> (NR) floats on these caches.</summary>
    public static GemmBlocking For(int panelColumns, CpuCaches caches)
    {
        long l1 = Math.Max(caches.L1DataBytes, 4 * 1024), l2 = Math.Max(caches.L2Bytes, l1);
        long l1KBlock = Math.Max(RowGranule, l1 / (panelColumns * sizeof(float)));
        long budget = l2 / 4 * 3;
        int rowBlock = MaxRowBlock;
        while (rowBlock > RowGranule && (rowBlock + panelColumns) * l1KBlock * sizeof(float) > budget)
            rowBlock -= RowGranule;
        long kBlock = Math.Max(l1KBlock, budget / ((rowBlock + panelColumns) * sizeof(float)));
        return new GemmBlocking(rowBlock, (int)Math.Min(kBlock, 1 << 20));
    }

    /// <summary>e.g. "72 rows x K 1445".</summary>
    public override string ToString() => $"{RowBlock} rows x K {MaxKBlock}";
}
