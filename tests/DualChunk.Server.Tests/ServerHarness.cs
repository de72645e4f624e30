using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using DualChunk.Extensions.Hosting;
using DualChunk.Server.Grpc;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.DependencyInjection;

namespace DualChunk.Server.Tests;

/// <summary>The server in process (WebApplicationFactory), its REST and gRPC clients, and the CLI as the reference.</summary>
internal static class ServerHarness
{
    public static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);
    public const int E = 32, H = 32, C = 4; // samples/tiny

    public static string TinyModel => Path.Combine(AppContext.BaseDirectory, "tiny", "model.safetensors");

    public static WebApplicationFactory<Program> Start(params (string Key, string Value)[] settings)
        => new WebApplicationFactory<Program>().WithWebHostBuilder(b =>
        {
            b.UseSetting("DualChunk:Models:dualchunk:Path", TinyModel);
            b.UseSetting("DualChunk:Models:dualchunk:ChunkSize", "4");
            foreach (var (k, v) in settings) b.UseSetting(k, v);
        });

    public static async Task<HttpClient> RestClient(WebApplicationFactory<Program> factory)
    {
        var client = factory.CreateClient(new WebApplicationFactoryClientOptions { AllowAutoRedirect = false });
        await factory.Services.GetRequiredService<DualChunkModelProvider>().Loaded.WaitAsync(Bound);
        return client;
    }

    public static async Task<GRPCInferenceService.GRPCInferenceServiceClient> GrpcClient(WebApplicationFactory<Program> factory)
    {
        _ = factory.Server; // starts the host
        await factory.Services.GetRequiredService<DualChunkModelProvider>().Loaded.WaitAsync(Bound);
        var channel = GrpcChannel.ForAddress(factory.Server.BaseAddress, new GrpcChannelOptions
        {
            HttpHandler = factory.Server.CreateHandler(),
            MaxReceiveMessageSize = null,
            MaxSendMessageSize = null,
        });
        return new GRPCInferenceService.GRPCInferenceServiceClient(channel);
    }

    /// <summary>Runs `dualchunk run` or `dualchunk stream` (the real CLI, as a process) and returns its output's floats.</summary>
    public static float[] CliOutput(string command, float[] input, int[] shape, string mode) =>
        NpyData(CliOutputFile(command, Npy(input, shape), mode));

    /// <summary>Runs `dualchunk run` or `dualchunk stream` on the tiny model and returns its output file's bytes.</summary>
    public static byte[] CliOutputFile(string command, byte[] inputNpy, string mode)
    {
        string dir = Path.Combine(Path.GetTempPath(), "dualchunk-cli-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            string inPath = Path.Combine(dir, "in.npy"), outPath = Path.Combine(dir, "out.npy");
            File.WriteAllBytes(inPath, inputNpy);
            var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var a in new[] { Path.Combine(AppContext.BaseDirectory, "dualchunk.dll"), command, "--model", TinyModel, "--chunk-size", "4", "--input", inPath, "--output", outPath, "--output-mode", mode })
                psi.ArgumentList.Add(a);
            using var p = Process.Start(psi)!;
            var stderr = p.StandardError.ReadToEndAsync();
            _ = p.StandardOutput.ReadToEndAsync();
            if (!p.WaitForExit(60_000))
            {
                p.Kill(entireProcessTree: true);
                Assert.Fail($"dualchunk {command} did not finish in 60 s");
            }
            Assert.That(p.ExitCode, Is.Zero, () => $"dualchunk {command} failed: " + stderr.Result);
            return File.ReadAllBytes(outPath);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    public static byte[] Npy(float[] data, params int[] shape)
    {
        string shapeText = shape.Length == 1 ? $"({shape[0]},)" : "(" + string.Join(", ", shape) + ")";
        string dict = $"{{'descr': '<f4', 'fortran_order': False, 'shape': {shapeText}, }}";
        string text = dict + new string(' ', 63 - (10 + dict.Length) % 64) + "\n";
        var bytes = new byte[10 + text.Length + data.Length * 4];
        ReadOnlySpan<byte> magic = [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];
        magic.CopyTo(bytes);
        bytes[6] = 1;
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(8), (ushort)text.Length);
        Encoding.ASCII.GetBytes(text, bytes.AsSpan(10));
        for (int i = 0; i < data.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(10 + text.Length + i * 4), data[i]);
        return bytes;
    }

    public static float[] NpyData(byte[] npy)
    {
        int headerLength = BinaryPrimitives.ReadUInt16LittleEndian(npy.AsSpan(8));
        return Floats(npy.AsSpan(10 + headerLength));
    }

    public static float[] Floats(ReadOnlySpan<byte> data)
    {
        var result = new float[data.Length / 4];
        for (int i = 0; i < result.Length; i++) result[i] = BinaryPrimitives.ReadSingleLittleEndian(data[(i * 4)..]);
        return result;
    }

    public static byte[] Bytes(float[] data)
    {
        var bytes = new byte[data.Length * 4];
        for (int i = 0; i < data.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * 4), data[i]);
        return bytes;
    }

    public static string Numbers(IEnumerable<float> data) => string.Join(",", data.Select(v => v.ToString("R", CultureInfo.InvariantCulture)));

    /// <summary>Random input that is not all zeros (the tests compare outputs, not their own arithmetic).</summary>
    public static float[] Input(int count, int seed) => DualChunk.Core.RandomWeights.Input(count, seed);
}
