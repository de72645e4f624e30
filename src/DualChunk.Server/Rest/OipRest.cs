using System.Buffers;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using CommunityToolkit.HighPerformance.Buffers;
using DualChunk.Core;
using DualChunk.Extensions.Hosting;
using DualChunk.Server.Pipeline;
using DualChunk.Server.Sequences;
using DualChunk.Server.Sequences.Store;
using static DualChunk.Server.Pipeline.InferenceException;

namespace DualChunk.Server.Rest;

/// <summary>The Open Inference Protocol over REST (<c>/v2/...</c>), with Triton's binary tensor data and sequences.</summary>
internal static class OipRest
{
    public const string HeaderLengthHeader = "Inference-Header-Content-Length";

    // Messages keep their quotes and '+' readable; the body is JSON, never embedded in HTML.
    private static readonly JsonWriterOptions JsonOptions = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static void Map(IEndpointRouteBuilder app)
    {
        app.MapGet("/v2", ServerMetadata);
        app.MapGet("/v2/health/live", (HttpContext c) => WriteJson(c, 200, w => w.WriteBoolean("live", true)));
        app.MapGet("/v2/health/ready", (HttpContext c, DualChunkModelProvider pool, ShutdownDrainState drain, SequenceTable sequences) =>
        {
            // Not ready from the moment shutdown begins (the balancer moves traffic away while sequences are written);
            // a sequence store that cannot be reached is reported, but the replica stays ready (issue 22).
            bool ready = pool.IsReady && !drain.IsDraining;
            return WriteJson(c, ready ? 200 : 503, w =>
            {
                w.WriteBoolean("ready", ready);
                if (drain.IsDraining) w.WriteBoolean("draining", true);
                if (sequences.HasStore) w.WriteString("sequence_store", sequences.StoreHealthy ? "ok" : "degraded");
            });
        });
        app.MapGet("/v2/models/{name}", (HttpContext c, InferencePipeline p, string name) => ModelMetadata(c, p, name, null));
        app.MapGet("/v2/models/{name}/versions/{version}", (HttpContext c, InferencePipeline p, string name, string version) => ModelMetadata(c, p, name, version));
        app.MapGet("/v2/models/{name}/ready", (HttpContext c, InferencePipeline p, string name) => ModelReady(c, p, name, null));
        app.MapGet("/v2/models/{name}/versions/{version}/ready", (HttpContext c, InferencePipeline p, string name, string version) => ModelReady(c, p, name, version));
        app.MapPost("/v2/models/{name}/infer", (HttpContext c, InferencePipeline p, string name) => Infer(c, p, name, null)).DisableAntiforgery();
        app.MapPost("/v2/models/{name}/versions/{version}/infer", (HttpContext c, InferencePipeline p, string name, string version) => Infer(c, p, name, version)).DisableAntiforgery();
    }

    /// <summary>The server's name, version and extensions (REST and gRPC alike).</summary>
    public static (string Name, string Version, string[] Extensions) ServerInfo { get; } = (
        "dualchunk-server",
        typeof(OipRest).Assembly.GetCustomAttributes(typeof(System.Reflection.AssemblyInformationalVersionAttribute), false)
            is [System.Reflection.AssemblyInformationalVersionAttribute a, ..] ? a.InformationalVersion : "0",
        ["binary_tensor_data", "sequence", "sequence(string_id)", "parameters", "model_metadata_properties"]);

    private static Task ServerMetadata(HttpContext context) => WriteJson(context, 200, w =>
    {
        var (name, version, extensions) = ServerInfo;
        w.WriteString("name", name);
        w.WriteString("version", version);
        w.WriteStartArray("extensions");
        foreach (string e in extensions) w.WriteStringValue(e);
        w.WriteEndArray();
    });

    /// <summary>
    /// A model's metadata: the input and output tensors (-1: any size) and, as properties, E, H, C, the output modes
    /// and the limits (REST and gRPC alike).
    /// </summary>
    public static Dictionary<string, string> Properties(ModelTarget target, InferencePipeline pipeline)
    {
        var c = target.Model.Config;
        var o = pipeline.Pool.GetOptions(target.Name);
        var inv = CultureInfo.InvariantCulture;
        var d = new Dictionary<string, string>
        {
            ["embed_dim"] = c.EmbedDim.ToString(inv),
            ["hidden_size"] = c.HiddenSize.ToString(inv),
            ["chunk_size"] = c.ChunkSize.ToString(inv),
            ["num_heads"] = c.NumHeads.ToString(inv),
            ["num_layers"] = c.NumLayers.ToString(inv),
            ["output_modes"] = "last,all,mean",
            ["config"] = c.ToString(),
        };
        if (o.Model.MaxBatch is int mb) d["max_batch"] = mb.ToString(inv);
        if (o.Model.MaxSeqLen is int ms) d["max_seq_len"] = ms.ToString(inv);
        return d;
    }

    private static Task ModelMetadata(HttpContext context, InferencePipeline pipeline, string name, string? version)
    {
        ModelTarget target;
        try
        {
            target = pipeline.Resolve(name, version);
        }
        catch (InferenceException ex)
        {
            return Error(context, ex, pipeline.Options.RetryAfterSeconds);
        }
        using (target)
        {
            var c = target.Model.Config;
            var properties = Properties(target, pipeline);
            return WriteJson(context, 200, w =>
            {
                w.WriteString("name", target.Name);
                w.WriteStartArray("versions");
                w.WriteStringValue(target.Version);
                w.WriteEndArray();
                w.WriteString("platform", "dualchunk");
                w.WriteStartArray("inputs");
                Tensor(w, "input", [-1, -1, c.EmbedDim]);
                w.WriteEndArray();
                w.WriteStartArray("outputs");
                Tensor(w, "output", [-1, -1, c.HiddenSize]);
                w.WriteEndArray();
                w.WriteStartObject("properties");
                foreach (var (k, v) in properties) w.WriteString(k, v);
                w.WriteEndObject();
            });
        }

        static void Tensor(Utf8JsonWriter w, string name, long[] shape)
        {
            w.WriteStartObject();
            w.WriteString("name", name);
            w.WriteString("datatype", TensorData.Fp32);
            w.WriteStartArray("shape");
            foreach (long d in shape) w.WriteNumberValue(d);
            w.WriteEndArray();
            w.WriteEndObject();
        }
    }

    private static Task ModelReady(HttpContext context, InferencePipeline pipeline, string name, string? version)
    {
        try
        {
            using var target = pipeline.Resolve(name, version);
            return WriteJson(context, 200, w =>
            {
                w.WriteString("name", target.Name);
                w.WriteBoolean("ready", true);
            });
        }
        catch (InferenceException ex) when (ex.Kind == InferenceErrorKind.NotReady)
        {
            return WriteJson(context, 503, w =>
            {
                w.WriteString("name", name);
                w.WriteBoolean("ready", false);
                w.WriteString("error", ex.Message);
            });
        }
        catch (InferenceException ex)
        {
            return Error(context, ex, pipeline.Options.RetryAfterSeconds);
        }
    }

    private static async Task Infer(HttpContext context, InferencePipeline pipeline, string name, string? version)
    {
        var ct = context.RequestAborted;
        try
        {
            long? headerLength = null;
            if (context.Request.Headers.TryGetValue(HeaderLengthHeader, out var h))
            {
                if (!long.TryParse(h.ToString(), NumberStyles.None, CultureInfo.InvariantCulture, out long hl))
                    throw new InferenceException($"{HeaderLengthHeader} must be a non-negative integer (the length of the JSON part of the body).");
                headerLength = hl;
            }
            using var admitted = pipeline.Admit();
            using var target = pipeline.Resolve(name, version);
            InferenceRequest request;
            OipResponseOptions options;
            using (var body = await HttpBody.ReadAsync(context.Request, pipeline.Options.MaxRequestBodyBytes, ct))
                (request, options) = OipRequestDecoder.Decode(body.WrittenSpan, headerLength, target.Limits);
            using (request)
            using (var result = await pipeline.InferAsync(target, request, ct))
            {
                context.Response.Headers["Server-Timing"] = Inv($"model;dur={result.ModelTime.TotalMilliseconds:0.###}");
                await WriteResult(context, result, options, ct);
            }
        }
        catch (InferenceException ex)
        {
            await Error(context, ex, pipeline.Options.RetryAfterSeconds);
        }
    }

    private static async Task WriteResult(HttpContext context, InferenceResult result, OipResponseOptions options, CancellationToken ct)
    {
        using var body = new ArrayPoolBufferWriter<byte>(256 + result.Output.Length * (options.BinaryOutput ? 4 : 16));
        using (var w = new Utf8JsonWriter(body, JsonOptions))
        {
            w.WriteStartObject();
            w.WriteString("model_name", result.ModelName);
            w.WriteString("model_version", result.ModelVersion);
            if (options.Id is not null) w.WriteString("id", options.Id);
            w.WriteStartArray("outputs");
            w.WriteStartObject();
            w.WriteString("name", "output");
            w.WriteString("datatype", TensorData.Fp32);
            w.WriteStartArray("shape");
            foreach (int d in result.Shape) w.WriteNumberValue(d);
            w.WriteEndArray();
            if (options.BinaryOutput)
            {
                w.WriteStartObject("parameters");
                w.WriteNumber("binary_data_size", result.Output.Length * 4L);
                w.WriteEndObject();
            }
            else
            {
                w.WriteStartArray("data");
                // float → shortest round-trip text: the client parses back exactly the float32 the model wrote.
                foreach (float v in result.Output.Span) w.WriteNumberValue(v);
                w.WriteEndArray();
            }
            w.WriteEndObject();
            w.WriteEndArray();
            w.WriteEndObject();
        }
        var response = context.Response;
        response.StatusCode = 200;
        if (options.BinaryOutput)
        {
            response.Headers[HeaderLengthHeader] = body.WrittenCount.ToString(CultureInfo.InvariantCulture);
            var bytes = MemoryMarshal.AsBytes(result.Output.Span);
            if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("Binary tensor data is little-endian; this server runs little-endian only.");
            bytes.CopyTo(body.GetSpan(bytes.Length));
            body.Advance(bytes.Length);
            response.ContentType = "application/octet-stream";
        }
        else
        {
            response.ContentType = "application/json";
        }
        response.ContentLength = body.WrittenCount;
        await response.Body.WriteAsync(body.WrittenMemory, ct);
    }

    /// <summary>The protocol's error object <c>{"error": "..."}</c> with the status of the error's kind.</summary>
    public static Task Error(HttpContext context, InferenceException ex, int retryAfterSeconds)
    {
        HttpBody.SetStatus(context, ex, retryAfterSeconds);
        return WriteJson(context, context.Response.StatusCode, w => w.WriteString("error", ex.Message));
    }

    private static async Task WriteJson(HttpContext context, int status, Action<Utf8JsonWriter> write)
    {
        using var body = new ArrayPoolBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(body, JsonOptions))
        {
            w.WriteStartObject();
            write(w);
            w.WriteEndObject();
        }
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        context.Response.ContentLength = body.WrittenCount;
        await context.Response.Body.WriteAsync(body.WrittenMemory);
    }
}
