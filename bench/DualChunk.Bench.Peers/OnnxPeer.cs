using DualChunk.Core;
using Microsoft.ML.OnnxRuntime;

namespace DualChunk.Bench.Peers;

/// <summary>
/// ONNX Runtime on the graph <see cref="OnnxGraph"/> builds from our weights: CPU provider, graph
/// optimisation level "all", IntraOpNumThreads equal to ours, sequential execution, and the
/// allocation-free call path: IOBinding with the input and output OrtValues bound once over our
/// own float[] buffers, then <c>RunWithBinding</c> per call.
/// </summary>
public sealed class OnnxPeer(int threads) : IPeer
{
    public string Name => "ONNX Runtime 1.31.1";

    public string Key => "onnx";

    public int Threads => threads;

    public string? Unavailable => null;

    public IPeerRunner Create(PeerConfig config, IReadOnlyDictionary<string, CheckpointTensor> weights, float[] input)
        => new Runner(config, weights, input, threads);

    private sealed class Runner : IPeerRunner
    {
        private readonly InferenceSession _session;
        private readonly SessionOptions _options;
        private readonly RunOptions _runOptions = new();
        private readonly OrtIoBinding _binding;
        private readonly OrtValue _inputValue, _outputValue;
        private readonly float[] _output;

        public Runner(PeerConfig config, IReadOnlyDictionary<string, CheckpointTensor> weights, float[] input, int threads)
        {
            _options = new SessionOptions
            {
                IntraOpNumThreads = threads,
                InterOpNumThreads = 1,
                ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
                GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
            };
            _session = new InferenceSession(OnnxGraph.Build(config, weights), _options);
            _output = new float[config.Batch * config.Model.HiddenSize];
            _inputValue = OrtValue.CreateTensorValueFromMemory(input, [config.Batch, config.SeqLen, config.Model.EmbedDim]);
            _outputValue = OrtValue.CreateTensorValueFromMemory(_output, [config.Batch, config.Model.HiddenSize]);
            _binding = _session.CreateIoBinding();
            _binding.BindInput("x", _inputValue);
            _binding.BindOutput("y", _outputValue);
        }

        public ReadOnlySpan<float> Output => _output;

        public void Run() => _session.RunWithBinding(_runOptions, _binding);

        public void Dispose()
        {
            _binding.Dispose();
            _inputValue.Dispose();
            _outputValue.Dispose();
            _runOptions.Dispose();
            _session.Dispose();
            _options.Dispose();
        }
    }
}
