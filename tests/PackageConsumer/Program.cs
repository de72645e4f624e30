using DualChunk.Core;

// The README's sample model through the packages only: load, run, compare with Edifice's float64 output.
string samples = args.Length > 0 ? args[0] : Path.Combine("..", "..", "samples", "tiny");
using var model = DualChunkModel.Load(Path.Combine(samples, "model.safetensors"), new DualChunkModelOptions { ChunkSize = 4 });
var (input, shape) = Npy.Read(Path.Combine(samples, "input.npy"));
var output = new float[model.OutputLength(shape[0], shape[1], OutputMode.LastTimestep)];
model.Run(input, shape[0], shape[1], output, OutputMode.LastTimestep);
var (expected, expectedShape) = Npy.Read(Path.Combine(samples, "expected_last_f64.npy"));

double maxRef = expected.Max(Math.Abs), maxErr = output.Select((v, i) => Math.Abs(v - expected[i])).Max();
bool ok = expectedShape.SequenceEqual([shape[0], model.Config.HiddenSize]) && maxErr <= 3e-6 * maxRef;
Console.WriteLine($"package consumer: DualChunk.Core {typeof(DualChunkModel).Assembly.GetName().Version}, model {model.Config}, max |error| {maxErr:G3} (of max |ref| {maxRef:G3}): {(ok ? "ok" : "MISMATCH")}");
return ok ? 0 : 1;
