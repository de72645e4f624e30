using DualChunk.Core;

namespace DualChunk.Server.Tests;

/// <summary>Random model files in a per-test temporary directory.</summary>
internal sealed class TestModels : IDisposable
{
    /// <summary>A small model: E=12, H=32, NH=4, L=2, C=4, F=64.</summary>
    public static ModelConfig Small { get; } = new(12, 32, 4, 2, 4, 64);

    public TestModels() => Directory.CreateDirectory(Dir);

    public string Dir { get; } = Path.Combine(Path.GetTempPath(), "dualchunk-hosting-" + Guid.NewGuid().ToString("N"));

    /// <summary>Writes a random .dcw of <see cref="Small"/> with <paramref name="seed"/> atomically (temp file, then rename).</summary>
    public string Write(string name, int seed, ModelConfig? config = null)
    {
        string path = Path.Combine(Dir, name);
        string temp = path + ".tmp" + Guid.NewGuid().ToString("N");
        var c = config ?? Small;
        DcwFile.Write(temp, c, RandomWeights.Create(c, seed));
        File.Move(temp, path, overwrite: true);
        return path;
    }

    /// <summary>Replaces <paramref name="path"/> atomically with bytes that are not a model.</summary>
    public static void WriteGarbage(string path)
    {
        string temp = path + ".tmp" + Guid.NewGuid().ToString("N");
        File.WriteAllBytes(temp, "DCWEIGHT this is not a weights file"u8.ToArray());
        File.Move(temp, path, overwrite: true);
    }

    public static float[] Run(DualChunkModel model, float[] input, int batch, int seqLen, OutputMode mode = OutputMode.LastTimestep)
    {
        var output = new float[model.OutputLength(batch, seqLen, mode)];
        model.Run(input, batch, seqLen, output, mode);
        return output;
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(Dir, recursive: true);
        }
        catch (IOException)
        {
            // best effort
        }
    }
}
