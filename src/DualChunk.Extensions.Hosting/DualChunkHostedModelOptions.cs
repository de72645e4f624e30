using DualChunk.Core;
using Microsoft.Extensions.Options;

namespace DualChunk.Extensions.Hosting;

/// <summary>
/// One named model of the host: the hosting settings (<see cref="Path"/>, <see cref="WarmUp"/>,
/// <see cref="ReloadOnChange"/>, <see cref="ReloadDelay"/>) and the library's <see cref="Model"/> options, all bound from
/// the configuration section <c>DualChunk:Models:&lt;name&gt;</c> and then by the delegate given to
/// <see cref="DualChunkServiceCollectionExtensions.AddDualChunkModel"/>. Checked when the host starts.
/// </summary>
/// <remarks>
/// The keys are flat: <c>DualChunk:Models:&lt;name&gt;:Path</c> and <c>…:WarmUp</c> bind here,
/// <c>…:ChunkSize</c>, <c>…:MaxDegreeOfParallelism</c>, <c>…:MaxBatch</c>, <c>…:MaxWorkspaceBytes</c> and every other
/// property of <see cref="DualChunkModelOptions"/> bind to <see cref="Model"/> (in code: <c>o.Model.MaxBatch = 8</c>).
/// <see cref="DualChunkModelOptions.MeterFactory"/> is a service, not a setting: when it is not set in code the model
/// records on the host's <c>IMeterFactory</c>. <see cref="DualChunkModelOptions.Name"/> defaults to the registration
/// name.
/// </remarks>
public sealed class DualChunkHostedModelOptions
{
    /// <summary>The weights file: an Edifice safetensors checkpoint or a .dcw file. Required.</summary>
    public string? Path { get; set; }

    /// <summary>
    /// The options the model is loaded with (chunk size, threads, limits, memory mapping, …), bound from the same
    /// section as the hosting keys. <see cref="DualChunkModelOptions.MaxBatch"/> and
    /// <see cref="DualChunkModelOptions.MaxSeqLen"/> also size the warm-up and let a service layer reject larger
    /// requests before allocating anything from them.
    /// </summary>
    public DualChunkModelOptions Model { get; private set; } = new();

    /// <summary>
    /// Run <see cref="DualChunkModel.WarmUp"/> (at [<c>Model.MaxBatch</c> or 1, <c>Model.MaxSeqLen</c> or C]) after
    /// loading, before the model counts as ready (default true), so the first request neither JITs nor allocates.
    /// </summary>
    public bool WarmUp { get; set; } = true;

    /// <summary>
    /// Watch <see cref="Path"/> and load the file again when it changes (default false). The new model is warmed, then
    /// swapped in atomically; calls in flight finish on the old model, which is disposed after the last of them. A
    /// file that fails to load leaves the old model serving and the health check unhealthy with the reason. Replace
    /// the file atomically (write a temporary file, then rename it over the old one). A reloadable .dcw file is read
    /// into memory (<see cref="DualChunkModelOptions.MemoryMap"/> must stay false; start fails otherwise), so rewriting it
    /// in place cannot change the model that serves.
    /// </summary>
    public bool ReloadOnChange { get; set; }

    /// <summary>
    /// How long the file must stay unchanged after a change event before it is loaded again (default 250 ms), so a
    /// file written in several steps is loaded once.
    /// </summary>
    public TimeSpan ReloadDelay { get; set; } = TimeSpan.FromMilliseconds(250);

    /// <summary>The library options a load uses: <see cref="Model"/> with the registration name and the host's meter factory as defaults.</summary>
    internal DualChunkModelOptions ToModelOptions(System.Diagnostics.Metrics.IMeterFactory? meterFactory, string name)
    {
        var options = Model.Clone();
        options.Name ??= name;
        options.MeterFactory ??= meterFactory;
        return options;
    }

    /// <summary>A deep copy (<see cref="Model"/> copied too), so the provider's settings cannot be changed from outside.</summary>
    internal DualChunkHostedModelOptions Clone()
    {
        var copy = (DualChunkHostedModelOptions)MemberwiseClone();
        copy.Model = Model.Clone();
        return copy;
    }
}

/// <summary>
/// Checks <see cref="DualChunkHostedModelOptions"/> when the host starts (<c>ValidateOnStart</c>), naming the
/// configuration key and the fix. A missing or unreadable weights file is not checked here: it is a load failure the
/// model's health check reports, like a file that disappears later.
/// </summary>
internal sealed class DualChunkHostedModelOptionsValidator : IValidateOptions<DualChunkHostedModelOptions>
{
    public ValidateOptionsResult Validate(string? name, DualChunkHostedModelOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        string key = $"{DualChunkServiceCollectionExtensions.ConfigurationSection}:{name}";
        var failures = new List<string>();
        try
        {
            options.Model.Validate(); // the library's own rules, one implementation
        }
        catch (ArgumentOutOfRangeException e)
        {
            failures.Add($"{key}:{e.ParamName} is invalid: {e.Message}");
        }
        if (options.ReloadDelay < TimeSpan.Zero || options.ReloadDelay > TimeSpan.FromMinutes(10))
            failures.Add($"{key}:ReloadDelay is {options.ReloadDelay}; it must be between 0 and 10 minutes.");
        if (options.ReloadOnChange && options.Model.MemoryMap)
            failures.Add($"{key}:MemoryMap is true with {key}:ReloadOnChange: a watched file is rewritten, and a mapped model would read the new bytes (or crash on a shorter file). Set one of them to false.");
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}
