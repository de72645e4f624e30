using DualChunk.Core;

namespace DualChunk.Bench.Peers;

/// <summary>DualChunk.NET itself, with a pre-planned workspace (its allocation-free path).</summary>
public sealed class EnginePeer(int threads) : IPeer
{
    public string Name => "DualChunk.NET";

    public string Key => "dualchunk";

    public int Threads => threads;

    public string? Unavailable => null;

    public IPeerRunner Create(PeerConfig config, IReadOnlyDictionary<string, CheckpointTensor> weights, float[] input)
        => new Runner(config, weights, input, threads);

    private sealed class Runner : IPeerRunner
    {
        private readonly DualChunkModel _model;
        private readonly Workspace _workspace;
        private readonly float[] _input, _output;
        private readonly int _batch, _seqLen;

        public Runner(PeerConfig config, IReadOnlyDictionary<string, CheckpointTensor> weights, float[] input, int threads)
        {
            _model = DualChunkModel.FromTensors(weights, config.Model, new DualChunkModelOptions { MaxDegreeOfParallelism = threads });
            _batch = config.Batch;
            _seqLen = config.SeqLen;
            _workspace = _model.CreateWorkspace(_batch, _seqLen);
            _input = input;
            _output = new float[_model.OutputLength(_batch, _seqLen, OutputMode.LastTimestep)];
        }

        public ReadOnlySpan<float> Output => _output;

        public void Run() => _model.Run(_input, _batch, _seqLen, _output, OutputMode.LastTimestep, _workspace);

        public void Dispose() => _model.Dispose();
    }
}
