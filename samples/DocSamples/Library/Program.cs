using DualChunk.Core;

// Load once (immutable, thread-safe, IDisposable); share it across requests. The file is read into memory:
// the model does not depend on it after Load returns (MemoryMap = true opts into mapping; see docs/api.md).
using var model = DualChunkModel.Load("samples/tiny/model.safetensors", new DualChunkModelOptions { ChunkSize = 4 });
model.WarmUp(maxBatch: 8, maxSeqLen: 256);            // JIT every path, touch the weights, plan the pool

var (input, shape) = Npy.Read("samples/tiny/input.npy");  // float32 or float64 .npy, [B, N, E]
int batch = shape[0], seqLen = shape[1];
float[] output = new float[model.OutputLength(batch, seqLen, OutputMode.LastTimestep)];  // [B, H]
model.Run(input, batch, seqLen, output, OutputMode.LastTimestep, CancellationToken.None); // allocation-free
Npy.Write("out.npy", output, [batch, model.Config.HiddenSize]);
