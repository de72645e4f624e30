using System.Diagnostics.CodeAnalysis;
using System.Diagnostics.Metrics;
using DualChunk.Core;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace DualChunk.Extensions.Hosting;

/// <summary>Where a hosted model is in its life.</summary>
public enum DualChunkModelState
{
    /// <summary>The first load (and warm-up) has not finished.</summary>
    Loading,

    /// <summary>A model serves. <see cref="DualChunkModelStatus.Error"/> is set when a later reload failed.</summary>
    Ready,

    /// <summary>The first load failed and nothing serves; <see cref="DualChunkModelStatus.Error"/> says why.</summary>
    Failed,
}

/// <summary>A snapshot of one hosted model's state.</summary>
/// <param name="Name">The model's name.</param>
/// <param name="State">Loading, Ready or Failed.</param>
/// <param name="Error">Why the last load failed (null when it succeeded).</param>
/// <param name="Generation">How many loads have succeeded: 1 after the first, +1 per successful reload.</param>
/// <param name="LoadedAt">When the serving model was loaded.</param>
/// <param name="Path">The weights file.</param>
/// <param name="Config">The serving model's dimensions.</param>
public sealed record DualChunkModelStatus(string Name, DualChunkModelState State, string? Error, long Generation,
    DateTimeOffset? LoadedAt, string? Path, ModelConfig? Config);

/// <summary>
/// Nothing serves under the model's name yet (still loading) or any more (the load failed): answer "unavailable"
/// (e.g. HTTP 503), not "bad request".
/// </summary>
public sealed class DualChunkModelUnavailableException : InvalidOperationException
{
    /// <summary>Creates the exception with a message.</summary>
    public DualChunkModelUnavailableException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and a cause.</summary>
    public DualChunkModelUnavailableException(string message, Exception innerException) : base(message, innerException) { }

    /// <summary>Creates the exception with a default message.</summary>
    public DualChunkModelUnavailableException() : base("The DualChunk model is not available.") { }
}

/// <summary>
/// The use of one model by one caller: the model stays alive (not disposed by a reload) until the lease is disposed.
/// Dispose it when the call is done, e.g. with <c>using</c>; disposing it again does nothing.
/// </summary>
public sealed class DualChunkModelLease : IDisposable
{
    private ModelHandle? _handle;

    internal DualChunkModelLease(ModelHandle handle)
    {
        _handle = handle;
        Model = handle.Model;
        Generation = handle.Generation;
    }

    /// <summary>The model (immutable, safe to call from any thread while the lease is held).</summary>
    /// <exception cref="ObjectDisposedException">The lease was disposed.</exception>
    public DualChunkModel Model
    {
        get
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _handle) is null, this);
            return field;
        }
    }

    /// <summary>The load generation of <see cref="Model"/> (see <see cref="DualChunkModelStatus.Generation"/>).</summary>
    public long Generation { get; }

    /// <summary>Ends the lease (once, however often it is called); the last lease of a replaced model disposes it.</summary>
    public void Dispose() => Interlocked.Exchange(ref _handle, null)?.Release();
}

/// <summary>A loaded model and its users: the provider holds one reference while it serves, each lease one more.</summary>
internal sealed class ModelHandle(DualChunkModel model, long generation)
{
    private int _refs = 1;

    public DualChunkModel Model { get; } = model;

    public long Generation { get; } = generation;

    /// <summary>True while a lease or the provider holds the model (tests).</summary>
    public bool IsAlive => Volatile.Read(ref _refs) > 0;

    public bool TryAcquire()
    {
        int refs = Volatile.Read(ref _refs);
        while (refs > 0)
        {
            int seen = Interlocked.CompareExchange(ref _refs, refs + 1, refs);
            if (seen == refs) return true;
            refs = seen;
        }
        return false; // retired and released: the caller reads the new current handle
    }

    public void Release()
    {
        if (Interlocked.Decrement(ref _refs) == 0)
            Model.Dispose();
    }
}

/// <summary>
/// The host's named DualChunk models (registered with
/// <see cref="DualChunkServiceCollectionExtensions.AddDualChunkModel"/>): loads and warms them when the host starts,
/// reloads a model whose file changes when asked to, and lends them out by <see cref="Acquire"/>.
/// </summary>
public sealed partial class DualChunkModelProvider : IDisposable
{
    private readonly Dictionary<string, Entry> _entries = new(StringComparer.OrdinalIgnoreCase);
    private readonly IMeterFactory? _meterFactory;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stopping = new();
    private readonly TaskCompletionSource _loaded = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task? _loading;
    private int _disposed;

    /// <summary>Creates the provider (done by dependency injection).</summary>
    internal DualChunkModelProvider(IEnumerable<DualChunkModelRegistration> registrations, IOptionsMonitor<DualChunkHostedModelOptions> options,
        IMeterFactory? meterFactory = null, ILogger<DualChunkModelProvider>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(registrations);
        ArgumentNullException.ThrowIfNull(options);
        _meterFactory = meterFactory;
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        foreach (var r in registrations)
        {
            var o = options.Get(r.Name).Clone();
            _entries[r.Name] = new Entry(r.Name, o);
        }
        Names = [.. _entries.Keys];
    }

    /// <summary>The registered model names.</summary>
    public IReadOnlyList<string> Names { get; }

    /// <summary>Completes once every model's first load has finished, successfully or not.</summary>
    public Task Loaded => _loaded.Task;

    /// <summary>
    /// Raised after every change of a model's state (loaded, failed, reloaded, reload failed), on the thread that
    /// loaded it. Handlers must be quick and must not throw.
    /// </summary>
    public event Action<DualChunkModelStatus>? StatusChanged;

    /// <summary>The options model <paramref name="name"/> was loaded with (limits included), as bound at start.</summary>
    /// <exception cref="KeyNotFoundException">No model has that name.</exception>
    public DualChunkHostedModelOptions GetOptions(string name) => Get(name).Options.Clone();

    /// <summary>A snapshot of model <paramref name="name"/>'s state.</summary>
    /// <exception cref="KeyNotFoundException">No model has that name.</exception>
    public DualChunkModelStatus GetStatus(string name) => Get(name).Status;

    /// <summary>True when every model serves and no reload failed.</summary>
    public bool IsReady
    {
        get
        {
            foreach (var e in _entries.Values)
                if (e.Status is not { State: DualChunkModelState.Ready, Error: null }) return false;
            return true;
        }
    }

    /// <summary>
    /// Lends out the serving model <paramref name="name"/>. Dispose the lease when the call is done: a reload
    /// disposes the old model only after its last lease.
    /// </summary>
    /// <exception cref="KeyNotFoundException">No model has that name.</exception>
    /// <exception cref="DualChunkModelUnavailableException">The model is still loading, or its load failed.</exception>
    public DualChunkModelLease Acquire(string name)
    {
        var entry = Get(name);
        if (TryAcquire(entry, out var lease)) return lease;
        var s = entry.Status;
        throw new DualChunkModelUnavailableException(s.State == DualChunkModelState.Failed
            ? $"Model '{name}' failed to load: {s.Error}"
            : $"Model '{name}' is still loading; retry shortly.");
    }

    /// <summary>Lends out the serving model <paramref name="name"/> if one serves; see <see cref="Acquire"/>.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="name"/> is null.</exception>
    public bool TryAcquire(string name, [NotNullWhen(true)] out DualChunkModelLease? lease)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (_entries.TryGetValue(name, out var entry)) return TryAcquire(entry, out lease);
        lease = null;
        return false;
    }

    private static bool TryAcquire(Entry entry, [NotNullWhen(true)] out DualChunkModelLease? lease)
    {
        while (true)
        {
            var handle = Volatile.Read(ref entry.Current);
            if (handle is null) break;
            if (handle.TryAcquire())
            {
                lease = new DualChunkModelLease(handle);
                return true;
            }
            // Lost a race with a swap: the retired handle's last reference went; read the new one.
        }
        lease = null;
        return false;
    }

    /// <summary>The handle serving <paramref name="name"/> (tests).</summary>
    internal ModelHandle? CurrentHandle(string name) => Volatile.Read(ref Get(name).Current);

    /// <summary>Starts the watchers and the first loads on a background thread; idempotent.</summary>
    internal void StartLoading()
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (Interlocked.CompareExchange(ref _loading, Task.CompletedTask, null) is not null) return;
        foreach (var e in _entries.Values)
        {
            if (e.Options.ReloadOnChange && !string.IsNullOrWhiteSpace(e.Options.Path))
                StartWatching(e);
        }
        _loading = Task.Factory.StartNew(LoadAll, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
    }

    private void LoadAll()
    {
        try
        {
            foreach (var e in _entries.Values)
            {
                if (_stopping.IsCancellationRequested) break;
                lock (e.Gate) Load(e, initial: true);
            }
        }
        finally
        {
            _loaded.TrySetResult();
        }
    }

    /// <summary>Loads (and warms) the entry's file; swaps it in on success. Under <c>entry.Gate</c>.</summary>
    private void Load(Entry e, bool initial)
    {
        DualChunkModel? model = null;
        try
        {
            // The values were checked at start (DualChunkHostedModelOptionsValidator); a missing file is a load failure.
            if (string.IsNullOrWhiteSpace(e.Options.Path))
                throw new InvalidOperationException(
                    $"Model '{e.Name}' has no weights file: set {DualChunkServiceCollectionExtensions.ConfigurationSection}:{e.Name}:Path (a .safetensors or .dcw file).");
            e.LastAttempt = FileIdentity(e.Options.Path!);
            model = DualChunkModel.Load(e.Options.Path!, e.Options.ToModelOptions(_meterFactory, e.Name));
            if (e.Options.WarmUp)
            {
                var (batch, seqLen) = WarmUpShape(e.Name, e.Options, model.Config);
                model.WarmUp(batch, seqLen, _stopping.Token);
            }
            else
            {
                _ = WarmUpShape(e.Name, e.Options, model.Config); // the limits must admit some request
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            model?.Dispose();
            string reason = Describe(ex);
            var old = e.Status;
            bool serving = Volatile.Read(ref e.Current) is not null;
            e.Status = old with { State = serving ? DualChunkModelState.Ready : DualChunkModelState.Failed, Error = reason, Path = e.Options.Path };
            if (serving) LogReloadFailed(_logger, e.Name, reason, old.Generation);
            else LogLoadFailed(_logger, e.Name, reason);
            StatusChanged?.Invoke(e.Status);
            return;
        }

        long generation = e.Status.Generation + 1;
        var fresh = new ModelHandle(model, generation);
        var previous = Interlocked.Exchange(ref e.Current, fresh);
        e.Status = new DualChunkModelStatus(e.Name, DualChunkModelState.Ready, null, generation, DateTimeOffset.UtcNow, e.Options.Path, model.Config);
        previous?.Release(); // disposed now, or by the last lease still running on it
        if (Volatile.Read(ref _disposed) != 0)
        {
            // Disposed while loading: do not keep the model alive.
            Interlocked.Exchange(ref e.Current, null)?.Release();
        }
        LogLoaded(_logger, e.Name, e.Options.Path!, model.Config.ToString(), generation, initial ? "loaded" : "reloaded");
        StatusChanged?.Invoke(e.Status);
    }

    private static (int Batch, int SeqLen) WarmUpShape(string name, DualChunkHostedModelOptions o, ModelConfig config)
    {
        int c = config.ChunkSize;
        if (o.Model.MaxSeqLen is { } max && max < c)
            throw new InvalidOperationException(
                $"{DualChunkServiceCollectionExtensions.ConfigurationSection}:{name}:MaxSeqLen is {max}, below the model's chunk size {c}: no request could be served. Set it to a multiple of {c}.");
        return (o.Model.MaxBatch ?? 1, o.Model.MaxSeqLen is { } m ? m / c * c : c);
    }

    private static string Describe(Exception ex) => ex switch
    {
        FileNotFoundException f => $"{f.Message} Check the Path setting.",
        _ => ex.Message,
    };

    private static (DateTime, long)? FileIdentity(string path)
    {
        try
        {
            var info = new FileInfo(path);
            return info.Exists ? (info.LastWriteTimeUtc, info.Length) : null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            return null;
        }
    }

    private void StartWatching(Entry e)
    {
        string full = System.IO.Path.GetFullPath(e.Options.Path!);
        string? dir = System.IO.Path.GetDirectoryName(full);
        if (dir is null || !Directory.Exists(dir))
        {
            LogWatchFailed(_logger, e.Name, full, "its directory does not exist");
            return;
        }
        e.ReloadTimer = new Timer(_ => OnReloadTimer(e), null, Timeout.Infinite, Timeout.Infinite);
        var watcher = new FileSystemWatcher(dir, System.IO.Path.GetFileName(full))
        {
            NotifyFilter = NotifyFilters.LastWrite | NotifyFilters.Size | NotifyFilters.FileName | NotifyFilters.CreationTime,
        };
        FileSystemEventHandler changed = (_, _) => ScheduleReload(e);
        watcher.Changed += changed;
        watcher.Created += changed;
        watcher.Renamed += (_, _) => ScheduleReload(e);
        watcher.Error += (_, args) => LogWatchFailed(_logger, e.Name, full, args.GetException().Message);
        watcher.EnableRaisingEvents = true;
        e.Watcher = watcher;
    }

    private void ScheduleReload(Entry e)
    {
        if (_stopping.IsCancellationRequested) return;
        try
        {
            e.ReloadTimer?.Change(e.Options.ReloadDelay, Timeout.InfiniteTimeSpan);
        }
        catch (ObjectDisposedException)
        {
            // stopping
        }
    }

    private void OnReloadTimer(Entry e)
    {
        // Load only after the first load finished (the initial load reads the file anyway), and only for a new file.
        if (!_loaded.Task.IsCompleted)
        {
            ScheduleReload(e);
            return;
        }
        lock (e.Gate)
        {
            if (_stopping.IsCancellationRequested || Volatile.Read(ref _disposed) != 0) return;
            var identity = FileIdentity(e.Options.Path!);
            if (identity is null || identity == e.LastAttempt) return;
            Load(e, initial: false);
        }
    }

    /// <summary>Stops watching and waits (bounded by <paramref name="cancellationToken"/>) for a load in progress.</summary>
    internal async Task StopAsync(CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _disposed) == 0)
            await _stopping.CancelAsync().ConfigureAwait(false);
        foreach (var e in _entries.Values)
            e.Watcher?.Dispose();
        if (_loading is { } loading)
            await loading.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Stops watching and releases every model: calls in flight finish, then each model is disposed by its last lease.
    /// </summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _stopping.Cancel();
        foreach (var e in _entries.Values)
        {
            e.Watcher?.Dispose();
            e.ReloadTimer?.Dispose();
            lock (e.Gate)
                Interlocked.Exchange(ref e.Current, null)?.Release();
        }
        // _stopping is not disposed: it has no timer or registrations, and a late StopAsync may still read it.
    }

    private Entry Get(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return _entries.TryGetValue(name, out var e)
            ? e
            : throw new KeyNotFoundException($"No DualChunk model is named '{name}'; registered: {string.Join(", ", _entries.Keys)}.");
    }

    private sealed class Entry(string name, DualChunkHostedModelOptions options)
    {
        public readonly object Gate = new();
        public ModelHandle? Current;
        private DualChunkModelStatus _status = new(name, DualChunkModelState.Loading, null, 0, null, options.Path, null);

        public string Name { get; } = name;

        public DualChunkHostedModelOptions Options { get; } = options;

        public DualChunkModelStatus Status
        {
            get => Volatile.Read(ref _status);
            set => Volatile.Write(ref _status, value);
        }

        public (DateTime, long)? LastAttempt { get; set; }

        public FileSystemWatcher? Watcher { get; set; }

        public Timer? ReloadTimer { get; set; }
    }

    [LoggerMessage(1, LogLevel.Information, "DualChunk model '{Name}' {What} from {Path}: {Config} (generation {Generation}).")]
    private static partial void LogLoaded(ILogger logger, string name, string path, string config, long generation, string what);

    [LoggerMessage(2, LogLevel.Error, "DualChunk model '{Name}' failed to load: {Reason}")]
    private static partial void LogLoadFailed(ILogger logger, string name, string reason);

    [LoggerMessage(3, LogLevel.Error, "DualChunk model '{Name}': reload failed: {Reason} Generation {Generation} keeps serving.")]
    private static partial void LogReloadFailed(ILogger logger, string name, string reason, long generation);

    [LoggerMessage(4, LogLevel.Warning, "DualChunk model '{Name}': cannot watch {Path} for changes: {Reason}")]
    private static partial void LogWatchFailed(ILogger logger, string name, string path, string reason);
}
