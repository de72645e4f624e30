using DualChunk.Core;
using Google.Protobuf;
using Onnx;

namespace DualChunk.Bench.Peers;

/// <summary>
/// Builds the DualChunk model as an ONNX graph (opset 17) from our weights, op for op as Edifice
/// writes it: LayerNorm from ReduceMean/Sub/Mul/Sqrt/Where (ONNX's LayerNormalization has no
/// variance clip, Axon's does: <c>var &gt;= eps ? rsqrt(var + eps) : rsqrt(eps)</c>), masked
/// softmax from Where(-1e9)/ReduceMax/Sub/Exp/ReduceSum/Add(1e-8)/Div, exact GELU from Erf,
/// Sigmoid gate, chunk means with ReduceMean over all C positions. Shapes are static per config.
/// For DecoderOnly (<see cref="PeerConfig.IsDecoder"/>) the same attention sits in Edifice's decoder block:
/// RMSNorm (<c>x / sqrt(mean(x²) + 1e-6) · γ</c>, no β) before attention and FFN, and a SwiGLU FFN
/// (<c>(silu(h·Wg + bg) ⊙ (h·Wu + bu))·Wd + bd</c>, SiLU as <c>z · Sigmoid(z)</c>); the final LayerNorm is the same.
/// Input "x" [B, N, E] float; output "y" [B, H] (the last timestep after the final LayerNorm).
/// </summary>
public static class OnnxGraph
{
    private const int Float = (int)TensorProto.Types.DataType.Float;
    private const int Int64 = (int)TensorProto.Types.DataType.Int64;
    private const int Bool = (int)TensorProto.Types.DataType.Bool;

    public static byte[] Build(PeerConfig pc, IReadOnlyDictionary<string, CheckpointTensor> w)
    {
        ArgumentNullException.ThrowIfNull(pc);
        ArgumentNullException.ThrowIfNull(w);
        var cfg = pc.Model;
        int b = pc.Batch, n = pc.SeqLen, e = cfg.EmbedDim, h = cfg.HiddenSize, nh = cfg.NumHeads, d = cfg.HeadDim, c = cfg.ChunkSize, nc = n / c;
        var g = new Builder();
        bool decoder = pc.IsDecoder;
        g.Graph.Name = decoder ? "decoder_only_dual_chunk" : "dual_chunk";
        g.Graph.Input.Add(ValueInfo("x", [b, n, e]));
        g.Graph.Output.Add(ValueInfo("y", [b, h]));

        // Shared constants.
        string eps = g.Scalar("eps", 1e-5f), rsqrtEps = g.Scalar("rsqrt_eps", 1f / MathF.Sqrt(1e-5f));
        string scale = g.Scalar("scale", 1f / MathF.Sqrt(d)), maskValue = g.Scalar("mask_value", -1e9f);
        string denomEps = g.Scalar("denom_eps", 1e-8f), one = g.Scalar("one", 1f);
        // Only what the architecture uses (ORT warns about unused initializers): RMSNorm's ε, or GELU's constants.
        string rmsEps = decoder ? g.Scalar("rms_eps", 1e-6f) : "";
        string half = decoder ? "" : g.Scalar("half", 0.5f), invSqrt2 = decoder ? "" : g.Scalar("inv_sqrt2", 1f / MathF.Sqrt(2f));
        string lastAxis = g.Int64s("axis_last", [-1]);
        string maskIntra = g.CausalMask("mask_intra", c), maskInter = g.CausalMask("mask_inter", nc);
        string shapeHeads = g.Int64s("shape_heads", [b, n, nh, d]);
        string shapeChunks = g.Int64s("shape_chunks", [b, nh, nc, c, d]);
        string shapeBackHeads = g.Int64s("shape_back_heads", [b, nh, n, d]);
        string shapeRows = g.Int64s("shape_rows", [b, n, h]);
        string splitSizes = g.Int64s("split_qkv", [h, h, h]);

        string LayerNorm(string x, string gamma, string beta, string p)
        {
            string mean = g.Node("ReduceMean", [x], p + "_mean", ("axes", new long[] { -1 }), ("keepdims", 1L));
            string centered = g.Node("Sub", [x, mean], p + "_centered");
            string sq = g.Node("Mul", [centered, centered], p + "_sq");
            string variance = g.Node("ReduceMean", [sq], p + "_var", ("axes", new long[] { -1 }), ("keepdims", 1L));
            string ok = g.Node("GreaterOrEqual", [variance, eps], p + "_var_ok");     // NaN -> false -> rsqrt(eps)
            string sd = g.Node("Sqrt", [g.Node("Add", [variance, eps], p + "_var_eps")], p + "_sd");
            string inv = g.Node("Div", [one, sd], p + "_inv");
            string invClipped = g.Node("Where", [ok, inv, rsqrtEps], p + "_inv_clip");
            string s = g.Node("Mul", [g.Weight(gamma, w), invClipped], p + "_scale");
            return g.Node("Add", [g.Node("Mul", [s, centered], p + "_scaled"), g.Weight(beta, w)], p);
        }

        // Edifice's RMSNorm: no mean subtraction, no clip, no β.
        string RmsNorm(string x, string gamma, string p)
        {
            string meanSquare = g.Node("ReduceMean", [g.Node("Mul", [x, x], p + "_sq")], p + "_ms", ("axes", new long[] { -1 }), ("keepdims", 1L));
            string inv = g.Node("Div", [one, g.Node("Sqrt", [g.Node("Add", [meanSquare, rmsEps], p + "_ms_eps")], p + "_rms")], p + "_inv");
            return g.Node("Mul", [g.Node("Mul", [x, inv], p + "_normed"), g.Weight(gamma, w)], p);
        }

        // The block's tensor names: DualChunk.build's, or the decoder's for the same role.
        string T(int l, BlockTensor build, DecoderBlockTensor dec) => decoder ? CheckpointNames.DecoderBlock(l, dec) : CheckpointNames.Block(l, build);

        string Dense(string x, string kernel, string bias, string p)
            => g.Node("Add", [g.Node("MatMul", [x, g.Weight(kernel, w)], p + "_mm"), g.Weight(bias, w)], p);

        string MaskedSoftmax(string scores, string mask, string p)
        {
            string masked = g.Node("Where", [mask, scores, maskValue], p + "_masked");
            string max = g.Node("ReduceMax", [masked], p + "_max", ("axes", new long[] { -1 }), ("keepdims", 1L));
            string ex = g.Node("Exp", [g.Node("Sub", [masked, max], p + "_shifted")], p + "_exp");
            string sum = g.Node("ReduceSum", [ex, lastAxis], p + "_sum", ("keepdims", 1L));
            return g.Node("Div", [ex, g.Node("Add", [sum, denomEps], p + "_denom")], p);
        }

        string x = pc.Model.HasInputProjection ? Dense("x", CheckpointNames.InputKernel, CheckpointNames.InputBias, "input_projection") : "x";
        for (int l = 1; l <= cfg.NumLayers; l++)
        {
            string p = $"l{l}";
            string hN = decoder ? RmsNorm(x, T(l, BlockTensor.AttnNormGamma, DecoderBlockTensor.AttnNormGamma), p + "_attn_norm")
                : LayerNorm(x, CheckpointNames.Block(l, BlockTensor.AttnNormGamma), CheckpointNames.Block(l, BlockTensor.AttnNormBeta), p + "_attn_norm");
            string qkv = Dense(hN, T(l, BlockTensor.QkvKernel, DecoderBlockTensor.QkvKernel), T(l, BlockTensor.QkvBias, DecoderBlockTensor.QkvBias), p + "_qkv");
            string[] parts = g.Nodes("Split", [qkv, splitSizes], [p + "_q", p + "_k", p + "_v"], ("axis", -1L));
            var chunked = new string[3];
            for (int i = 0; i < 3; i++)
            {
                string r = g.Node("Reshape", [parts[i], shapeHeads], parts[i] + "_heads");                         // [B, N, NH, D]
                string t = g.Node("Transpose", [r], parts[i] + "_bhnd", ("perm", new long[] { 0, 2, 1, 3 }));   // [B, NH, N, D]
                chunked[i] = g.Node("Reshape", [t, shapeChunks], parts[i] + "_chunks");                        // [B, NH, NC, C, D]
            }
            // Intra-chunk causal attention.
            string kT = g.Node("Transpose", [chunked[1]], p + "_kT", ("perm", new long[] { 0, 1, 2, 4, 3 }));
            string sIntra = g.Node("Mul", [g.Node("MatMul", [chunked[0], kT], p + "_qk"), scale], p + "_s_intra");
            string oIntra = g.Node("MatMul", [MaskedSoftmax(sIntra, maskIntra, p + "_p_intra"), chunked[2]], p + "_o_intra");
            // Inter-chunk attention over chunk means (all C positions of each chunk).
            var means = new string[3];
            for (int i = 0; i < 3; i++)
                means[i] = g.Node("ReduceMean", [chunked[i]], parts[i] + "_mean", ("axes", new long[] { 3 }), ("keepdims", 0L)); // [B, NH, NC, D]
            string kMeanT = g.Node("Transpose", [means[1]], p + "_kmT", ("perm", new long[] { 0, 1, 3, 2 }));
            string sInter = g.Node("Mul", [g.Node("MatMul", [means[0], kMeanT], p + "_qk_inter"), scale], p + "_s_inter");
            string oInter = g.Node("MatMul", [MaskedSoftmax(sInter, maskInter, p + "_p_inter"), means[2]], p + "_o_inter");
            string oInterB = g.Node("Unsqueeze", [oInter, g.Int64s(p + "_unsq_axes", [3])], p + "_o_inter_b"); // [B, NH, NC, 1, D]
            // Blend: o = g ⊙ inter + (1 - g) ⊙ intra, gate [NH, D] viewed as [1, NH, 1, 1, D].
            string gate = g.Node("Sigmoid", [g.Weight(T(l, BlockTensor.Gate, DecoderBlockTensor.Gate), w, [1, nh, 1, 1, d])], p + "_gate");
            string blended = g.Node("Add", [
                g.Node("Mul", [gate, oInterB], p + "_g_inter"),
                g.Node("Mul", [g.Node("Sub", [one, gate], p + "_one_minus_g"), oIntra], p + "_g_intra")], p + "_blend");
            string back = g.Node("Reshape", [blended, shapeBackHeads], p + "_o_bhnd");
            string rows = g.Node("Reshape", [g.Node("Transpose", [back], p + "_o_bnhd", ("perm", new long[] { 0, 2, 1, 3 })), shapeRows], p + "_o");
            x = g.Node("Add", [x, Dense(rows, T(l, BlockTensor.OutKernel, DecoderBlockTensor.OutKernel), T(l, BlockTensor.OutBias, DecoderBlockTensor.OutBias), p + "_attn_out")], p + "_res1");
            if (decoder)
            {
                // SwiGLU FFN.
                string hD = RmsNorm(x, CheckpointNames.DecoderBlock(l, DecoderBlockTensor.FfnNormGamma), p + "_ffn_norm");
                string gateLin = Dense(hD, CheckpointNames.DecoderBlock(l, DecoderBlockTensor.GateKernel), CheckpointNames.DecoderBlock(l, DecoderBlockTensor.GateBias), p + "_ffn_gate");
                string upLin = Dense(hD, CheckpointNames.DecoderBlock(l, DecoderBlockTensor.UpKernel), CheckpointNames.DecoderBlock(l, DecoderBlockTensor.UpBias), p + "_ffn_up");
                string silu = g.Node("Mul", [gateLin, g.Node("Sigmoid", [gateLin], p + "_gate_sigmoid")], p + "_silu");
                string glu = g.Node("Mul", [silu, upLin], p + "_glu");
                x = g.Node("Add", [x, Dense(glu, CheckpointNames.DecoderBlock(l, DecoderBlockTensor.DownKernel), CheckpointNames.DecoderBlock(l, DecoderBlockTensor.DownBias), p + "_ffn_down")], p + "_res2");
                continue;
            }
            // FFN with exact GELU.
            string h2 = LayerNorm(x, CheckpointNames.Block(l, BlockTensor.FfnNormGamma), CheckpointNames.Block(l, BlockTensor.FfnNormBeta), p + "_ffn_norm");
            string up = Dense(h2, CheckpointNames.Block(l, BlockTensor.UpKernel), CheckpointNames.Block(l, BlockTensor.UpBias), p + "_ffn_up");
            string erf = g.Node("Erf", [g.Node("Mul", [up, invSqrt2], p + "_up_scaled")], p + "_erf");
            string gelu = g.Node("Mul", [g.Node("Mul", [up, half], p + "_up_half"), g.Node("Add", [erf, one], p + "_erf1")], p + "_gelu");
            x = g.Node("Add", [x, Dense(gelu, CheckpointNames.Block(l, BlockTensor.DownKernel), CheckpointNames.Block(l, BlockTensor.DownBias), p + "_ffn_down")], p + "_res2");
        }
        // Last timestep, then final_norm (LayerNorm is per row, so slicing first gives the same numbers).
        string last = g.Node("Gather", [x, g.Int64Scalar("last_index", n - 1)], "last", ("axis", 1L)); // [B, H]
        string y = LayerNorm(last, CheckpointNames.FinalGamma, CheckpointNames.FinalBeta, "final_norm");
        g.Node("Identity", [y], "y");

        var model = new ModelProto { IrVersion = 8, ProducerName = "DualChunk.Bench.Peers", Graph = g.Graph };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 17 });
        return model.ToByteArray();
    }

    private static ValueInfoProto ValueInfo(string name, long[] shape)
    {
        var tensorType = new TypeProto.Types.Tensor { ElemType = Float, Shape = new TensorShapeProto() };
        foreach (long s in shape) tensorType.Shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = s });
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = tensorType } };
    }

    private sealed class Builder
    {
        private readonly HashSet<string> _initializers = new(StringComparer.Ordinal);

        public GraphProto Graph { get; } = new();

        public string Node(string op, string[] inputs, string output, params (string Name, object Value)[] attributes)
            => Nodes(op, inputs, [output], attributes)[0];

        public string[] Nodes(string op, string[] inputs, string[] outputs, params (string Name, object Value)[] attributes)
        {
            var node = new NodeProto { OpType = op, Name = outputs[0] + "_" + op };
            node.Input.AddRange(inputs);
            node.Output.AddRange(outputs);
            foreach (var (name, value) in attributes)
            {
                var a = new AttributeProto { Name = name };
                switch (value)
                {
                    case long i: a.Type = AttributeProto.Types.AttributeType.Int; a.I = i; break;
                    case long[] ints: a.Type = AttributeProto.Types.AttributeType.Ints; a.Ints.AddRange(ints); break;
                    case float f: a.Type = AttributeProto.Types.AttributeType.Float; a.F = f; break;
                    default: throw new ArgumentException($"Unsupported attribute {name}.");
                }
                node.Attribute.Add(a);
            }
            Graph.Node.Add(node);
            return outputs;
        }

        public string Weight(string name, IReadOnlyDictionary<string, CheckpointTensor> w, long[]? shape = null)
        {
            var t = w[name];
            string id = shape is null ? name : name + "_reshaped";
            if (_initializers.Add(id))
                Add(id, shape ?? t.Shape.Select(s => (long)s).ToArray(), Float, System.Runtime.InteropServices.MemoryMarshal.AsBytes(t.Data.Span));
            return id;
        }

        public string Scalar(string name, float value)
        {
            Add(name, [], Float, BitConverter.GetBytes(value));
            return name;
        }

        public string Int64s(string name, long[] values)
        {
            Add(name, [values.Length], Int64, System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
            return name;
        }

        public string Int64Scalar(string name, long value)
        {
            Add(name, [], Int64, BitConverter.GetBytes(value));
            return name;
        }

        /// <summary>[T, T] bool, true where j ≤ i (kept), false where Edifice writes -1e9.</summary>
        public string CausalMask(string name, int t)
        {
            var m = new byte[t * t];
            for (int i = 0; i < t; i++)
                for (int j = 0; j <= i; j++) m[i * t + j] = 1;
            Add(name, [t, t], Bool, m);
            return name;
        }

        private void Add(string name, long[] dims, int type, ReadOnlySpan<byte> raw)
        {
            var t = new TensorProto { Name = name, DataType = type, RawData = ByteString.CopyFrom(raw) };
            t.Dims.AddRange(dims);
            Graph.Initializer.Add(t);
        }
    }
}
