using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using BenchmarkDotNet.Attributes;
using DualChunk.Kernels;

namespace DualChunk.Bench;

/// <summary>
/// The element-wise kernels next to their System.Numerics.Tensors.TensorPrimitives equivalents, where one exists,
/// on the job's ISA (TensorPrimitives follows the same JIT switches). Sizes are the model's: LayerNorm over
/// [64, 256] (config a) and [4096, 256] (config d); GELU over one FFN row block [64, 1024]; exp over 64·1024 floats;
/// softmax over the 64 causal rows of one 64×64 score block; chunk means of config d's qkv [4096, 768].
/// </summary>
/// <remarks>
/// TensorPrimitives.SoftMax does not subtract the row max (exp overflows for logits above ~88), so it is only a
/// speed reference; <see cref="SoftmaxTensorPrimitivesSafe"/> is the max-subtracting composition
/// (Max, Subtract, Exp, Sum, Multiply). TensorPrimitives has no erf, so GELU has no counterpart.
/// The TensorPrimitives LayerNorm is Sum, Subtract, SumOfSquares, Multiply, FusedMultiplyAdd per row, in float.
/// </remarks>
public class ElementwiseBenchmarks
{
    private const int H = 256, F = 1024, T = 64, RowsA = 64, RowsD = 4096;
    private float[] _x = [], _y = [], _gamma = [], _beta = [], _tmp = [], _ffn = [], _ffnOut = [], _scores = [], _probs = [], _qkv = [], _means = [];

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(3);
        float[] Fill(int n, float scale, float offset) => Enumerable.Range(0, n).Select(_ => offset + scale * (random.NextSingle() - 0.5f)).ToArray();
        _x = Fill(RowsD * H, 4, 0.3f);
        _y = new float[RowsD * H];
        _gamma = Fill(H, 0.2f, 1);
        _beta = Fill(H, 0.2f, 0);
        _tmp = new float[H];
        _ffn = Fill(64 * F, 8, 0);
        _ffnOut = new float[64 * F];
        _scores = Fill(T * T, 10, 0);
        _probs = new float[T * T];
        _qkv = Fill(RowsD * 3 * H, 2, 0);
        _means = new float[RowsD / 64 * 3 * H];
    }

    [Benchmark]
    public void LayerNorm64() => LayerNorm.Run(_x.AsSpan(0, RowsA * H), RowsA, H, _gamma, _beta, _y);

    [Benchmark]
    public void LayerNorm64TensorPrimitives() => LayerNormTensorPrimitives(RowsA);

    [Benchmark]
    public void LayerNorm4096() => LayerNorm.Run(_x, RowsD, H, _gamma, _beta, _y);

    [Benchmark]
    public void LayerNorm4096TensorPrimitives() => LayerNormTensorPrimitives(RowsD);

    private void LayerNormTensorPrimitives(int rows)
    {
        for (int r = 0; r < rows; r++)
        {
            ReadOnlySpan<float> x = _x.AsSpan(r * H, H);
            Span<float> y = _y.AsSpan(r * H, H);
            float mean = TensorPrimitives.Sum(x) / H;
            TensorPrimitives.Subtract(x, mean, _tmp);
            float variance = TensorPrimitives.SumOfSquares<float>(_tmp) / H;
            float inv = variance >= LayerNorm.Epsilon ? 1f / MathF.Sqrt(variance + LayerNorm.Epsilon) : 1f / MathF.Sqrt(LayerNorm.Epsilon);
            TensorPrimitives.Multiply(_tmp, inv, _tmp);
            TensorPrimitives.FusedMultiplyAdd(_tmp, _gamma, _beta, y);
        }
    }

    /// <summary>GELU(x) over [64, 1024], inputs uniform in [−4, 4] (the FFN-up GEMM epilogue applies the same function per tile).</summary>
    [Benchmark]
    public void Gelu64x1024() => Gelu.Run(_ffn, _ffnOut);

    [Benchmark]
    public void Exp64x1024() => ElementwiseDriver.Run<ExpOperator>(_ffn, _ffnOut, KernelSelection.Isa);

    [Benchmark]
    public void Exp64x1024TensorPrimitives() => TensorPrimitives.Exp(_ffn, _ffnOut);

    /// <summary>Edifice's masked softmax of the 64 causal rows of a 64×64 score block (row i reads i+1 scores).</summary>
    [Benchmark]
    public void SoftmaxCausal64()
    {
        for (int i = 0; i < T; i++)
            CausalSoftmax.Run(_scores.AsSpan(i * T, T), _probs.AsSpan(i * T, T), i);
    }

    /// <summary>TensorPrimitives.SoftMax over the same unmasked prefixes: no max subtraction (speed reference only).</summary>
    [Benchmark]
    public void SoftmaxTensorPrimitivesUnsafe()
    {
        for (int i = 0; i < T; i++)
            TensorPrimitives.SoftMax(_scores.AsSpan(i * T, i + 1), _probs.AsSpan(i * T, i + 1));
    }

    /// <summary>The max-subtracting softmax from TensorPrimitives pieces over the same prefixes (+1e-8 like Edifice).</summary>
    [Benchmark]
    public void SoftmaxTensorPrimitivesSafe()
    {
        for (int i = 0; i < T; i++)
        {
            ReadOnlySpan<float> s = _scores.AsSpan(i * T, i + 1);
            Span<float> p = _probs.AsSpan(i * T, i + 1);
            TensorPrimitives.Subtract(s, TensorPrimitives.Max(s), p);
            TensorPrimitives.Exp(p, p);
            TensorPrimitives.Multiply(p, 1f / (TensorPrimitives.Sum(p) + CausalAttention.DenominatorEpsilon), p);
        }
    }

    /// <summary>Chunk summaries of config d: means of 64-row groups of qkv [4096, 768] (accumulated in double).</summary>
    [Benchmark]
    public void RowMean4096x768() => RowMean.Run(_qkv, RowsD, 3 * H, 3 * H, 64, _means, 3 * H);

    /// <summary>The same means from TensorPrimitives.Add (float accumulation) and Multiply.</summary>
    [Benchmark]
    public void RowMean4096x768TensorPrimitives()
    {
        const int w = 3 * H;
        for (int g = 0; g < RowsD / 64; g++)
        {
            Span<float> m = _means.AsSpan(g * w, w);
            _qkv.AsSpan(g * 64 * w, w).CopyTo(m);
            for (int r = 1; r < 64; r++)
                TensorPrimitives.Add(m, _qkv.AsSpan((g * 64 + r) * w, w), m);
            TensorPrimitives.Multiply(m, 1f / 64, m);
        }
    }

    private readonly struct ExpOperator : IUnaryOperator
    {
        public static float Invoke(float x) => ScalarMath.Exp(x);
        public static TVec Invoke<TSimd, TVec>(TVec x) where TSimd : struct, ISimd<TVec> where TVec : struct => VectorMath.Exp<TSimd, TVec>(x);
    }
}
