using BenchmarkDotNet.Running;
using DualChunk.Bench;
using DualChunk.Core;

if (args is ["export-random", var dir])
{
    // The default-dims model (E=287, H=256, NH=8, L=4, C=64, random weights) as m.dcw and m.safetensors,
    // for the CLI's load / first-call / RSS measurements (docs/benchmarks.md, "serving").
    var config = new ModelConfig(287, 256, 8, 4, 64, 1024);
    var tensors = RandomWeights.Create(config, 1);
    Directory.CreateDirectory(dir);
    DcwFile.Write(Path.Combine(dir, "m.dcw"), config, tensors);
    SafetensorsWriter.Write(Path.Combine(dir, "m.safetensors"), config, tensors);
    return;
}

BenchmarkSwitcher.FromAssembly(typeof(EndToEndBenchmarks).Assembly).Run(args);
