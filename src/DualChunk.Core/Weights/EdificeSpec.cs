using System.Globalization;

namespace DualChunk.Core;

/// <summary>
/// The build spec Edifice stores in a <c>.nx</c> checkpoint's metadata (<c>"__edifice_spec__"</c>, from
/// <c>Edifice.build_with_spec</c>): the architecture and every build option. When a file has one it is
/// authoritative: the architecture, chunk size and dimensions come from it and are checked against the tensors.
/// </summary>
/// <param name="Arch">The architecture atom, e.g. <c>dual_chunk_attention</c> or <c>decoder_only</c>.</param>
/// <param name="BuildOptions">The build options in stored order (Edifice prepends the aliases obs_size, input_dim, input_size).</param>
/// <param name="CreatedAt">The ISO 8601 creation time, if stored.</param>
/// <param name="EdificeVersion">Edifice's version, if stored.</param>
/// <param name="NxVersion">Nx's version, if stored.</param>
internal sealed record EdificeSpec(string Arch, IReadOnlyList<(string Key, EtfTerm Value)> BuildOptions,
    string? CreatedAt, string? EdificeVersion, string? NxVersion)
{
    /// <summary>The metadata key Edifice stores the spec under.</summary>
    public const string MetadataKey = "__edifice_spec__";

    /// <summary>Largest chunk size a spec may state: anything above is a corrupt field, not a model.</summary>
    public const int MaxChunkSize = 1 << 20;

    // Edifice's defaults for the options a spec leaves out (DualChunk.build and DecoderOnly share them).
    private const int DefaultHiddenSize = 256, DefaultNumHeads = 8, DefaultNumLayers = 4, DefaultChunkSize = 64;

    /// <summary>The spec in a checkpoint's metadata map, or null when it holds none.</summary>
    public static EdificeSpec? FromMetadata(EtfTerm metadata)
    {
        if (metadata.Kind != EtfKind.Map)
            throw new ModelFormatException($"the metadata is {metadata}, not a map.");
        if (metadata.Get(MetadataKey) is not { } spec) return null;
        if (spec.Kind != EtfKind.Map)
            throw new ModelFormatException($"the metadata's {MetadataKey} is {spec}, not a map.");
        string arch = spec.Get("arch") is { Kind: EtfKind.Atom } a ? a.Atom!
            : throw new ModelFormatException($"the spec's arch is {spec.Get("arch")?.ToString() ?? "missing"}, expected an atom such as :dual_chunk_attention.");
        var options = new List<(string, EtfTerm)>();
        if (spec.Get("build_opts") is { } opts)
        {
            if (opts.Kind != EtfKind.List)
                throw new ModelFormatException($"the spec's build_opts is {opts}, not a keyword list.");
            foreach (var o in opts.Items)
            {
                if (o.Kind != EtfKind.Tuple || o.Items.Count != 2 || o.Items[0].Kind != EtfKind.Atom)
                    throw new ModelFormatException($"the spec's build_opts holds {o}, not a {{key, value}} pair.");
                options.Add((o.Items[0].Atom!, o.Items[1]));
            }
        }
        return new EdificeSpec(arch, options, Text(spec, "created_at"), Text(spec, "edifice_version"), Text(spec, "nx_version"));
    }

    /// <summary>The last value of option <paramref name="key"/> (Keyword.get's answer), or null.</summary>
    public EtfTerm? Option(string key)
    {
        for (int i = BuildOptions.Count - 1; i >= 0; i--)
            if (BuildOptions[i].Key == key) return BuildOptions[i].Value;
        return null;
    }

    /// <summary>The architecture the spec names; one this engine cannot run is an error naming it.</summary>
    public ModelArchitecture Architecture => Arch switch
    {
        "dual_chunk_attention" => ModelArchitecture.DualChunk,
        "decoder_only" when Option("attention_type") is { } t && t.IsAtom("dual_chunk") => ModelArchitecture.DecoderOnly,
        "decoder_only" => throw new ModelFormatException(
            $"the spec names decoder_only with attention_type {Option("attention_type")?.ToString() ?? ":gqa (the default)"}; this engine runs decoder_only only with attention_type: :dual_chunk (and dual_chunk_attention)."),
        _ => throw new ModelFormatException(
            $"the spec names the architecture :{Arch}, which this engine cannot run; it runs :dual_chunk_attention and :decoder_only with attention_type: :dual_chunk."),
    };

    /// <summary>The chunk size the model was built with (Edifice's 64 when the spec leaves it out).</summary>
    public int ChunkSize
    {
        get
        {
            long c = Int("chunk_size") ?? DefaultChunkSize;
            if (c is <= 0 or > MaxChunkSize)
                throw new ModelFormatException(Inv($"the spec's chunk_size is {c}; a chunk size must be 1..{MaxChunkSize}. The file is corrupted."));
            return (int)c;
        }
    }

    /// <summary>
    /// Checks the configuration inferred from the tensors against the spec: the architecture, embed_dim (when
    /// stated), hidden_size, num_heads and num_layers (Edifice's defaults when left out). A contradiction names the
    /// field and both values.
    /// </summary>
    public void Check(ModelConfig fromTensors)
    {
        if (Architecture != fromTensors.Architecture)
            throw Contradiction("the architecture", Architecture.ToString(), fromTensors.Architecture.ToString());
        if (Int("embed_dim") is { } e && e != fromTensors.EmbedDim)
            throw Contradiction("embed_dim", e, fromTensors.EmbedDim);
        Compare("hidden_size", DefaultHiddenSize, fromTensors.HiddenSize);
        Compare("num_heads", DefaultNumHeads, fromTensors.NumHeads);
        Compare("num_layers", DefaultNumLayers, fromTensors.NumLayers);
    }

    /// <summary>The spec as text lines for <c>dualchunk inspect</c>.</summary>
    public IEnumerable<string> Describe()
    {
        yield return $"arch = :{Arch}";
        yield return "build_opts = [" + string.Join(", ", BuildOptions.Select(o => $"{o.Key}: {o.Value}")) + "]";
        if (CreatedAt is not null) yield return $"created_at = {CreatedAt}";
        if (EdificeVersion is not null) yield return $"edifice_version = {EdificeVersion}";
        if (NxVersion is not null) yield return $"nx_version = {NxVersion}";
    }

    private void Compare(string key, int fallback, int actual)
    {
        long stated = Int(key) ?? fallback;
        if (stated != actual)
            throw Contradiction(key + (Int(key) is null ? " (not stated: Edifice's default)" : ""), stated, actual);
    }

    private long? Int(string key)
    {
        if (Option(key) is not { } v) return null;
        if (v.Kind != EtfKind.Integer || v.IsBig)
            throw new ModelFormatException($"the spec's {key} is {v}, expected an integer.");
        return v.Integer;
    }

    private static ModelFormatException Contradiction<T>(string field, T spec, T tensors)
        => new(Inv($"the spec ({MetadataKey}) says {field} = {spec}, but the tensors say {tensors}. The file is corrupted or its spec belongs to another model."));

    private static string? Text(EtfTerm spec, string key)
    {
        try
        {
            return spec.Get(key) is { Kind: EtfKind.Binary or EtfKind.Atom } t ? t.Text : null;
        }
        catch (System.Text.DecoderFallbackException)
        {
            return null;
        }
    }

    private static string Inv(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
