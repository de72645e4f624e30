namespace DualChunk.Core;

/// <summary>A named float32 tensor as loaded from a weights file (converted to float32 at load).</summary>
public sealed class CheckpointTensor
{
    /// <summary>Creates a tensor; <paramref name="data"/> length must equal the product of <paramref name="shape"/>.</summary>
    public CheckpointTensor(string name, int[] shape, float[] data)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(data);
        long count = 1;
        foreach (int s in shape)
        {
            if (s < 0)
                throw new ArgumentException($"Tensor '{name}': shape [{string.Join(", ", shape)}] has a negative dimension.", nameof(shape));
            count = Math.Min(count * s, (long)int.MaxValue + 1); // saturate: no overflow, still != any array length
        }
        if (count != data.Length)
            throw new ArgumentException($"Tensor '{name}': shape [{string.Join(", ", shape)}] holds {count} elements but data has {data.Length}.", nameof(data));
        Name = name;
        Shape = (int[])shape.Clone(); // the caller's array may change later; the tensor's shape must not
        Data = data;
    }

    /// <summary>A tensor over memory the caller keeps valid (e.g. a mapped file); the shape is trusted to match.</summary>
    internal CheckpointTensor(string name, int[] shape, ReadOnlyMemory<float> data)
    {
        Name = name;
        Shape = shape;
        Data = data;
    }

    /// <summary>The tensor's key, e.g. <c>final_norm.gamma</c>.</summary>
    public string Name { get; }

    /// <summary>The shape, outermost first.</summary>
    public IReadOnlyList<int> Shape { get; }

    /// <summary>The elements, row-major.</summary>
    public ReadOnlyMemory<float> Data { get; }

    /// <summary>The shape as text, e.g. <c>[32, 96]</c>.</summary>
    public string ShapeText => "[" + string.Join(", ", Shape) + "]";
}
