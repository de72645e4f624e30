using System.Diagnostics;
using System.Globalization;
using CommunityToolkit.HighPerformance.Buffers;
using DualChunk.Core;
using DualChunk.Extensions.Hosting;
using DualChunk.Server.Sequences;
using Microsoft.Extensions.Options;
using static DualChunk.Server.Pipeline.InferenceException;

namespace DualChunk.Server.Pipeline;

/// <summary>The server's meter: sequences (the library's own meter <c>DualChunk</c> counts calls and appends).</summary>
public static class ServerMetrics
{
    /// <summary>The meter name: <c>DualChunk.Server</c>.</summary>
    public const string MeterName = "DualChunk.Server";
}

/// <summary>
/// The model a request runs on, leased for the request (a reload cannot dispose it meanwhile), and the limits its
/// input must fit. Dispose to end the lease.
/// </summary>
internal sealed class ModelTarget(string name, DualChunkModelLease lease, InputLimits limits) : IDisposable
{
    private readonly DualChunkModelLease _lease = lease;

    public string Name { get; } = name;

    public DualChunkModel Model => _lease.Model;

    /// <summary>The model version: its load generation (1, then +1 per reload).</summary>
    public string Version => _lease.Generation.ToString(CultureInfo.InvariantCulture);

    public InputLimits Limits { get; } = limits;

    public void Dispose() => _lease.Dispose(); // a second Dispose does nothing
}

/// <summary>
/// The one request pipeline behind every protocol: a front-end is admitted (<see cref="Admit"/>), resolves the model
/// by name (<see cref="Resolve"/>), decodes its body into an <see cref="InferenceRequest"/> against the model's
/// limits, and calls <see cref="InferAsync"/>, which holds a model slot for the call only; every failure is an <see cref="InferenceException"/> whose
/// kind the front-end maps to its protocol's status.
/// </summary>
internal sealed class InferencePipeline(DualChunkModelProvider pool, ServerModels models, IOptions<ServiceOptions> options, RequestGate gate, SequenceTable sequences)
{
    public ServiceOptions Options { get; } = options.Value;

    public ServerModels Models { get; } = models;

    public DualChunkModelProvider Pool { get; } = pool;

    /// <summary>
    /// Admits a request before its body is read (dispose it at the end), or <see cref="InferenceErrorKind.Overloaded"/>
    /// at once; the model slot is taken by <see cref="InferAsync"/>.
    /// </summary>
    public System.Threading.RateLimiting.RateLimitLease Admit() => gate.Admit();

    /// <summary>The registered name as configured, or <see cref="InferenceErrorKind.UnknownModel"/>.</summary>
    public string CanonicalName(string name)
    {
        foreach (string n in Models.Names)
        {
            if (string.Equals(n, name, StringComparison.OrdinalIgnoreCase)) return n;
        }
        string shown = name.Length > 64 ? name[..64] + "…" : name;
        throw new InferenceException(InferenceErrorKind.UnknownModel, $"No model is named '{shown}'; this server serves: {string.Join(", ", Models.Names)}.");
    }

    /// <summary>
    /// Leases the serving model <paramref name="name"/> (any version when <paramref name="version"/> is null or empty;
    /// otherwise only the serving version, its load generation).
    /// </summary>
    public ModelTarget Resolve(string name, string? version)
    {
        name = CanonicalName(name);
        if (!Pool.TryAcquire(name, out var lease))
        {
            var s = Pool.GetStatus(name);
            throw new InferenceException(InferenceErrorKind.NotReady, s.State == DualChunkModelState.Failed
                ? $"Model '{name}' failed to load: {s.Error}"
                : $"Model '{name}' is still loading; retry shortly.");
        }
        if (!string.IsNullOrEmpty(version) && version != lease.Generation.ToString(CultureInfo.InvariantCulture))
        {
            long serving = lease.Generation;
            lease.Dispose();
            string shown = version.Length > 32 ? version[..32] + "…" : version;
            throw new InferenceException(InferenceErrorKind.UnknownModel,
                Inv($"Model '{name}' has no version '{shown}': it serves version {serving} (versions count its loads). Omit the version to use the serving one."));
        }
        var model = lease.Model;
        var hosted = Pool.GetOptions(name);
        var limits = new InputLimits(model.Config.EmbedDim, model.Config.ChunkSize, hosted.Model.MaxBatch ?? int.MaxValue, hosted.Model.MaxSeqLen ?? int.MaxValue);
        return new ModelTarget(name, lease, limits);
    }

    /// <summary>Runs the request: one model call, or appends to its sequence.</summary>
    public async ValueTask<InferenceResult> InferAsync(ModelTarget target, InferenceRequest request, CancellationToken cancellationToken)
    {
        request.Sequence.Validate();
        using var slot = await gate.EnterAsync(cancellationToken).ConfigureAwait(false);
        if (request.Sequence.Id is not null)
            return await sequences.AppendAsync(target, request, cancellationToken).ConfigureAwait(false);
        return Run(target, request, cancellationToken);
    }

    private static InferenceResult Run(ModelTarget target, InferenceRequest request, CancellationToken cancellationToken)
    {
        var model = target.Model;
        var input = request.Input;
        int outLength = model.OutputLength(input.Batch, input.SeqLen, request.Mode);
        var output = MemoryOwner<float>.Allocate(outLength);
        try
        {
            long started = Stopwatch.GetTimestamp();
            model.Run(input.Data, input.Batch, input.SeqLen, output.Span, request.Mode, cancellationToken);
            var elapsed = Stopwatch.GetElapsedTime(started);
            int[] shape = request.Mode == OutputMode.All
                ? [input.Batch, input.SeqLen, model.Config.HiddenSize]
                : [input.Batch, model.Config.HiddenSize];
            return new InferenceResult(output, shape, target.Name, target.Version, elapsed);
        }
        catch (Exception ex) when (ex is ArgumentException or NumericalOverflowException)
        {
            // The model's own checks (a second line behind the decoders'), or finite input that overflows float32
            // inside the model: the client's input either way.
            output.Dispose();
            throw new InferenceException(ex.Message, ex);
        }
        catch
        {
            output.Dispose();
            throw;
        }
    }
}
