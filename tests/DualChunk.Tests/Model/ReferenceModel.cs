using DualChunk.Core;

namespace DualChunk.Tests.Model;

/// <summary>
/// The forward pass of docs/model.md (DualChunk.build, or DecoderOnly when the configuration says so) in float64 with plain loops and the mask evaluated literally: the
/// reference the engine is checked against on random models of any shape. Test code only.
/// </summary>
internal static class ReferenceModel
{
    public static double[] Run(IReadOnlyDictionary<string, CheckpointTensor> t, ModelConfig cfg, float[] input, int batch, int n, OutputMode mode)
    {
        int e = cfg.EmbedDim, h = cfg.HiddenSize, nh = cfg.NumHeads, d = cfg.HeadDim, c = cfg.ChunkSize, nc = n / c;
        double[] W(string name) => Array.ConvertAll(t[name].Data.ToArray(), v => (double)v);
        var x = new double[batch * n * h];
        if (cfg.HasInputProjection)
            Dense(Array.ConvertAll(input, v => (double)v), batch * n, e, W(CheckpointNames.InputKernel), W(CheckpointNames.InputBias), h, x);
        else
            for (int i = 0; i < x.Length; i++) x[i] = input[i];

        double scale = 1.0 / Math.Sqrt(d);
        for (int l = 1; l <= cfg.NumLayers; l++)
        {
            bool decoder = cfg.Architecture == ModelArchitecture.DecoderOnly;
            string N(BlockTensor dc, DecoderBlockTensor dec) => decoder ? CheckpointNames.DecoderBlock(l, dec) : CheckpointNames.Block(l, dc);
            var hn = decoder ? RmsNorm(x, h, W(N(BlockTensor.AttnNormGamma, DecoderBlockTensor.AttnNormGamma)))
                : Norm(x, h, W(CheckpointNames.Block(l, BlockTensor.AttnNormGamma)), W(CheckpointNames.Block(l, BlockTensor.AttnNormBeta)));
            var qkv = new double[batch * n * 3 * h];
            Dense(hn, batch * n, h, W(N(BlockTensor.QkvKernel, DecoderBlockTensor.QkvKernel)), W(N(BlockTensor.QkvBias, DecoderBlockTensor.QkvBias)), 3 * h, qkv);
            var gate = W(N(BlockTensor.Gate, DecoderBlockTensor.Gate));
            var comb = new double[batch * n * h];
            for (int b = 0; b < batch; b++)
            {
                for (int hd = 0; hd < nh; hd++)
                {
                    double Q(int pos, int j) => qkv[(b * n + pos) * 3 * h + hd * d + j];
                    double K(int pos, int j) => qkv[(b * n + pos) * 3 * h + h + hd * d + j];
                    double V(int pos, int j) => qkv[(b * n + pos) * 3 * h + 2 * h + hd * d + j];
                    // chunk summaries
                    var qs = new double[nc, d]; var ks = new double[nc, d]; var vs = new double[nc, d];
                    for (int ci = 0; ci < nc; ci++)
                        for (int j = 0; j < d; j++)
                        {
                            for (int p = 0; p < c; p++) { qs[ci, j] += Q(ci * c + p, j); ks[ci, j] += K(ci * c + p, j); vs[ci, j] += V(ci * c + p, j); }
                            qs[ci, j] /= c; ks[ci, j] /= c; vs[ci, j] /= c;
                        }
                    var inter = Attention(nc, d, scale, (i, j) => qs[i, j], (i, j) => ks[i, j], (i, j) => vs[i, j]);
                    for (int ci = 0; ci < nc; ci++)
                    {
                        int c0 = ci * c;
                        var intra = Attention(c, d, scale, (i, j) => Q(c0 + i, j), (i, j) => K(c0 + i, j), (i, j) => V(c0 + i, j));
                        for (int i = 0; i < c; i++)
                            for (int j = 0; j < d; j++)
                            {
                                double g = 1.0 / (1.0 + Math.Exp(-gate[hd * d + j]));
                                comb[(b * n + c0 + i) * h + hd * d + j] = g * inter[ci, j] + (1 - g) * intra[i, j];
                            }
                    }
                }
            }
            var o = new double[batch * n * h];
            Dense(comb, batch * n, h, W(N(BlockTensor.OutKernel, DecoderBlockTensor.OutKernel)), W(N(BlockTensor.OutBias, DecoderBlockTensor.OutBias)), h, o);
            for (int i = 0; i < x.Length; i++) x[i] += o[i];
            var h2 = decoder ? RmsNorm(x, h, W(N(BlockTensor.FfnNormGamma, DecoderBlockTensor.FfnNormGamma)))
                : Norm(x, h, W(CheckpointNames.Block(l, BlockTensor.FfnNormGamma)), W(CheckpointNames.Block(l, BlockTensor.FfnNormBeta)));
            int f = cfg.FfnSize;
            var u = new double[batch * n * f];
            Dense(h2, batch * n, h, W(N(BlockTensor.UpKernel, DecoderBlockTensor.UpKernel)), W(N(BlockTensor.UpBias, DecoderBlockTensor.UpBias)), f, u);
            if (decoder)
            {
                // SwiGLU: silu(h·Wg + bg) ⊙ (h·Wu + bu)
                var g = new double[batch * n * f];
                Dense(h2, batch * n, h, W(CheckpointNames.DecoderBlock(l, DecoderBlockTensor.GateKernel)), W(CheckpointNames.DecoderBlock(l, DecoderBlockTensor.GateBias)), f, g);
                for (int i = 0; i < u.Length; i++) u[i] *= g[i] / (1.0 + Math.Exp(-g[i]));
            }
            else
            {
                for (int i = 0; i < u.Length; i++) u[i] = Gelu.ScalarReference(u[i]);
            }
            var dn = new double[batch * n * h];
            Dense(u, batch * n, f, W(N(BlockTensor.DownKernel, DecoderBlockTensor.DownKernel)), W(N(BlockTensor.DownBias, DecoderBlockTensor.DownBias)), h, dn);
            for (int i = 0; i < x.Length; i++) x[i] += dn[i];
        }
        var y = Norm(x, h, W(CheckpointNames.FinalGamma), W(CheckpointNames.FinalBeta));
        switch (mode)
        {
            case OutputMode.All: return y;
            case OutputMode.MeanPool:
                var mean = new double[batch * h];
                for (int b = 0; b < batch; b++)
                    for (int p = 0; p < n; p++)
                        for (int j = 0; j < h; j++) mean[b * h + j] += y[(b * n + p) * h + j] / n;
                return mean;
            default:
                var last = new double[batch * h];
                for (int b = 0; b < batch; b++) Array.Copy(y, (b * n + n - 1) * h, last, b * h, h);
                return last;
        }
    }

    private static void Dense(double[] a, int rows, int k, double[] w, double[] bias, int n, double[] c)
    {
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < n; j++)
            {
                double s = bias[j];
                for (int p = 0; p < k; p++) s += a[r * k + p] * w[p * n + j];
                c[r * n + j] = s;
            }
    }

    private static double[] Norm(double[] x, int h, double[] gamma, double[] beta)
    {
        var y = new double[x.Length];
        for (int r = 0; r < x.Length / h; r++)
        {
            double mean = 0, v = 0;
            for (int j = 0; j < h; j++) mean += x[r * h + j];
            mean /= h;
            for (int j = 0; j < h; j++) v += (x[r * h + j] - mean) * (x[r * h + j] - mean);
            v /= h;
            double inv = v >= 1e-5 ? 1 / Math.Sqrt(v + 1e-5) : 1 / Math.Sqrt(1e-5);
            for (int j = 0; j < h; j++) y[r * h + j] = gamma[j] * inv * (x[r * h + j] - mean) + beta[j];
        }
        return y;
    }

    private static double[] RmsNorm(double[] x, int h, double[] gamma)
    {
        var y = new double[x.Length];
        for (int r = 0; r < x.Length / h; r++)
        {
            double ss = 0;
            for (int j = 0; j < h; j++) ss += x[r * h + j] * x[r * h + j];
            double inv = 1 / Math.Sqrt(ss / h + 1e-6);
            for (int j = 0; j < h; j++) y[r * h + j] = x[r * h + j] * inv * gamma[j];
        }
        return y;
    }

    private static double[,] Attention(int t, int d, double scale, Func<int, int, double> q, Func<int, int, double> k, Func<int, int, double> v)
    {
        var o = new double[t, d];
        var s = new double[t];
        for (int i = 0; i < t; i++)
        {
            double max = double.NegativeInfinity, sum = 0;
            for (int j = 0; j < t; j++)
            {
                double dot = 0;
                for (int e = 0; e < d; e++) dot += q(i, e) * k(j, e);
                s[j] = j > i ? -1e9 : dot * scale;
                max = Math.Max(max, s[j]);
            }
            for (int j = 0; j < t; j++) { s[j] = Math.Exp(s[j] - max); sum += s[j]; }
            for (int j = 0; j < t; j++)
                for (int e = 0; e < d; e++) o[i, e] += s[j] / (sum + 1e-8) * v(j, e);
        }
        return o;
    }
}
