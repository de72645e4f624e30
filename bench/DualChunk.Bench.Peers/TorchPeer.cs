using DualChunk.Core;
using TorchSharp;
using CheckpointTensor = DualChunk.Core.CheckpointTensor;

namespace DualChunk.Bench.Peers;

/// <summary>
/// TorchSharp (libtorch CPU) with the model written in torch ops from the same weights, under
/// no_grad, with torch.set_num_threads equal to ours. The native library is probed once, up front:
/// when it cannot load, the row says why and nothing else fails.
/// </summary>
public sealed class TorchPeer(int threads) : IPeer
{
    private static readonly Lazy<string?> LoadError = new(Probe);

    public string Name => "TorchSharp 0.107.0";

    public string Key => "torch";

    public int Threads => threads;

    public string? Unavailable => LoadError.Value;

#pragma warning disable CA1031 // any failure to load libtorch makes the row unavailable, with the reason
    private static string? Probe()
    {
        // First the native bridge alone, so the dynamic loader's own reason (e.g. a missing
        // GLIBCXX version) is what the table shows, before TorchSharp's long fallback trace.
        string native = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        if (OperatingSystem.IsLinux() && File.Exists(native))
        {
            try
            {
                System.Runtime.InteropServices.NativeLibrary.Free(System.Runtime.InteropServices.NativeLibrary.Load(native));
            }
            catch (Exception ex)
            {
                return $"unavailable: libLibTorchSharp.so does not load ({ex.GetType().Name}): {LoaderReason(ex.Message)}";
            }
        }
        try
        {
            using var t = torch.ones(2);
            return t.sum().item<float>() == 2f ? null : "unavailable: libtorch loaded but computed nonsense";
        }
        catch (Exception ex)
        {
            var reasons = new List<string>();
            for (Exception? e = ex; e is not null; e = e.InnerException)
                reasons.Add($"{e.GetType().Name}: {FirstLine(e.Message)}");
            return "unavailable: " + string.Join(" ← ", reasons.Distinct());
        }
    }

    /// <summary>The dynamic loader's own words (dlerror), which .NET appends after its generic advice.</summary>
    private static string LoaderReason(string message)
    {
        var lines = message.ReplaceLineEndings("\n").Split("\n", StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        string line = lines.LastOrDefault(l => l.Contains("not found", StringComparison.Ordinal) || l.Contains("cannot open", StringComparison.Ordinal))
            ?? lines.LastOrDefault() ?? message;
        line = line.Replace(AppContext.BaseDirectory, "", StringComparison.Ordinal);
        return line.Length > 300 ? line[..300] + "…" : line;
    }

    private static string FirstLine(string message)
    {
        string line = message.ReplaceLineEndings("\n").Split("\n", StringSplitOptions.RemoveEmptyEntries).FirstOrDefault() ?? message;
        return line.Length > 300 ? line[..300] + "…" : line;
    }
#pragma warning restore CA1031

    public IPeerRunner Create(PeerConfig config, IReadOnlyDictionary<string, CheckpointTensor> weights, float[] input)
        => config.IsDecoder ? throw new NotSupportedException("the libtorch peer builds DualChunk.build's graph only, not DecoderOnly's")
            : new Runner(config, weights, input, threads);

    private sealed class Runner : IPeerRunner
    {
        private readonly PeerConfig _pc;
        private readonly Dictionary<string, torch.Tensor> _w = new(StringComparer.Ordinal);
        private readonly torch.Tensor _input, _mask, _maskInter;
        private readonly float[] _output;

        public Runner(PeerConfig config, IReadOnlyDictionary<string, CheckpointTensor> weights, float[] input, int threads)
        {
            torch.set_num_threads(threads);
            _pc = config;
            foreach (var (name, t) in weights)
                _w[name] = torch.tensor(t.Data.ToArray(), t.Shape.Select(s => (long)s).ToArray());
            _input = torch.tensor(input, [config.Batch, config.SeqLen, config.Model.EmbedDim]);
            int c = config.ChunkSize, nc = config.SeqLen / c;
            _mask = torch.ones(c, c, dtype: torch.ScalarType.Bool).tril();
            _maskInter = torch.ones(nc, nc, dtype: torch.ScalarType.Bool).tril();
            _output = new float[config.Batch * config.Model.HiddenSize];
        }

        public ReadOnlySpan<float> Output => _output;

        public void Run()
        {
            using var noGrad = torch.no_grad();
            using var scope = torch.NewDisposeScope();
            var y = Forward();
            y.data<float>().CopyTo(_output, 0);
        }

        private torch.Tensor LayerNorm(torch.Tensor x, string gamma, string beta)
        {
            var mean = x.mean([-1L], keepdim: true);
            var centered = x - mean;
            var variance = (centered * centered).mean([-1L], keepdim: true);
            var inv = torch.where(variance >= 1e-5f, torch.rsqrt(variance + 1e-5f), torch.full_like(variance, 1f / MathF.Sqrt(1e-5f)));
            return _w[gamma] * inv * centered + _w[beta];
        }

        private torch.Tensor Dense(torch.Tensor x, string kernel, string bias) => torch.matmul(x, _w[kernel]) + _w[bias];

        private static torch.Tensor MaskedSoftmax(torch.Tensor s, torch.Tensor mask)
        {
            var masked = torch.where(mask, s, torch.tensor(-1e9f));
            var ex = (masked - masked.amax([-1L], keepdim: true)).exp();
            return ex / (ex.sum(-1, keepdim: true) + 1e-8f);
        }

        private torch.Tensor Forward()
        {
            var cfg = _pc.Model;
            long b = _pc.Batch, n = _pc.SeqLen, h = cfg.HiddenSize, nh = cfg.NumHeads, d = cfg.HeadDim, c = cfg.ChunkSize, nc = n / c;
            float scale = 1f / MathF.Sqrt(d);
            var x = cfg.HasInputProjection ? Dense(_input, CheckpointNames.InputKernel, CheckpointNames.InputBias) : _input;
            for (int l = 1; l <= cfg.NumLayers; l++)
            {
                var hN = LayerNorm(x, CheckpointNames.Block(l, BlockTensor.AttnNormGamma), CheckpointNames.Block(l, BlockTensor.AttnNormBeta));
                var qkv = Dense(hN, CheckpointNames.Block(l, BlockTensor.QkvKernel), CheckpointNames.Block(l, BlockTensor.QkvBias));
                var parts = qkv.split([h, h, h], -1);
                var ch = parts.Select(t => t.reshape(b, n, nh, d).permute(0, 2, 1, 3).reshape(b, nh, nc, c, d)).ToArray();
                var oIntra = torch.matmul(MaskedSoftmax(torch.matmul(ch[0], ch[1].transpose(-1, -2)) * scale, _mask), ch[2]);
                var means = ch.Select(t => t.mean([3L])).ToArray();                       // [B, NH, NC, D]
                var oInter = torch.matmul(MaskedSoftmax(torch.matmul(means[0], means[1].transpose(-1, -2)) * scale, _maskInter), means[2]);
                var g = torch.sigmoid(_w[CheckpointNames.Block(l, BlockTensor.Gate)]).reshape(1, nh, 1, 1, d);
                var o = g * oInter.unsqueeze(3) + (1f - g) * oIntra;
                var rows = o.reshape(b, nh, n, d).permute(0, 2, 1, 3).reshape(b, n, h);
                x = x + Dense(rows, CheckpointNames.Block(l, BlockTensor.OutKernel), CheckpointNames.Block(l, BlockTensor.OutBias));
                var h2 = LayerNorm(x, CheckpointNames.Block(l, BlockTensor.FfnNormGamma), CheckpointNames.Block(l, BlockTensor.FfnNormBeta));
                var up = Dense(h2, CheckpointNames.Block(l, BlockTensor.UpKernel), CheckpointNames.Block(l, BlockTensor.UpBias));
                var gelu = 0.5f * up * (1f + torch.special.erf(up * (1f / MathF.Sqrt(2f))));
                x = x + Dense(gelu, CheckpointNames.Block(l, BlockTensor.DownKernel), CheckpointNames.Block(l, BlockTensor.DownBias));
            }
            var last = x.select(1, n - 1);                                                // [B, H]
            return LayerNorm(last, CheckpointNames.FinalGamma, CheckpointNames.FinalBeta).contiguous();
        }

        public void Dispose()
        {
            foreach (var t in _w.Values) t.Dispose();
            _input.Dispose();
            _mask.Dispose();
            _maskInter.Dispose();
        }
    }
}
