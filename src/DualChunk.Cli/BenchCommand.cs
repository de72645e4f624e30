using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using DualChunk.Core;
using DualChunk.Kernels;

namespace DualChunk.Cli;

/// <summary>
/// <c>dualchunk bench</c>: times the forward pass on random input and prints one JSON line.
/// Nominal FLOPs (docs/benchmarks.md): 2·B·N·(E·H [if E≠H] + L·(3H² + H² + m·H·F)) for the dense
/// layers (m = 2 FFN matrices for DualChunk.build, 3 for DecoderOnly's SwiGLU), plus 4·B·N·C·H·L for intra-chunk QKᵀ and P·V and 4·B·NC²·H·L for inter-chunk ones.
/// </summary>
internal static class BenchCommand
{
    private const int MaxTimedCalls = 2000;

    public static double NominalGflop(ModelConfig c, int batch, int seqLen)
    {
        double rows = (double)batch * seqLen, h = c.HiddenSize, chunks = seqLen / c.ChunkSize;
        double ffnMatrices = c.Architecture == ModelArchitecture.DecoderOnly ? 3 : 2; // gate, up, down | up, down
        double dense = 2 * rows * ((c.HasInputProjection ? c.EmbedDim * h : 0) + c.NumLayers * (4 * h * h + ffnMatrices * h * c.FfnSize));
        double attention = c.NumLayers * (4 * rows * c.ChunkSize * h + 4 * batch * chunks * chunks * h);
        return (dense + attention) / 1e9;
    }

    /// <summary>
    /// Times the first pooled call after load (after <see cref="DualChunkModel.WarmUp"/> when <paramref name="warmUpApi"/>),
    /// then <paramref name="warmup"/> untimed and <paramref name="iterations"/> timed pooled calls. A null count means
    /// "by time": warm-up until at least 50 calls and 1.5 s (the JIT promotes hot methods to tier 1 only after ~30
    /// calls and a 100 ms quiet period, so a handful of calls would time tier-0 code), timing until at least 30 calls and 2 s.
    /// </summary>
    public static void Run(DualChunkModel model, int batch, int seqLen, OutputMode mode, int? warmupCalls, int? iterationCalls,
        bool warmUpApi, double loadMs, int models, TextWriter o, bool stream = false)
    {
        long inputFloats = (long)batch * (stream ? model.Config.ChunkSize : seqLen) * model.Config.EmbedDim;
        if (inputFloats > Array.MaxLength)
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture,
                $"--batch {batch} × --seq {seqLen} × embed_dim {model.Config.EmbedDim} is {inputFloats} input floats, more than one array can hold ({Array.MaxLength}); use a smaller --batch or --seq."));
        var input = RandomWeights.Input((int)inputFloats, seed: 12345);
        using var streamState = stream ? StreamAt(model, batch, seqLen, mode, input) : null;
        var output = new float[streamState?.OutputLength(mode) ?? model.OutputLength(batch, seqLen, mode)];
        // One timed call: Run on [B, N], or one Append with N − C positions already in the stream. The stream is put
        // back to N − C positions after each Append by restoring its snapshot, outside the timed window (the CPU time
        // per call, measured over the whole loop, includes the restore).
        byte[]? streamStart = streamState?.Snapshot();
        Action call = streamState is { } s
            ? () => s.Append(input, output, mode)
            : () => model.Run(input, batch, seqLen, output, mode);
        Action after = streamState is { } r ? () => r.Restore(streamStart!) : () => { };
        var rssAfterLoad = ResidentMemory.Read();

        double warmUpMs = 0;
        if (warmUpApi)
        {
            long w0 = Stopwatch.GetTimestamp();
            model.WarmUp(batch, seqLen);
            warmUpMs = Stopwatch.GetElapsedTime(w0).TotalMilliseconds;
        }
        long f0 = Stopwatch.GetTimestamp();
        call();
        double firstCallMs = Stopwatch.GetElapsedTime(f0).TotalMilliseconds;
        after();

        int warmup = 0;
        long warm0 = Stopwatch.GetTimestamp();
        while (warmupCalls is { } w ? warmup < w
               : warmup < MaxTimedCalls && (warmup < 50 || Stopwatch.GetElapsedTime(warm0).TotalSeconds < 1.5))
        {
            call();
            after();
            warmup++;
        }

        // Sized before the timed loop so that nothing in it allocates but the model itself.
        var timed = new double[iterationCalls ?? MaxTimedCalls];
        _ = model.TakePhaseTrace(); // the traces (DUALCHUNK_PHASE_TRACE=1, DUALCHUNK_BOX_TRACE=1) count the timed calls only
        _ = DualChunkModel.TakeBoxTrace();
        var schedBefore = ThreadSchedStat.Read();
        int iterations = 0;
        // The model's own allocations: this thread's and its helper threads' (the runtime's background threads, e.g. the
        // tiering JIT finishing a method mid-run, allocate too; process_allocated_bytes_per_call shows that figure).
        long threadBefore = GC.GetAllocatedBytesForCurrentThread(), helpersBefore = model.HelperAllocatedBytes;
        long processBefore = GC.GetTotalAllocatedBytes(precise: true), phasesBefore = model.PhasesRun;
        long run0 = Stopwatch.GetTimestamp();
        while (iterationCalls is { } k ? iterations < k
               : iterations < timed.Length && (iterations < 30 || Stopwatch.GetElapsedTime(run0).TotalSeconds < 2))
        {
            long t0 = Stopwatch.GetTimestamp();
            call();
            timed[iterations++] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
            after();
        }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - threadBefore + (model.HelperAllocatedBytes - helpersBefore);
        long processAllocated = GC.GetTotalAllocatedBytes(precise: true) - processBefore;
        double phasesPerCall = (double)(model.PhasesRun - phasesBefore) / iterations;
        var schedAfter = ThreadSchedStat.Read();
        double cpuMsPerCall = (schedAfter.RunNs - schedBefore.RunNs) / 1e6 / iterations;
        double waitMsPerCall = (schedAfter.WaitNs - schedBefore.WaitNs) / 1e6 / iterations;
        var samples = timed[..iterations];
        var rssAfterRun = ResidentMemory.Read();
        Array.Sort(samples);
        double median = Percentile(samples, 0.5), p90 = Percentile(samples, 0.9);
        double gflop = stream ? StreamGflop(model.Config, batch, seqLen) : NominalGflop(model.Config, batch, seqLen);
        var buffer = new ArrayBufferWriter<byte>(2048);
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            json.WriteStartObject();
            json.WriteNumber("median_ms", Math.Round(median, 4));
            json.WriteNumber("p90_ms", Math.Round(p90, 4));
            json.WriteNumber("min_ms", Math.Round(samples[0], 4));
            json.WriteNumber("cpu_ms_per_call", Math.Round(cpuMsPerCall, 4));
            json.WriteNumber("runqueue_wait_ms_per_call", Math.Round(waitMsPerCall, 4));
            json.WriteNumber("gflop", Math.Round(gflop, 6));
            json.WriteNumber("gflops_at_median", Math.Round(gflop / (median / 1000), 2));
            json.WriteNumber("allocated_bytes_per_call", allocated / iterations);
            json.WriteNumber("process_allocated_bytes_per_call", processAllocated / iterations);
            json.WriteNumber("threads", model.MaxDegreeOfParallelism);
            json.WriteBoolean("allow_spinning", model.AllowSpinning);
            json.WriteNumber("phases_per_call", Math.Round(phasesPerCall, 2));
            json.WriteString("kernel_isa", KernelSelection.Isa.ToString());
            json.WriteString("gemm_micro_kernel", Gemm.MicroKernel);
            json.WriteString("gemm_blocking", Gemm.BlockingDescription);
            BuildInfo.WriteJson(json);
            json.WriteNumber("batch", batch);
            json.WriteNumber("seq_len", seqLen);
            json.WriteNumber("chunk_size", model.Config.ChunkSize);
            json.WriteString("output_mode", ModeName(mode));
            json.WriteNumber("iterations", iterations);
            json.WriteNumber("warmup", warmup);
            json.WriteString("architecture", model.Config.Architecture == ModelArchitecture.DecoderOnly ? "decoder" : "dualchunk");
            json.WriteString("config", model.Config.ToString());
            json.WriteNumber("load_ms", Math.Round(loadMs, 2));
            json.WriteBoolean("memory_mapped", model.IsMemoryMapped);
            json.WriteNumber("models_loaded", models);
            json.WriteBoolean("warm_up_api", warmUpApi);
            json.WriteNumber("warm_up_api_ms", Math.Round(warmUpMs, 2));
            json.WriteNumber("first_call_ms", Math.Round(firstCallMs, 3));
            rssAfterLoad.WriteJson(json, "rss_after_load");
            rssAfterRun.WriteJson(json, "rss_after_run");
            json.WriteBoolean("stream", stream);
            if (streamState is { } st)
            {
                json.WriteNumber("stream_state_bytes", st.StateBytes);
                json.WriteNumber("stream_state_bytes_formula", DualChunkStream.StateBytesFor(model.Config, batch, seqLen));
                json.WriteNumber("pooled_workspace_bytes", model.PooledWorkspaceBytes); // the appends' workspace (a stream holds none)
            }
            json.WriteEndObject();
        }
        o.WriteLine(Encoding.UTF8.GetString(buffer.WrittenSpan));
        if (model.TakePhaseTrace() is { } trace) Console.Error.WriteLine(trace);
        if (DualChunkModel.TakeBoxTrace() is { } boxes) Console.Error.WriteLine(boxes);
    }

    /// <summary>
    /// <c>--callers K</c>: K threads call <see cref="DualChunkModel.Run(ReadOnlySpan{float}, int, int, Span{float}, OutputMode, CancellationToken)"/>
    /// on the one model at once, each with its own input and output, as a server's K concurrent calls do: after a
    /// warm-up (<paramref name="warmupCalls"/> each, or by time as in <see cref="Run"/>) they run for
    /// <paramref name="seconds"/>; one JSON line with the calls per second of all of them together (the engine-alone
    /// throughput a server's is compared with) and the per-call latency.
    /// </summary>
    public static void RunConcurrent(DualChunkModel model, int batch, int seqLen, OutputMode mode, int callers, int? warmupCalls, double seconds, TextWriter o)
    {
        long inputFloats = (long)batch * seqLen * model.Config.EmbedDim;
        if (inputFloats > Array.MaxLength)
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture,
                $"--batch {batch} × --seq {seqLen} × embed_dim {model.Config.EmbedDim} is {inputFloats} input floats, more than one array can hold ({Array.MaxLength}); use a smaller --batch or --seq."));
        var input = RandomWeights.Input((int)inputFloats, seed: 12345);
        var samples = new List<double>[callers];
        using var warm = new Barrier(callers + 1);
        long start = 0, deadline = 0;
        var ends = new long[callers];
        var threads = new Thread[callers];
        for (int c = 0; c < callers; c++)
        {
            int caller = c;
            threads[c] = new Thread(() =>
            {
                var output = new float[model.OutputLength(batch, seqLen, mode)];
                long w0 = Stopwatch.GetTimestamp();
                for (int w = 0; warmupCalls is { } n ? w < n : w < MaxTimedCalls && (w < 50 || Stopwatch.GetElapsedTime(w0).TotalSeconds < 1.5); w++)
                    model.Run(input, batch, seqLen, output, mode);
                var mine = samples[caller] = new List<double>(4096);
                warm.SignalAndWait(); // every caller warm
                warm.SignalAndWait(); // start and deadline set
                long t = Stopwatch.GetTimestamp();
                while (t < deadline)
                {
                    model.Run(input, batch, seqLen, output, mode);
                    long t1 = Stopwatch.GetTimestamp();
                    mine.Add(Stopwatch.GetElapsedTime(t, t1).TotalMilliseconds);
                    t = t1;
                }
                ends[caller] = t;
            }) { IsBackground = true, Name = $"bench caller {c}" };
            threads[c].Start();
        }
        warm.SignalAndWait();
        start = Stopwatch.GetTimestamp();
        deadline = start + (long)(seconds * Stopwatch.Frequency);
        warm.SignalAndWait();
        foreach (var t in threads) t.Join();
        double wall = Stopwatch.GetElapsedTime(start, ends.Max()).TotalSeconds;
        var all = samples.SelectMany(x => x).ToArray();
        Array.Sort(all);
        var buffer = new ArrayBufferWriter<byte>(1024);
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            json.WriteStartObject();
            json.WriteNumber("callers", callers);
            json.WriteNumber("calls_per_second", Math.Round(all.Length / wall, 2));
            json.WriteNumber("calls", all.Length);
            json.WriteNumber("seconds", Math.Round(wall, 3));
            json.WriteNumber("median_ms", Math.Round(Percentile(all, 0.5), 4));
            json.WriteNumber("p99_ms", Math.Round(Percentile(all, 0.99), 4));
            json.WriteNumber("threads", model.MaxDegreeOfParallelism);
            json.WriteString("kernel_isa", KernelSelection.Isa.ToString());
            BuildInfo.WriteJson(json);
            json.WriteNumber("batch", batch);
            json.WriteNumber("seq_len", seqLen);
            json.WriteNumber("chunk_size", model.Config.ChunkSize);
            json.WriteString("output_mode", ModeName(mode));
            json.WriteString("config", model.Config.ToString());
            json.WriteEndObject();
        }
        o.WriteLine(Encoding.UTF8.GetString(buffer.WrittenSpan));
    }

    /// <summary>
    /// Nominal FLOPs of one Append at stream length N: the dense layers and intra-chunk attention of B·C rows, and the
    /// inter-chunk attention of one query summary over N / C chunks per sequence and layer.
    /// </summary>
    public static double StreamGflop(ModelConfig c, int batch, int seqLen)
    {
        double chunkDense = NominalGflop(c, batch, c.ChunkSize) - 4.0 * batch * c.HiddenSize * c.NumLayers / 1e9; // minus NC = 1's inter term
        return chunkDense + 4.0 * batch * (seqLen / c.ChunkSize) * c.HiddenSize * c.NumLayers / 1e9;
    }

    /// <summary>A stream of <paramref name="batch"/> sequences holding N − C positions of random input, capacity N.</summary>
    private static DualChunkStream StreamAt(DualChunkModel model, int batch, int seqLen, OutputMode mode, float[] chunk)
    {
        var stream = model.CreateStream(batch, seqLen);
        var fill = mode == OutputMode.LastTimestep ? OutputMode.LastTimestep : OutputMode.All; // All keeps the mean readable
        var output = new float[stream.OutputLength(fill)];
        for (int k = 0; k < seqLen / model.Config.ChunkSize - 1; k++)
            stream.Append(chunk, output, fill);
        return stream;
    }

    public static string ModeName(OutputMode mode) => mode switch
    {
        OutputMode.All => "all",
        OutputMode.MeanPool => "mean",
        _ => "last",
    };

    private static double Percentile(double[] sorted, double q)
    {
        // Nearest-rank on the sorted sample, interpolated between neighbours.
        double pos = q * (sorted.Length - 1);
        int lo = (int)Math.Floor(pos), hi = Math.Min(lo + 1, sorted.Length - 1);
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
    }
}

/// <summary>
/// The calling thread's scheduler counters from /proc/thread-self/schedstat (Linux; −1 elsewhere): nanoseconds on a
/// CPU and nanoseconds runnable but waiting for one — the second is how much other processes delayed the thread.
/// </summary>
internal readonly record struct ThreadSchedStat(long RunNs, long WaitNs)
{
    public static ThreadSchedStat Read()
    {
        try
        {
            var parts = System.IO.File.ReadAllText("/proc/thread-self/schedstat").Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length >= 2 && long.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out long run)
                && long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out long wait))
                return new ThreadSchedStat(run, wait);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
        return new ThreadSchedStat(-1, -1);
    }
}

/// <summary>The process's resident set from /proc/self/status (Linux; -1 elsewhere), in bytes.</summary>
internal readonly record struct ResidentMemory(long Total, long Anonymous, long File)
{
    public static ResidentMemory Read()
    {
        long total = -1, anon = -1, file = -1;
        try
        {
            foreach (string line in System.IO.File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal)) total = Kb(line);
                else if (line.StartsWith("RssAnon:", StringComparison.Ordinal)) anon = Kb(line);
                else if (line.StartsWith("RssFile:", StringComparison.Ordinal)) file = Kb(line);
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
        return new ResidentMemory(total, anon, file);
    }

    public void WriteJson(Utf8JsonWriter json, string prefix)
    {
        json.WriteNumber(prefix + "_bytes", Total);
        json.WriteNumber(prefix + "_anon_bytes", Anonymous);
        json.WriteNumber(prefix + "_file_bytes", File);
    }

    private static long Kb(string line)
    {
        var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return parts.Length >= 2 && long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out long kb) ? kb * 1024 : -1;
    }
}
