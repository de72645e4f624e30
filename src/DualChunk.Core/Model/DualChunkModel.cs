using System.Diagnostics;
using System.Globalization;
using System.Numerics.Tensors;
using DualChunk.Kernels;

namespace DualChunk.Core;

/// <summary>
/// An Edifice DualChunk model ready to run: immutable after load and safe to call from any number of threads at
/// once. Per-call state lives in <see cref="Workspace"/>s, pooled here; steady-state calls allocate nothing.
/// </summary>
/// <remarks>
/// This type is the API: the call overloads, validation and lifetime (loading in DualChunkModel.Load.cs, the tensor
/// overloads in DualChunkModel.Tensors.cs, the pool in <see cref="WorkspacePool"/>). The math is in
/// <see cref="ForwardPass"/> and the boxes of <see cref="DualChunkBlock{TNorm, TFeedForward}"/>; the threads in <see cref="Scheduler"/>.
/// <para>
/// <see cref="Dispose"/> may race with calls: calls already running complete normally and the worker threads and
/// the file mapping are released when the last of them returns; calls starting after it throw
/// <see cref="ObjectDisposedException"/>.
/// </para>
/// </remarks>
public sealed unsafe partial class DualChunkModel : IDisposable
{
    private const int DisposedBit = 1 << 30;

    private readonly ForwardPass _forward;
    private readonly MappedFile? _mapping;          // the .dcw mapping γ, β and biases point into, if any
    private readonly WorkerGroup? _workers;         // intra-op helpers, when MaxDegreeOfParallelism > 1
    private readonly WorkspacePool _pool;
    private readonly int? _maxBatch, _maxSeqLen;
    private readonly DualChunkInstruments _metrics; // the meter factory's instruments, or the process-wide ones
    private int _state;                             // calls in flight, | DisposedBit once disposed

    private DualChunkModel(ModelConfig config, IReadOnlyDictionary<string, CheckpointTensor> tensors, bool copy, DualChunkModelOptions options, MappedFile? mapping)
    {
        Config = config;
        ConfigText = config.ToString();
        Name = options.Name;
        MaxDegreeOfParallelism = options.MaxDegreeOfParallelism;
        _forward = ForwardPass.Create(config, tensors, copy);
        _metrics = DualChunkMetrics.For(options.MeterFactory);
        _pool = new WorkspacePool(config, MaxDegreeOfParallelism, options.MaxWorkspaceBytes, _metrics);
        _maxBatch = options.MaxBatch;
        _maxSeqLen = options.MaxSeqLen;
        _mapping = mapping;
        AllowSpinning = options.AllowSpinning;
        if (MaxDegreeOfParallelism > 1)
            _workers = new WorkerGroup(MaxDegreeOfParallelism, AllowSpinning);
    }

    /// <summary>The model's dimensions, chunk size included.</summary>
    public ModelConfig Config { get; }

    /// <summary>The model's name for traces (<see cref="DualChunkModelOptions.Name"/>), or null.</summary>
    public string? Name { get; }

    /// <summary><see cref="Config"/> as text, made once (a trace tag).</summary>
    internal string ConfigText { get; }

    /// <summary>Threads one call may use, the calling thread included (<see cref="DualChunkModelOptions.MaxDegreeOfParallelism"/>).</summary>
    public int MaxDegreeOfParallelism { get; }

    /// <summary>Whether a call's threads spin briefly at each hand-off before they block (<see cref="DualChunkModelOptions.AllowSpinning"/>).</summary>
    public bool AllowSpinning { get; }

    /// <summary>The instruments this model records on (a stream's appends too).</summary>
    internal DualChunkInstruments Metrics => _metrics;

    /// <summary>True when the layer-norm parameters and biases are used in place from a memory-mapped .dcw file.</summary>
    public bool IsMemoryMapped => _mapping is not null;

    /// <summary>Floats the output of one call holds: B·H, or B·N·H for <see cref="OutputMode.All"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A size is not positive, or the output would exceed the largest array.</exception>
    public int OutputLength(int batch, int seqLen, OutputMode mode)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batch);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(seqLen);
        long length = mode == OutputMode.All ? (long)batch * seqLen * Config.HiddenSize : (long)batch * Config.HiddenSize;
        if (length > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(batch), batch, $"An output of {length} floats exceeds the largest array; run smaller batches.");
        return (int)length;
    }

    /// <summary>
    /// A caller-owned workspace for calls of up to <paramref name="maxBatch"/> sequences of up to
    /// <paramref name="maxSeqLen"/> positions (and B·N ≤ maxBatch · maxSeqLen), with one slice per thread of
    /// <see cref="MaxDegreeOfParallelism"/>. Use it from one call at a time.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A size is not positive, is over a limit of the model's options, or the workspace would not fit one array.</exception>
    /// <exception cref="ArgumentException"><paramref name="maxSeqLen"/> is not a multiple of C.</exception>
    public Workspace CreateWorkspace(int maxBatch, int maxSeqLen)
    {
        CheckLimits(maxBatch, maxSeqLen);
        var plan = new WorkspacePlan(Config, (long)maxBatch * maxSeqLen, maxSeqLen, maxBatch, MaxDegreeOfParallelism);
        return new Workspace(Config, _pool.Checked(plan, maxBatch, maxSeqLen));
    }

    /// <summary>
    /// Managed bytes the model's intra-op helper threads have allocated since it was built (0 with
    /// <see cref="MaxDegreeOfParallelism"/> = 1). <see cref="GC.GetAllocatedBytesForCurrentThread"/> on the calling
    /// thread does not see them; add the growth of this to it to check that calls allocate nothing. Read-only fact.
    /// </summary>
    public long HelperAllocatedBytes => _workers?.HelperAllocatedBytes ?? 0;

    /// <summary>Phases the intra-op helper threads have joined (tests: proof that a call used them).</summary>
    internal long HelperPhasesJoined => _workers?.HelperPhases ?? 0;

    /// <summary>
    /// Parallel phases (one hand-off to the helper threads and one barrier each) the model's calls have run since it
    /// was built (0 with <see cref="MaxDegreeOfParallelism"/> = 1). Its growth per call is what a call's threads
    /// synchronise: the fewer, the less a thread count above 1 costs (docs/api.md). Read-only fact.
    /// </summary>
    public long PhasesRun => _workers?.PhasesRun ?? 0;

    /// <summary>
    /// With the environment variable <c>DUALCHUNK_PHASE_TRACE=1</c> set when the model was built: the table of where
    /// each phase's time went (caller, helpers' start delay and share) over the calls since the last take, and a new
    /// table begins; otherwise null. A diagnostic for tuning <see cref="MaxDegreeOfParallelism"/>
    /// (<c>dualchunk bench</c> prints it).
    /// </summary>
    public string? TakePhaseTrace() => _workers?.PhaseTraceReport;

    /// <summary>
    /// With the environment variable <c>DUALCHUNK_BOX_TRACE=1</c> set when the process started: the table of where each
    /// call's time went box by box (every dense layer, norm, chunk-means and attention call; median µs per call and
    /// GFLOP/s) over the calls of every model in the process since the last take, and a new table begins; otherwise
    /// null. Process-wide, hence static. A diagnostic for the kernels, meant for one thread (<c>dualchunk bench</c> prints it; bench/box-table.sh).
    /// </summary>
    public static string? TakeBoxTrace() => BoxTrace.Take();

    /// <summary>
    /// Tests only: called on the calling thread inside every Run, after the entry checks and before the call takes the
    /// worker group and starts the forward pass, so a test can block a call in flight or cancel its token from inside.
    /// </summary>
    internal static Action<DualChunkModel>? TestHookCallStarting;

    /// <summary>Bytes held by the idle workspaces in this model's pool.</summary>
    public long PooledWorkspaceBytes => _pool.Bytes;

    /// <summary>Runs the model on <paramref name="input"/> [B, N, E] and returns a new output array (allocates it).</summary>
    /// <exception cref="ArgumentException">A shape does not match, N is not a multiple of C, or the input holds NaN/∞.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    /// <exception cref="ObjectDisposedException">The model was disposed.</exception>
    public float[] Run(float[] input, int batch, int seqLen, OutputMode mode = OutputMode.LastTimestep, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(input);
        ValidateShape(input, batch, seqLen);
        var output = new float[OutputLength(batch, seqLen, mode)];
        Run(input, batch, seqLen, output, mode, cancellationToken);
        return output;
    }

    /// <summary>
    /// Runs the model on <paramref name="input"/> [B, N, E] into <paramref name="output"/>
    /// ([B, H], or [B, N, H] for <see cref="OutputMode.All"/>), with a workspace from the model's pool.
    /// Allocation-free once the pool holds a workspace that fits (see <see cref="WarmUp"/>).
    /// </summary>
    /// <exception cref="ArgumentException">A shape does not match, N is not a multiple of C, or the input holds NaN/∞.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled (checked between layers).</exception>
    /// <exception cref="ObjectDisposedException">The model was disposed.</exception>
    public void Run(ReadOnlySpan<float> input, int batch, int seqLen, Span<float> output, OutputMode mode = OutputMode.LastTimestep, CancellationToken cancellationToken = default)
    {
        long start = Stopwatch.GetTimestamp();
        using var activity = DualChunkTracing.StartRun(this, batch, seqLen, mode); // null when nothing listens
        try
        {
            Enter();
            try
            {
                ValidateShape(input, batch, seqLen);
                var workspace = _pool.Rent(batch, seqLen);
                try
                {
                    RunCore(input, batch, seqLen, output, mode, workspace, cancellationToken);
                }
                finally
                {
                    _pool.Return(workspace);
                }
            }
            finally
            {
                Exit();
            }
        }
        catch (Exception ex) when (_metrics.Calls.RecordFailure(mode, start, ex) | DualChunkTracing.Failed(activity, ex))
        {
            throw; // never reached: the filter records and declines
        }
        _metrics.Calls.RecordCall(mode, start);
    }

    /// <summary>Runs the model with a caller-owned workspace (one call at a time per workspace).</summary>
    /// <exception cref="ArgumentException">A shape does not match, N is not a multiple of C, the input holds NaN/∞, or the workspace does not fit.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled (checked between layers).</exception>
    /// <exception cref="ObjectDisposedException">The model was disposed.</exception>
    public void Run(ReadOnlySpan<float> input, int batch, int seqLen, Span<float> output, OutputMode mode, Workspace workspace, CancellationToken cancellationToken = default)
    {
        long start = Stopwatch.GetTimestamp();
        ArgumentNullException.ThrowIfNull(workspace);
        using var activity = DualChunkTracing.StartRun(this, batch, seqLen, mode); // null when nothing listens
        try
        {
            Enter();
            try
            {
                ValidateShape(input, batch, seqLen);
                if (workspace.Config != Config)
                    throw new ArgumentException($"The workspace was planned for a model with {workspace.Config}, not {Config}.", nameof(workspace));
                if (!workspace.Fits(batch, seqLen))
                    throw new ArgumentException(string.Create(CultureInfo.InvariantCulture,
                        $"The workspace is planned for batch ≤ {workspace.MaxBatch} and seq_len ≤ {workspace.MaxSeqLen}; this call has batch {batch}, seq_len {seqLen}. Create a larger workspace."), nameof(workspace));
                RunCore(input, batch, seqLen, output, mode, workspace, cancellationToken);
            }
            finally
            {
                Exit();
            }
        }
        catch (Exception ex) when (_metrics.Calls.RecordFailure(mode, start, ex) | DualChunkTracing.Failed(activity, ex))
        {
            throw; // never reached: the filter records and declines
        }
        _metrics.Calls.RecordCall(mode, start);
    }

    /// <summary>
    /// JITs every kernel path the model uses and touches all its weights: runs every output mode at [1, C], at
    /// [1, 2C] (when it fits the plan) and at [<paramref name="maxBatch"/>, <paramref name="maxSeqLen"/>], and leaves
    /// a workspace planned for that size in the pool, so the first real call of up to that size neither compiles nor
    /// allocates. Call it once after loading, before taking traffic.
    /// </summary>
    /// <param name="maxBatch">Largest batch the service will send.</param>
    /// <param name="maxSeqLen">Largest sequence length the service will send (default C), a multiple of C.</param>
    /// <param name="cancellationToken">Cancels the warm-up between layers.</param>
    /// <exception cref="ArgumentException">A size is not positive or <paramref name="maxSeqLen"/> is not a multiple of C.</exception>
    /// <exception cref="ObjectDisposedException">The model was disposed.</exception>
    public void WarmUp(int maxBatch = 1, int? maxSeqLen = null, CancellationToken cancellationToken = default)
    {
        int c = Config.ChunkSize, n = maxSeqLen ?? c;
        CheckLimits(maxBatch, n);
        Enter();
        try
        {
            _pool.Return(_pool.Rent(maxBatch, n));
        }
        finally
        {
            Exit();
        }
        var input = new float[maxBatch * n * Config.EmbedDim];
        for (int i = 0; i < input.Length; i++)
            input[i] = MathF.Sin(0.37f * i);
        var output = new float[OutputLength(maxBatch, n, OutputMode.All)];
        Span<(int B, int N)> shapes = [(1, c), (1, Math.Min(2 * c, n)), (maxBatch, n)];
        foreach (var (b, len) in shapes)
        {
            foreach (var mode in (ReadOnlySpan<OutputMode>)[OutputMode.LastTimestep, OutputMode.All, OutputMode.MeanPool])
                Run(input.AsSpan(0, b * len * Config.EmbedDim), b, len, output.AsSpan(0, OutputLength(b, len, mode)), mode, cancellationToken);
        }
    }

    /// <summary>
    /// Stops the worker threads and unmaps the weights file once no call is running. Calls in flight complete;
    /// later calls throw <see cref="ObjectDisposedException"/>. Idempotent.
    /// </summary>
    public void Dispose()
    {
        int previous = Interlocked.Or(ref _state, DisposedBit);
        if (previous == 0)
            ReleaseResources();
    }

    private void Enter()
    {
        int state = Volatile.Read(ref _state);
        while (true)
        {
            ObjectDisposedException.ThrowIf((state & DisposedBit) != 0, this);
            int seen = Interlocked.CompareExchange(ref _state, state + 1, state);
            if (seen == state) return;
            state = seen;
        }
    }

    private void Exit()
    {
        if (Interlocked.Decrement(ref _state) == DisposedBit)
            ReleaseResources(); // the last call out after Dispose
    }

    private void ReleaseResources()
    {
        _workers?.Dispose();
        _mapping?.Dispose();
        _pool.Clear();
    }

    /// <summary>Sizes positive, N a multiple of C, and within the host's limits (before anything is allocated).</summary>
    private void CheckLimits(int batch, int seqLen)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batch);
        Config.ValidateSequenceLength(seqLen);
        if (batch > _maxBatch)
            throw new ArgumentOutOfRangeException(nameof(batch), batch, string.Create(CultureInfo.InvariantCulture,
                $"Batch {batch} is over the limit DualChunkModelOptions.MaxBatch = {_maxBatch}; send at most {_maxBatch} sequences per call, or raise MaxBatch."));
        if (seqLen > _maxSeqLen)
            throw new ArgumentOutOfRangeException(nameof(seqLen), seqLen, string.Create(CultureInfo.InvariantCulture,
                $"Sequence length {seqLen} is over the limit DualChunkModelOptions.MaxSeqLen = {_maxSeqLen}; send sequences of at most {_maxSeqLen} positions, or raise MaxSeqLen."));
    }

    private void ValidateShape(ReadOnlySpan<float> input, int batch, int seqLen)
    {
        CheckLimits(batch, seqLen);
        long expected = (long)batch * seqLen * Config.EmbedDim;
        if (input.Length != expected)
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture,
                $"Input has {input.Length} floats; [batch {batch}, seq_len {seqLen}, embed {Config.EmbedDim}] needs {expected}."), nameof(input));
    }

    /// <summary>Checks the output and the values, runs the <see cref="ForwardPass"/> with the caller's buffers pinned, then checks the output is finite.</summary>
    private void RunCore(ReadOnlySpan<float> input, int batch, int seqLen, Span<float> output, OutputMode mode, Workspace workspace, CancellationToken cancellationToken)
    {
        if (mode is not (OutputMode.LastTimestep or OutputMode.All or OutputMode.MeanPool))
            throw new ArgumentOutOfRangeException(nameof(mode), mode, "Unknown output mode.");
        int expectedOut = OutputLength(batch, seqLen, mode);
        if (output.Length != expectedOut)
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture,
                $"Output has {output.Length} floats; mode {mode} with batch {batch}, seq_len {seqLen}, hidden {Config.HiddenSize} needs {expectedOut}."), nameof(output));
        ThrowIfNotFinite(input, seqLen, "Input", "calling", nameof(input));
        cancellationToken.ThrowIfCancellationRequested();
        TestHookCallStarting?.Invoke(this);
        var group = BeginCall(workspace);
        try
        {
            fixed (float* pinnedInput = input)   // the work items address the caller's buffers by pointer
            fixed (float* pinnedOutput = output)
            {
                _forward.Run(input, batch, seqLen, output, mode, workspace, locate: false, cancellationToken);
                int nonFinite = NonFinite.IndexOf(output);
                if (nonFinite >= 0)   // rare: run again, checking after each stage, to say where it went non-finite
                    throw Overflow(output, nonFinite, batch, seqLen, mode, _forward.Run(input, batch, seqLen, output, mode, workspace, locate: true, cancellationToken));
            }
        }
        finally
        {
            EndCall(workspace, group);
        }
    }

    /// <summary>Throws naming the first non-finite value of <paramref name="values"/> ([B, positions, E]).</summary>
    private void ThrowIfNotFinite(ReadOnlySpan<float> values, int positions, string noun, string verb, string paramName)
    {
        int bad = NonFinite.IndexOf(values);
        if (bad < 0) return;
        int e = Config.EmbedDim;
        throw new ArgumentException(string.Create(CultureInfo.InvariantCulture,
            $"{noun} holds {values[bad]} at [batch {bad / e / positions}, position {bad / e % positions}, feature {bad % e}]; the model needs finite values (replace NaN/∞ before {verb})."), paramName);
    }

    /// <summary>Intra-op threads: a call uses the model's worker group if no other call holds it, else runs alone.</summary>
    private WorkerGroup? BeginCall(Workspace workspace)
    {
        var group = _workers is not null && workspace.WorkerCount > 1 && _workers.TryAcquire() ? _workers : null;
        workspace.Scheduler.Begin(group, workspace.WorkerCount);
        return group;
    }

    private static void EndCall(Workspace workspace, WorkerGroup? group)
    {
        BoxTrace.EndCall();
        workspace.Scheduler.End();
        group?.Release();
    }

    private NumericalOverflowException Overflow(ReadOnlySpan<float> output, int index, int batch, int seqLen, OutputMode mode, PassStage stage)
    {
        int h = Config.HiddenSize;
        string where = mode == OutputMode.All
            ? string.Create(CultureInfo.InvariantCulture, $"[batch {index / h / seqLen}, position {index / h % seqLen}, feature {index % h}]")
            : string.Create(CultureInfo.InvariantCulture, $"[batch {index / h}, feature {index % h}]");
        string name = stage.CheckpointName;
        string first = stage.Kind switch
        {
            PassStageKind.Block => string.Create(CultureInfo.InvariantCulture, $"; values first went non-finite in {name} (block {stage.Layer} of {Config.NumLayers})"),
            PassStageKind.None => "",
            _ => $"; values first went non-finite in {name}",
        };
        return new NumericalOverflowException(name, string.Create(CultureInfo.InvariantCulture,
            $"The forward pass produced {output[index]} at output {where} from finite input (batch {batch}, seq_len {seqLen}){first}. The weights are finite but likely extreme: kernels or biases this large overflow float32 (max 3.4e38); check or retrain the checkpoint."));
    }
}
