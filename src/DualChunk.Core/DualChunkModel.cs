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
/// Dimension letters: B batch, N positions (seq_len), E embed, H hidden, NH heads, D = H / NH,
/// L layers, C chunk size, NC = N / C, F FFN width. Buffers are row-major; a shape comment
/// names each one.
/// <para>
/// <see cref="Dispose"/> may race with calls: calls already running complete normally and the worker threads and
/// the file mapping are released when the last of them returns; calls starting after it throw
/// <see cref="ObjectDisposedException"/>.
/// </para>
/// </remarks>
public sealed unsafe class DualChunkModel : IDisposable
{
    private const int DisposedBit = 1 << 30;

    private readonly bool _hasInputProjection;
    private readonly DenseLayer _inputProjection;   // input_projection [E, H], only when E != H
    private readonly DualChunkBlock[] _blocks;      // dual_chunk_block_1 .. _L
    private readonly LayerNormLayer _finalNorm;     // final_norm
    private readonly MappedFile? _mapping;          // the .dcw mapping γ, β and biases point into, if any
    private readonly WorkerGroup? _workers;         // intra-op helpers, when MaxDegreeOfParallelism > 1
    private readonly Lock _poolLock = new();
    private Workspace[] _pool = new Workspace[4];   // idle workspaces, a stack
    private int _poolCount;
    private long _pooledBytes;
    private int _state;                             // calls in flight, | DisposedBit once disposed
    private readonly DualChunkInstruments _metrics; // the meter factory's instruments, or the process-wide ones

    private DualChunkModel(ModelConfig config, IReadOnlyDictionary<string, Tensor> tensors, bool copy, DualChunkModelOptions options, MappedFile? mapping)
    {
        Config = config;
        MaxDegreeOfParallelism = options.MaxDegreeOfParallelism;
        _metrics = DualChunkMetrics.For(options.MeterFactory);
        _hasInputProjection = config.HasInputProjection;
        if (_hasInputProjection)
            _inputProjection = new DenseLayer(tensors[CheckpointNames.InputKernel], tensors[CheckpointNames.InputBias], GemmEpilogue.Bias, copy);
        _blocks = new DualChunkBlock[config.NumLayers];
        for (int l = 0; l < _blocks.Length; l++)
            _blocks[l] = new DualChunkBlock(config, tensors, l + 1, copy);
        _finalNorm = new LayerNormLayer(tensors[CheckpointNames.FinalGamma], tensors[CheckpointNames.FinalBeta], copy);
        _mapping = mapping;
        if (MaxDegreeOfParallelism > 1)
            _workers = new WorkerGroup(MaxDegreeOfParallelism);
    }

    /// <summary>The model's dimensions, chunk size included.</summary>
    public ModelConfig Config { get; }

    /// <summary>Threads one call may use, the calling thread included (<see cref="DualChunkModelOptions.MaxDegreeOfParallelism"/>).</summary>
    public int MaxDegreeOfParallelism { get; }

    /// <summary>True when the layer-norm parameters and biases are used in place from a memory-mapped .dcw file.</summary>
    public bool IsMemoryMapped => _mapping is not null;

    /// <summary>
    /// Loads an Edifice safetensors checkpoint or a .dcw file (detected by content), single-threaded calls,
    /// a .dcw memory-mapped. For safetensors <paramref name="chunkSize"/> defaults to Edifice's 64; a .dcw file
    /// carries its own, and a different <paramref name="chunkSize"/> is an error.
    /// </summary>
    /// <exception cref="ModelFormatException">The file is malformed or is not a DualChunk model.</exception>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="ArgumentException">The path is empty, or <paramref name="chunkSize"/> disagrees with a .dcw file's.</exception>
    public static DualChunkModel Load(string path, int? chunkSize = null)
        => Load(path, new DualChunkModelOptions { ChunkSize = chunkSize });

    /// <summary>Loads a safetensors checkpoint or a .dcw file with <paramref name="options"/>.</summary>
    /// <exception cref="ModelFormatException">The file is malformed or is not a DualChunk model.</exception>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="ArgumentException">The path is empty, an option is out of range, or the chunk size disagrees with a .dcw file's.</exception>
    public static DualChunkModel Load(string path, DualChunkModelOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var (config, tensors, _, mapping) = WeightsLoader.Load(path, options.ChunkSize, options.MemoryMap);
        try
        {
            return new DualChunkModel(config, tensors, copy: false, options, mapping);
        }
        catch
        {
            mapping?.Dispose();
            throw;
        }
    }

    /// <summary>Builds a model from named tensors, validating them against <paramref name="config"/>.</summary>
    /// <exception cref="ModelFormatException">A tensor is missing, unexpected, mis-shaped or not finite.</exception>
    public static DualChunkModel FromTensors(IReadOnlyDictionary<string, Tensor> tensors, ModelConfig config)
        => FromTensors(tensors, config, new DualChunkModelOptions());

    /// <summary>
    /// Builds a model from named tensors with <paramref name="options"/> (its <see cref="DualChunkModelOptions.ChunkSize"/>
    /// and <see cref="DualChunkModelOptions.MemoryMap"/> are ignored: <paramref name="config"/> has the chunk size).
    /// The tensors' data is copied (packed or cloned): later changes to them do not affect the model.
    /// </summary>
    /// <exception cref="ModelFormatException">A tensor is missing, unexpected, mis-shaped or not finite.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range.</exception>
    public static DualChunkModel FromTensors(IReadOnlyDictionary<string, Tensor> tensors, ModelConfig config, DualChunkModelOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        TensorSetValidator.Validate(tensors, config);
        return new DualChunkModel(config, tensors, copy: true, options, null);
    }

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
    /// A caller-owned workspace for calls of up to <paramref name="maxBatch"/> × <paramref name="maxSeqLen"/>, with one
    /// slice per thread of <see cref="MaxDegreeOfParallelism"/>. Use it from one call at a time.
    /// </summary>
    public Workspace CreateWorkspace(int maxBatch, int maxSeqLen) => new(Config, maxBatch, maxSeqLen, MaxDegreeOfParallelism);

    /// <summary>Bytes the model's intra-op helper threads have allocated so far (0 without helpers; tests).</summary>
    internal long HelperAllocatedBytes => _workers?.HelperAllocatedBytes ?? 0;

    /// <summary>Bytes held by the idle workspaces in this model's pool.</summary>
    public long PooledWorkspaceBytes
    {
        get
        {
            lock (_poolLock) return _pooledBytes;
        }
    }

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
        try
        {
            Enter();
            try
            {
                ValidateShape(input, batch, seqLen);
                var workspace = Rent(batch, seqLen);
                try
                {
                    RunCore(input, batch, seqLen, output, mode, workspace, cancellationToken);
                }
                finally
                {
                    Return(workspace);
                }
            }
            finally
            {
                Exit();
            }
        }
        catch (Exception ex) when (_metrics.RecordFailure(mode, start, ex))
        {
            throw; // never reached: the filter records and declines
        }
        _metrics.RecordCall(mode, start);
    }

    /// <summary>Runs the model with a caller-owned workspace (one call at a time per workspace).</summary>
    /// <exception cref="ArgumentException">A shape does not match, N is not a multiple of C, the input holds NaN/∞, or the workspace does not fit.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled (checked between layers).</exception>
    /// <exception cref="ObjectDisposedException">The model was disposed.</exception>
    public void Run(ReadOnlySpan<float> input, int batch, int seqLen, Span<float> output, OutputMode mode, Workspace workspace, CancellationToken cancellationToken = default)
    {
        long start = Stopwatch.GetTimestamp();
        ArgumentNullException.ThrowIfNull(workspace);
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
        catch (Exception ex) when (_metrics.RecordFailure(mode, start, ex))
        {
            throw; // never reached: the filter records and declines
        }
        _metrics.RecordCall(mode, start);
    }

    /// <summary>
    /// Runs the model on a dense tensor: <paramref name="input"/> [B, N, E] (or [N, E] for one sequence) into
    /// <paramref name="output"/>, dense, shaped [B, H] / [B, N, H] (or [H] / [N, H] for an input without a batch
    /// dimension). Same pooling, cancellation and errors as the span overload; allocation-free.
    /// </summary>
    /// <exception cref="ArgumentException">A tensor is not dense, has the wrong rank or lengths, or the input holds NaN/∞.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    /// <exception cref="ObjectDisposedException">The model was disposed.</exception>
    public void Run(ReadOnlyTensorSpan<float> input, TensorSpan<float> output, OutputMode mode = OutputMode.LastTimestep, CancellationToken cancellationToken = default)
    {
        var (batch, seqLen, batched) = InputShape(input.Lengths);
        Span<nint> expected = stackalloc nint[3];
        int rank = OutputShape(batch, seqLen, batched, mode, expected);
        if (!output.Lengths.SequenceEqual(expected[..rank]))
            throw new ArgumentException($"Output has shape [{string.Join(", ", output.Lengths.ToArray())}]; mode {mode} needs [{string.Join(", ", expected[..rank].ToArray())}].", nameof(output));
        Span<nint> zeros = stackalloc nint[3];
        zeros.Clear();
        if (!input.IsDense || !input.TryGetSpan(zeros[..input.Rank], checked((int)input.FlattenedLength), out ReadOnlySpan<float> inputSpan))
            throw new ArgumentException("The input tensor must be dense (contiguous, row-major); copy it with ToDenseTensor() first.", nameof(input));
        if (!output.IsDense || !output.TryGetSpan(zeros[..output.Rank], checked((int)output.FlattenedLength), out Span<float> outputSpan))
            throw new ArgumentException("The output tensor must be dense (contiguous, row-major).", nameof(output));
        Run(inputSpan, batch, seqLen, outputSpan, mode, cancellationToken);
    }

    /// <summary>
    /// Runs the model on a dense tensor [B, N, E] (or [N, E]) and returns a new tensor [B, H] / [B, N, H]
    /// (or [H] / [N, H]); allocates the result.
    /// </summary>
    /// <exception cref="ArgumentException">The tensor is not dense, has the wrong rank or lengths, or holds NaN/∞.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    /// <exception cref="ObjectDisposedException">The model was disposed.</exception>
    public Tensor<float> Run(Tensor<float> input, OutputMode mode = OutputMode.LastTimestep, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(input);
        var (batch, seqLen, batched) = InputShape(input.Lengths);
        Span<nint> lengths = stackalloc nint[3];
        int rank = OutputShape(batch, seqLen, batched, mode, lengths);
        var output = System.Numerics.Tensors.Tensor.Create(new float[OutputLength(batch, seqLen, mode)], lengths[..rank]);
        Run(input.AsReadOnlyTensorSpan(), output.AsTensorSpan(), mode, cancellationToken);
        return output;
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
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxBatch);
        Config.ValidateSequenceLength(n);
        Enter();
        try
        {
            Return(Rent(maxBatch, n));
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
        lock (_poolLock)
        {
            _metrics.AddWorkspaceBytes(-_pooledBytes);
            _pooledBytes = 0;
            Array.Clear(_pool);
            _poolCount = 0;
        }
    }

    /// <summary>An idle workspace that fits, or a new one (replacing the largest idle one, so the pool stays small).</summary>
    private Workspace Rent(int batch, int seqLen)
    {
        int maxBatch = batch, maxSeqLen = seqLen;
        lock (_poolLock)
        {
            for (int i = _poolCount - 1; i >= 0; i--)
            {
                var ws = _pool[i];
                if (ws.Fits(batch, seqLen))
                {
                    _pool[i] = _pool[--_poolCount];
                    _pool[_poolCount] = null!;
                    _pooledBytes -= ws.Bytes;
                    _metrics.AddWorkspaceBytes(-ws.Bytes);
                    return ws;
                }
            }
            if (_poolCount > 0)
            {
                int largest = 0;
                for (int i = 1; i < _poolCount; i++)
                    if (_pool[i].Bytes > _pool[largest].Bytes) largest = i;
                var dropped = _pool[largest];
                _pool[largest] = _pool[--_poolCount];
                _pool[_poolCount] = null!;
                _pooledBytes -= dropped.Bytes;
                _metrics.AddWorkspaceBytes(-dropped.Bytes);
                maxBatch = Math.Max(batch, dropped.MaxBatch);
                maxSeqLen = Math.Max(seqLen, dropped.MaxSeqLen);
            }
        }
        return CreateWorkspace(maxBatch, maxSeqLen);
    }

    private void Return(Workspace ws)
    {
        lock (_poolLock)
        {
            if (_poolCount == _pool.Length)
                Array.Resize(ref _pool, _pool.Length * 2);
            _pool[_poolCount++] = ws;
            _pooledBytes += ws.Bytes;
            _metrics.AddWorkspaceBytes(ws.Bytes);
        }
    }

    private (int Batch, int SeqLen, bool Batched) InputShape(ReadOnlySpan<nint> lengths)
    {
        if (lengths.Length is 2 or 3 && lengths[^1] != Config.EmbedDim)
            throw new ArgumentException($"The input tensor's last dimension is {lengths[^1]}; the model's embed size E is {Config.EmbedDim}.", nameof(lengths));
        if (lengths.Length == 3)
            return (checked((int)lengths[0]), checked((int)lengths[1]), true);
        if (lengths.Length == 2)
            return (1, checked((int)lengths[0]), false);
        throw new ArgumentException($"The input tensor has rank {lengths.Length}; it must be [B, N, E] or [N, E].", nameof(lengths));
    }

    private int OutputShape(int batch, int seqLen, bool batched, OutputMode mode, Span<nint> lengths)
    {
        int rank = 0;
        if (batched) lengths[rank++] = batch;
        if (mode == OutputMode.All) lengths[rank++] = seqLen;
        lengths[rank++] = Config.HiddenSize;
        return rank;
    }

    private void ValidateShape(ReadOnlySpan<float> input, int batch, int seqLen)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batch);
        Config.ValidateSequenceLength(seqLen);
        long expected = (long)batch * seqLen * Config.EmbedDim;
        if (input.Length != expected)
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture,
                $"Input has {input.Length} floats; [batch {batch}, seq_len {seqLen}, embed {Config.EmbedDim}] needs {expected}."), nameof(input));
    }

    /// <summary>Checks the output and the values, then runs <see cref="Forward"/> with the caller's buffers pinned.</summary>
    private void RunCore(ReadOnlySpan<float> input, int batch, int seqLen, Span<float> output, OutputMode mode, Workspace workspace, CancellationToken cancellationToken)
    {
        if (mode is not (OutputMode.LastTimestep or OutputMode.All or OutputMode.MeanPool))
            throw new ArgumentOutOfRangeException(nameof(mode), mode, "Unknown output mode.");
        int expectedOut = OutputLength(batch, seqLen, mode);
        if (output.Length != expectedOut)
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture,
                $"Output has {output.Length} floats; mode {mode} with batch {batch}, seq_len {seqLen}, hidden {Config.HiddenSize} needs {expectedOut}."), nameof(output));
        int bad = NonFinite.IndexOf(input);
        if (bad >= 0)
        {
            int e = Config.EmbedDim;
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture,
                $"Input holds {input[bad]} at [batch {bad / e / seqLen}, position {bad / e % seqLen}, feature {bad % e}]; the model needs finite values (replace NaN/∞ before calling)."), nameof(input));
        }
        cancellationToken.ThrowIfCancellationRequested();
        // Intra-op threads: this call uses the model's worker group if no other call holds it, else runs alone.
        var group = _workers is not null && workspace.Workers > 1 && _workers.TryAcquire() ? _workers : null;
        workspace.Phases.Begin(group);
        try
        {
            fixed (float* pinnedInput = input)   // the phases address the caller's buffers by pointer
            fixed (float* pinnedOutput = output)
                Forward(input, batch, seqLen, output, mode, workspace, cancellationToken);
        }
        finally
        {
            workspace.Phases.End();
            group?.Release();
        }
    }

    /// <summary>The forward pass, top to bottom (SPEC.md "Forward pass").</summary>
    /// <remarks>
    /// <c>run</c> performs each operation either on this thread or split by data partition over the model's workers
    /// (see <see cref="PhaseRunner"/>); either way every element gets the same arithmetic, so the bits do not depend
    /// on the thread count. The token is checked between layers.
    /// </remarks>
    private void Forward(ReadOnlySpan<float> input, int batch, int seqLen, Span<float> output, OutputMode mode, Workspace ws, CancellationToken ct)
    {
        var run = ws.Phases;
        int h = Config.HiddenSize, c = Config.ChunkSize, rows = batch * seqLen, chunkRows = rows / c;
        Span<float> x = ws.X[..(rows * h)];                        // [B·N, H]   residual stream
        Span<float> normed = ws.Normed[..(rows * h)];              // [B·N, H]   layer-norm output
        Span<float> inter = ws.Inter[..(chunkRows * h)];           // [B·NC, H]  inter-chunk attention

        // input_projection: x = input · W_in + b_in, or the input itself when E == H.
        if (_hasInputProjection)
            run.Dense(_inputProjection, input, rows, Config.EmbedDim, x, h);
        else
            input.CopyTo(x);

        // For last_timestep only position N-1 of the last block's output is read: that block needs the summaries of
        // every chunk, but queries, keys and values of the last chunk only, and runs the rest for one row per batch element.
        int fullBlocks = mode == OutputMode.LastTimestep ? _blocks.Length - 1 : _blocks.Length;
        for (int l = 0; l < fullBlocks; l++)
        {
            ct.ThrowIfCancellationRequested();
            ref readonly var block = ref _blocks[l];
            // h = LN(x); inter = causal attention over the chunk summaries.
            Summaries(run, block, x, normed, batch, seqLen, ws, lastChunkOnly: false);

            // Per group of whole chunks: qkv = h · W_qkv + b; intra-chunk attention blended with inter;
            // x += attn · W_out + b_out; x += GELU(LN(x) · W_up + b_up) · W_down + b_down.
            run.GroupRows(block, x, normed, inter, rows);
        }
        ct.ThrowIfCancellationRequested();

        switch (mode)
        {
            case OutputMode.All:                                 // [B, N, H]
                run.LayerNorm(_finalNorm, x, rows, output);
                break;
            case OutputMode.MeanPool:                            // [B, H]
                run.LayerNorm(_finalNorm, x, rows, normed);
                RowMean.Run(normed, rows, h, h, seqLen, output, h);
                break;
            default:                                             // [B, H]: position N-1 of each batch element
            {
                ref readonly var block = ref _blocks[^1];
                Summaries(run, block, x, normed, batch, seqLen, ws, lastChunkOnly: true);

                Span<float> qkv = ws.GroupQkv(0)[..(c * 3 * h)];        // [C, 3H] the last chunk of one batch element
                Span<float> attn = ws.GroupAttn(0)[..(c * h)];          // [C, H]  its attention (row C-1 written)
                Span<float> lastAttn = ws.LastAttn[..(batch * h)];      // [B, H]  attention at position N-1
                Span<float> last = ws.Last[..(batch * h)];              // [B, H]  residual at position N-1
                int chunks = seqLen / c;
                for (int b = 0; b < batch; b++)
                {
                    int chunkRow = b * seqLen + seqLen - c;              // first row of b's last chunk
                    var hChunk = normed.Slice(chunkRow * h, c * h);
                    if (h % PackedMatrix.PanelWidth == 0)
                    {
                        // Keys and values of the chunk, the query of its last row only (a last-row attention call
                        // reads no other query).
                        run.Dense(block.Qkv, hChunk, c, h, qkv, 3 * h, h, 2 * h);
                        run.Dense(block.Qkv, hChunk[((c - 1) * h)..], 1, h, qkv[((c - 1) * 3 * h)..], 3 * h, 0, h);
                    }
                    else
                    {
                        run.Dense(block.Qkv, hChunk, c, h, qkv, 3 * h);  // column ranges start on panel boundaries only
                    }
                    run.IntraAttention(block, qkv, 1, inter.Slice((b * chunks + chunks - 1) * h, h), attn, lastRowOnly: true);
                    attn.Slice((c - 1) * h, h).CopyTo(lastAttn.Slice(b * h, h));
                    x.Slice((chunkRow + c - 1) * h, h).CopyTo(last.Slice(b * h, h));
                }
                run.Dense(block.AttnOut, lastAttn, batch, h, last, h);  // x += attn · W_out + b_out
                run.Ffn(block, last, ws.LastNormed, batch);
                run.LayerNorm(_finalNorm, last, batch, output);
                break;
            }
        }
    }

    /// <summary>
    /// The first half of a block's attention: <paramref name="normed"/> = LN(x) [B·N, H]; the chunk summaries
    /// q̄|k̄|v̄ = mean over each chunk of (h · W_qkv + b) = h̄ · W_qkv + b [B·NC, 3H] (InterChunkAttention remarks);
    /// then causal attention over them into <c>ws.Inter</c> [B·NC, H] (only each element's last chunk when
    /// <paramref name="lastChunkOnly"/>).
    /// </summary>
    private static void Summaries(PhaseRunner run, in DualChunkBlock block, Span<float> x, Span<float> normed, int batch, int seqLen, Workspace ws, bool lastChunkOnly)
    {
        int h = ws.Config.HiddenSize, rows = batch * seqLen, chunkRows = rows / ws.Config.ChunkSize;
        Span<float> chunkMeans = ws.ChunkMeans[..(chunkRows * h)];     // [B·NC, H]
        Span<float> summaries = ws.Summaries[..(chunkRows * 3 * h)];   // [B·NC, 3H] q̄ | k̄ | v̄
        run.LayerNorm(block.AttnNorm, x, rows, normed);
        run.ChunkMeans(block.Inter, normed, rows, chunkMeans);
        run.Dense(block.Qkv, chunkMeans, chunkRows, h, summaries, 3 * h);
        run.InterAttention(block.Inter, summaries, batch, seqLen, ws.Inter[..(chunkRows * h)], lastChunkOnly);
    }
}
