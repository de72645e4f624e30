using System.Numerics.Tensors;
using DualChunk.Kernels;

namespace DualChunk.Bench.Peers;

/// <summary>
/// The attention of one layer, given Q, K, V, in four ways, for the memory sweep. Shared by all:
/// B = 1, NH = 8 heads of D = 32 (H = 256), the input is the packed projection qkv [N, 3H]
/// (queries | keys | values, head h at columns h·D..h·D+D-1 of each third, the engine's layout) and
/// the output is [N, H]. Neither is counted: "planned bytes" is what each method allocates beyond
/// them. Masking and the softmax are Edifice's (−1e9, +1e-8 in the denominator).
/// </summary>
public abstract class AttentionMethod
{
    public const int Heads = 8, HeadDim = 32, Hidden = Heads * HeadDim;
    protected static readonly float Scale = 1f / MathF.Sqrt(HeadDim);

    /// <summary>Short key used on the command line and in files.</summary>
    public abstract string Key { get; }

    /// <summary>Legend label.</summary>
    public abstract string Label { get; }

    /// <summary>Whether the method depends on the chunk size (dense and tiled do not).</summary>
    public abstract bool UsesChunks { get; }

    /// <summary>Bytes the method allocates for one attention forward (beyond qkv and the output).</summary>
    public abstract long PlannedBytes(long n, long c);

    /// <summary>Rough operation count, used only to extrapolate the time of points that are skipped.</summary>
    public abstract double Work(long n, long c);

    public abstract void Run(float[] qkv, int n, int c, float[] output);

    public static IReadOnlyList<AttentionMethod> All { get; } = [new DenseAttention(), new TiledAttention(), new EdificeDca(), new FusedDca()];

    /// <summary>The engine kernel over all N positions: a yardstick for the tiled one's GFLOP/s, not in the sweep.</summary>
    public static AttentionMethod Yardstick { get; } = new KernelDenseAttention();

    public static AttentionMethod ByKey(string key) => All.Append(Yardstick).First(m => m.Key == key);

    protected static ReadOnlySpan<float> Row(float[] qkv, int row, int part, int head)
        => qkv.AsSpan(row * 3 * Hidden + part * Hidden + head * HeadDim, HeadDim);

    /// <summary>P = exp(S − max) / (Σ + 1e-8) over one row (Edifice's masked softmax, mask already applied).</summary>
    protected static void Softmax(ReadOnlySpan<float> s, Span<float> p)
    {
        float max = TensorPrimitives.Max(s);
        TensorPrimitives.Subtract(s, max, p);
        TensorPrimitives.Exp(p, p);
        TensorPrimitives.Divide(p, TensorPrimitives.Sum(p) + CausalAttention.DenominatorEpsilon, p);
    }
}

/// <summary>
/// (a) Dense causal softmax attention as Edifice/Nx runs it: the full scores tensor [NH, N, N] is
/// materialised (all N² dot products, masked ones included), then a new probabilities tensor
/// [NH, N, N], then P·V over all N columns. Planned: 2·NH·N²·4 bytes (+ two [D, N] transposes).
/// </summary>
public sealed class DenseAttention : AttentionMethod
{
    public override string Key => "dense";
    public override string Label => "dense (Nx-style, N×N scores)";
    public override bool UsesChunks => false;
    public override long PlannedBytes(long n, long c) => 4 * (2 * Heads * n * n + 2 * HeadDim * n);
    public override double Work(long n, long c) => 4.0 * Heads * n * n * HeadDim;

    public override void Run(float[] qkv, int n, int c, float[] output)
    {
        var kT = new float[HeadDim * n];
        var vT = new float[HeadDim * n];
        var s = new float[Heads][];
        for (int h = 0; h < Heads; h++)
        {
            s[h] = GC.AllocateUninitializedArray<float>(n * n);
            Transpose(qkv, n, 1, h, kT);
            for (int i = 0; i < n; i++)
            {
                var row = s[h].AsSpan(i * n, n);
                row.Clear();
                var q = Row(qkv, i, 0, h);
                for (int e = 0; e < HeadDim; e++)
                    TensorPrimitives.MultiplyAdd(kT.AsSpan(e * n, n), q[e], row, row);
                TensorPrimitives.Multiply(row, Scale, row);
                row[(i + 1)..].Fill(CausalAttention.MaskValue);
            }
        }
        var p = new float[Heads][];
        for (int h = 0; h < Heads; h++)
        {
            p[h] = GC.AllocateUninitializedArray<float>(n * n);
            for (int i = 0; i < n; i++)
                Softmax(s[h].AsSpan(i * n, n), p[h].AsSpan(i * n, n));
        }
        GC.KeepAlive(s);
        for (int h = 0; h < Heads; h++)
        {
            Transpose(qkv, n, 2, h, vT);
            for (int i = 0; i < n; i++)
            {
                var prow = p[h].AsSpan(i * n, n);
                for (int e = 0; e < HeadDim; e++)
                    output[i * Hidden + h * HeadDim + e] = TensorPrimitives.Dot(prow, vT.AsSpan(e * n, n));
            }
        }
    }

    private static void Transpose(float[] qkv, int n, int part, int head, float[] t)
    {
        for (int j = 0; j < n; j++)
        {
            var r = Row(qkv, j, part, head);
            for (int e = 0; e < HeadDim; e++) t[e * n + j] = r[e];
        }
    }
}

/// <summary>
/// (c) DCA as Edifice materialises it: intra scores and probabilities [NH, NC, C, C] (all C² per
/// chunk), the chunk means [NC, 3H], inter scores and probabilities [NH, NC, NC], and o_intra
/// [N, H] and o_inter [NC, H] as separate tensors before the blend: O(N·C + N²/C²). (A lower bound
/// on what Nx holds: Nx also materialises transposed copies of q, k, v and each elementwise step.)
/// The gate is fixed at sigmoid(0) = 0.5 here: it changes no memory and no time.
/// </summary>
public sealed class EdificeDca : AttentionMethod
{
    public override string Key => "dca-edifice";
    public override string Label => "DCA, Edifice-materialised";
    public override bool UsesChunks => true;

    public override long PlannedBytes(long n, long c)
    {
        long nc = n / c;
        return 4 * (2 * Heads * n * c + 2 * Heads * nc * nc + 3 * nc * Hidden + n * Hidden + nc * Hidden);
    }

    public override double Work(long n, long c) => 4.0 * Heads * n * c * HeadDim + 4.0 * Heads * (n / c) * (n / c) * HeadDim;

    public override void Run(float[] qkv, int n, int c, float[] output)
    {
        int nc = n / c;
        var sIntra = GC.AllocateUninitializedArray<float>(checked(Heads * n * c));
        var pIntra = GC.AllocateUninitializedArray<float>(Heads * n * c);
        var means = new float[nc * 3 * Hidden];
        var sInter = new float[Heads * nc * nc];
        var pInter = new float[Heads * nc * nc];
        var oIntra = new float[n * Hidden];
        var oInter = new float[nc * Hidden];
        // Intra-chunk scores, all C×C per chunk, then the mask.
        for (int h = 0; h < Heads; h++)
            for (int ch = 0; ch < nc; ch++)
                for (int i = 0; i < c; i++)
                {
                    var srow = sIntra.AsSpan(((h * nc + ch) * c + i) * c, c);
                    var q = Row(qkv, ch * c + i, 0, h);
                    for (int j = 0; j < c; j++)
                        srow[j] = j > i ? CausalAttention.MaskValue : TensorPrimitives.Dot(q, Row(qkv, ch * c + j, 1, h)) * Scale;
                }
        for (int r = 0; r < Heads * n; r++)
            Softmax(sIntra.AsSpan(r * c, c), pIntra.AsSpan(r * c, c));
        for (int h = 0; h < Heads; h++)
            for (int ch = 0; ch < nc; ch++)
                for (int i = 0; i < c; i++)
                {
                    var prow = pIntra.AsSpan(((h * nc + ch) * c + i) * c, c);
                    var o = oIntra.AsSpan((ch * c + i) * Hidden + h * HeadDim, HeadDim);
                    for (int j = 0; j < c; j++)
                        TensorPrimitives.MultiplyAdd(Row(qkv, ch * c + j, 2, h), prow[j], o, o);
                }
        // Chunk means over all C positions, then inter-chunk attention.
        for (int ch = 0; ch < nc; ch++)
        {
            var mrow = means.AsSpan(ch * 3 * Hidden, 3 * Hidden);
            for (int i = 0; i < c; i++)
                TensorPrimitives.Add(mrow, qkv.AsSpan((ch * c + i) * 3 * Hidden, 3 * Hidden), mrow);
            TensorPrimitives.Divide(mrow, c, mrow);
        }
        for (int h = 0; h < Heads; h++)
        {
            for (int i = 0; i < nc; i++)
            {
                var srow = sInter.AsSpan((h * nc + i) * nc, nc);
                var q = means.AsSpan(i * 3 * Hidden + h * HeadDim, HeadDim);
                for (int j = 0; j < nc; j++)
                    srow[j] = j > i ? CausalAttention.MaskValue : TensorPrimitives.Dot(q, means.AsSpan(j * 3 * Hidden + Hidden + h * HeadDim, HeadDim)) * Scale;
                Softmax(srow, pInter.AsSpan((h * nc + i) * nc, nc));
                var prow = pInter.AsSpan((h * nc + i) * nc, nc);
                var o = oInter.AsSpan(i * Hidden + h * HeadDim, HeadDim);
                for (int j = 0; j < nc; j++)
                    TensorPrimitives.MultiplyAdd(means.AsSpan(j * 3 * Hidden + 2 * Hidden + h * HeadDim, HeadDim), prow[j], o, o);
            }
        }
        // Blend with g = 0.5.
        for (int r = 0; r < n; r++)
        {
            var o = output.AsSpan(r * Hidden, Hidden);
            TensorPrimitives.Add(oIntra.AsSpan(r * Hidden, Hidden), oInter.AsSpan(r / c * Hidden, Hidden), o);
            TensorPrimitives.Multiply(o, 0.5f, o);
        }
    }
}

/// <summary>
/// (d) DualChunk.NET's fused DCA: the engine's own kernels (RowMean for the chunk means, CausalAttention
/// per head over the chunk means, then per chunk and head with the gate blend fused into the store).
/// Given Q, K, V as every method here, the means are taken of qkv; the forward pass itself takes them of
/// LN(x) and projects them ([NC, H] more, same order). Planned: the attention part of the engine's
/// workspace: summaries [NC, 3H], inter [NC, H] and the kernel scratch for max(C, NC) positions.
/// No score tensor outlives one row.
/// </summary>
public sealed class FusedDca : AttentionMethod
{
    private static readonly float[] HalfGate = Enumerable.Repeat(0.5f, HeadDim).ToArray();

    public override string Key => "dca-fused";
    public override string Label => "DCA, DualChunk.NET fused";
    public override bool UsesChunks => true;

    public override long PlannedBytes(long n, long c)
    {
        long nc = n / c;
        return 4 * (nc * 3 * Hidden + nc * Hidden + Math.Max(CausalAttention.ScratchFloats((int)c, HeadDim), CausalAttention.ScratchFloats((int)nc, HeadDim)));
    }

    public override double Work(long n, long c) => 2.0 * Heads * n * c * HeadDim + 2.0 * Heads * (n / c) * (n / c) * HeadDim;

    public override void Run(float[] qkv, int n, int c, float[] output)
    {
        int nc = n / c, h3 = 3 * Hidden;
        var summaries = new float[nc * h3];
        var inter = new float[nc * Hidden];
        var scratch = new float[Math.Max(CausalAttention.ScratchFloats(c, HeadDim), CausalAttention.ScratchFloats(nc, HeadDim))];
        RowMean.Run(qkv, n, h3, h3, c, summaries, h3);
        for (int head = 0; head < Heads; head++)
        {
            int col = head * HeadDim;
            CausalAttention.Run(summaries.AsSpan(col), h3, summaries.AsSpan(Hidden + col), h3, summaries.AsSpan(2 * Hidden + col), h3,
                nc, HeadDim, Scale, inter.AsSpan(col), Hidden, scratch, default, default);
        }
        for (int chunk = 0; chunk < nc; chunk++)
        {
            var rows = qkv.AsSpan(chunk * c * h3, c * h3);
            var interRow = inter.AsSpan(chunk * Hidden, Hidden);
            var o = output.AsSpan(chunk * c * Hidden, c * Hidden);
            for (int head = 0; head < Heads; head++)
            {
                int col = head * HeadDim;
                CausalAttention.Run(rows[col..], h3, rows[(Hidden + col)..], h3, rows[(2 * Hidden + col)..], h3,
                    c, HeadDim, Scale, o[col..], Hidden, scratch, interRow.Slice(col, HeadDim), HalfGate);
            }
        }
    }
}

/// <summary>
/// Dense causal attention by the engine's own kernel over all N positions (<see cref="CausalAttention.Run(ReadOnlySpan{float}, int, ReadOnlySpan{float}, int, ReadOnlySpan{float}, int, int, int, float, Span{float}, int, Span{float}, ReadOnlySpan{float}, ReadOnlySpan{float})"/>
/// with T = N, per head): not part of the memory sweep (its scratch is O(N·(D + 16))), only a yardstick for the tiled
/// baseline's GFLOP/s.
/// </summary>
public sealed class KernelDenseAttention : AttentionMethod
{
    public override string Key => "dense-kernel";
    public override string Label => "dense, engine's causal kernel at T = N";
    public override bool UsesChunks => false;
    public override long PlannedBytes(long n, long c) => 4L * CausalAttention.ScratchFloats((int)n, HeadDim);
    public override double Work(long n, long c) => TiledAttention.CausalFlops(n);

    public override void Run(float[] qkv, int n, int c, float[] output)
    {
        var scratch = new float[CausalAttention.ScratchFloats(n, HeadDim)];
        for (int head = 0; head < Heads; head++)
        {
            int col = head * HeadDim;
            CausalAttention.Run(qkv.AsSpan(col), 3 * Hidden, qkv.AsSpan(Hidden + col), 3 * Hidden, qkv.AsSpan(2 * Hidden + col), 3 * Hidden,
                n, HeadDim, Scale, output.AsSpan(col), Hidden, scratch, default, default);
        }
    }
}
