using DualChunk.Core;
using NUnit.Framework;

namespace DualChunk.Tests.Loading;

[TestFixture]
public class TensorTests
{
    [Test]
    public void NegativeDimensionsAreRejectedEvenWhenTheProductMatches()
    {
        Assert.That(() => new CheckpointTensor("t", [-2, -2], new float[4]), Throws.ArgumentException.With.Message.Contains("negative"));
    }

    [Test]
    public void OverflowingShapeIsRejectedNotWrapped()
    {
        // 65536^4 = 2^64 wraps to 0 in 64-bit arithmetic.
        Assert.That(() => new CheckpointTensor("t", [65536, 65536, 65536, 65536], []), Throws.ArgumentException.With.Message.Contains("elements"));
    }

    [Test]
    public void ShapeIsCopied()
    {
        int[] shape = [2, 2];
        var t = new CheckpointTensor("t", shape, new float[4]);
        shape[0] = 4;
        Assert.That(t.Shape, Is.EqualTo(new[] { 2, 2 }));
    }
}
