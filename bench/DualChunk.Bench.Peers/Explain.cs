namespace DualChunk.Bench.Peers;

/// <summary>The "how to read these numbers" paragraphs at the head of each generated section.</summary>
public static class Explain
{
    public const string Peers =
        "Model: E = 287, H = 256, NH = 8, L = 4, F = 1024, random weights (seed 1) and input (seed 2) shared by every engine; " +
        "rows marked DecoderOnly run Edifice's decoder (RMSNorm, SwiGLU F = 688, the same attention) on DualChunk.NET and ONNX Runtime " +
        "(the ORT graph is built op for op from the same weights; the libtorch peer builds DualChunk.build only); " +
        "last-timestep output. **Each engine is timed in a process of its own**: the harness starts itself again " +
        "(`--engine dualchunk|onnx|torch --threads T --config X`) for one engine at a time, waits for that child to exit, then " +
        "starts the next, in the order DualChunk.NET, ONNX Runtime, libtorch on 1 thread, then on 2, and the whole sequence again " +
        "per round (A B A B), so no engine's threads exist — ONNX Runtime's intra-op pool spins after each of its calls — while " +
        "another is timed. ONNX Runtime keeps its defaults (its intra-op threads spin; the `allow_spinning` option is left unset): that is its " +
        "own best latency. _Process CPU / wall_ is the child's CPU time, all its threads, over its timed loop divided by the " +
        "loop's wall time: the cores that engine kept busy, spinning included (about the thread count for an engine that " +
        "spins, less for one whose workers block); _OS threads_ is the child's thread count while timed. " +
        "Each child checks its output first: a peer whose max|peer − ours| exceeds 1e-5·max|ours| (DualChunk.NET on 1 " +
        "thread, written by the first child) is reported as wrong and not timed. _First call_ is the first forward on a freshly " +
        "built engine in round 1 (JIT, ORT's lazy initialisation, first-touch page faults). Then a custom loop: warm-up, then " +
        "single calls timed with Stopwatch until the time budget and minimum sample count are reached; _median_ is the median " +
        "of the rounds' medians (each listed), _p90_ likewise. _Managed B/call_ is GC.GetTotalAllocatedBytes over the sample " +
        "divided by the calls, the largest of the rounds (process-wide, so it includes the runtime's own background " +
        "allocations, e.g. the tiering JIT recompiling a hot method: a few B/call; DualChunk.NET itself allocates 0 B per call, " +
        "see the zero-allocation tests and `dualchunk bench`): native allocations inside ONNX Runtime or libtorch are not " +
        "counted. _median vs DualChunk.NET_ is peer median / DualChunk.NET median on the same thread count: above 1× the peer " +
        "is slower. Every engine runs on the same thread count (ORT IntraOpNumThreads, torch.set_num_threads, our " +
        "MaxDegreeOfParallelism).\n\n";

    public const string Memory =
        "The attention of one layer, given Q, K, V: B = 1, NH = 8, D = 32 (H = 256), input the packed projection qkv [N, 3H] " +
        "and output [N, H], neither counted. Four methods: **dense** (Nx-style: the [NH, N, N] scores and a new [NH, N, N] " +
        "probabilities tensor, all N² entries computed); **tiled dense** (flash-style, vectorised like the engine's kernels: " +
        "online softmax over 64×64 tiles, FMA register tiles of 4 rows × 2 vectors, tiles above the diagonal skipped); **DCA, Edifice-materialised** ([NH, N/C, C, C] intra scores and probabilities, " +
        "[NH, N/C, N/C] inter scores and probabilities, chunk means, o_intra and o_inter: O(N·C + N²/C²)); **DCA, DualChunk.NET " +
        "fused** (the engine's own RowMean and CausalAttention kernels called as its forward pass calls them; planned bytes = the " +
        "attention part of the engine's workspace: chunk summaries, inter-chunk rows and the kernel scratch). All four compute " +
        "Edifice's numbers (−1e9 mask, +1e-8 softmax denominator); `--selftest` checks tiled = dense (max|Δ| ≤ 1e-5·max|dense|, at N = 1…300 including every tail of the tiles) and Edifice DCA = fused DCA. " +
        "_Planned_: bytes the method allocates, from its formula. _Measured peak_: each point runs in a fresh child process " +
        "(`--point METHOD N C`, DOTNET_TieredCompilation=0): after a warm-up on a tiny problem it resets the peak-RSS counter " +
        "(`/proc/self/clear_refs`), runs one forward and reports VmHWM − VmRSS-before from /proc/self/status, i.e. the resident " +
        "bytes the forward added at its peak (page-granular; GC heap reuse can hide allocations smaller than a few hundred KiB, " +
        "and JIT/runtime noise adds up to ~2 MiB). _Time_: that forward (median of up to 7 when it is short), one thread. " +
        "Points that would not fit in this machine's memory (0.75 × MemAvailable, and a mode cap) are \"skipped, needs X GiB\"; " +
        "points whose time, extrapolated from the previous N, exceeds the mode's cap are \"skipped, est. X s\". " +
        "Dense and tiled do not depend on C and run once per N.\n\n";
}
