namespace DualChunk.Core;

/// <summary>TEMPORARY stub until the loading branch lands.</summary>
public static class WeightsLoader
{
    /// <summary>Loads a weights file.</summary>
    public static (ModelConfig Config, Dictionary<string, Tensor> Tensors, string Format) Load(string path, int? chunkSize)
    {
        var tensors = SafetensorsReader.Read(path);
        return (TensorSetValidator.Infer(tensors, chunkSize ?? 64), tensors, "safetensors");
    }
}
