using System.Globalization;
using System.Runtime.Intrinsics;

namespace DualChunk.Core;

/// <summary>
/// What a stream keeps between appends, and nothing else: per layer and sequence the key and value summaries
/// k̄ | v̄ of every chunk so far ([chunks, 2H]), and per sequence the running float64 sums of the final-norm outputs
/// (for <see cref="OutputMode.MeanPool"/>). Planned for a capacity of chunks; <see cref="Grow"/> re-lays it out.
/// </summary>
/// <remarks>
/// Layout: <c>Kv[((l·B + b)·Capacity + i)·2H ..]</c> is chunk i of sequence b at layer l, so one sequence's chunks of
/// one layer are rows at a stride of 2H. Sums: <c>Sums[(b·2 + parity)·H ..]</c>, the sums of the final-norm rows at
/// even and odd positions, kept apart because <see cref="DualChunk.Kernels.RowMean"/> sums even and odd rows in
/// separate accumulators and adds them at the end (one chain, slot 0 only, on its scalar path): the stream's mean
/// is then the same float64 arithmetic in the same order as the mean pool of a whole-sequence pass.
/// </remarks>
internal sealed class StreamState
{
    private readonly int _layers, _batch, _h;

    public StreamState(ModelConfig config, int batch, int capacityChunks)
    {
        _layers = config.NumLayers;
        _batch = batch;
        _h = config.HiddenSize;
        Pairwise = _h >= 4 && Vector128.IsHardwareAccelerated;
        Kv = Allocate(capacityChunks);
        Sums = new double[batch * 2 * _h];
        Capacity = capacityChunks;
    }

    /// <summary>The mean pool sums even and odd positions apart (RowMean's vector paths); false: one chain (its scalar path).</summary>
    public bool Pairwise { get; }

    /// <summary>Chunks the arrays hold room for.</summary>
    public int Capacity { get; private set; }

    /// <summary>L × B × Capacity × 2H floats (pinned: work items on helper threads read it).</summary>
    public float[] Kv { get; private set; }

    /// <summary>[B, 2, H] running sums of the final-norm outputs.</summary>
    public double[] Sums { get; }

    /// <summary>Floats of chunk rows of one layer and sequence.</summary>
    public int RowFloats => 2 * _h;

    /// <summary>Bytes the state needs for <paramref name="chunks"/> chunks: L·B·chunks·2H floats + B·2H doubles.</summary>
    public static long BytesFor(ModelConfig config, int batch, long chunks)
        => (long)config.NumLayers * batch * chunks * 2 * config.HiddenSize * sizeof(float) + (long)batch * 2 * config.HiddenSize * sizeof(double);

    /// <summary>Bytes held now (the formula at <see cref="Capacity"/>).</summary>
    public long Bytes => (long)Kv.Length * sizeof(float) + (long)Sums.Length * sizeof(double);

    /// <summary>Rows of layer <paramref name="l"/>, sequence <paramref name="b"/>: [Capacity, 2H].</summary>
    public Span<float> Rows(int l, int b) => Kv.AsSpan((int)((long)(l * _batch + b) * Capacity * RowFloats), Capacity * RowFloats);

    /// <summary>Re-lays the state out for <paramref name="capacityChunks"/> chunks, keeping the first <paramref name="chunks"/>.</summary>
    public void Grow(int capacityChunks, int chunks)
    {
        var old = Kv;
        int oldCapacity = Capacity;
        var kv = Allocate(capacityChunks);
        int used = chunks * RowFloats;
        for (int lb = 0; lb < _layers * _batch; lb++)
            old.AsSpan((int)((long)lb * oldCapacity * RowFloats), used).CopyTo(kv.AsSpan((int)((long)lb * capacityChunks * RowFloats), used));
        Kv = kv;
        Capacity = capacityChunks;
    }

    public void ClearSums() => Array.Clear(Sums);

    private float[] Allocate(int capacityChunks)
    {
        long floats = (long)_layers * _batch * capacityChunks * RowFloats;
        if (floats > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(capacityChunks), capacityChunks, string.Create(CultureInfo.InvariantCulture,
                $"A stream of batch {_batch} with room for {capacityChunks} chunks needs {floats:N0} floats of state (L × B × chunks × 2H), more than one array holds; use a smaller batch or capacity."));
        return GC.AllocateArray<float>((int)floats, pinned: true);
    }
}
