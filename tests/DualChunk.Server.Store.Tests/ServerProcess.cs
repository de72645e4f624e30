using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using DualChunk.Server.Grpc;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;

namespace DualChunk.Server.Store.Tests;

/// <summary>
/// The real server (DualChunk.Server.dll, the contract command line) as a process on loopback ports: started, waited
/// for, asked OIP sequence requests over REST, and stopped as Kubernetes does (SIGTERM) or as a crash does (SIGKILL).
/// </summary>
internal sealed partial class ServerProcess : IDisposable
{
    private static readonly TimeSpan StartBound = TimeSpan.FromSeconds(90);
    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private readonly HttpClient _http;
    private GrpcChannel? _channel;

    private ServerProcess(Process process, int port, int grpcPort)
    {
        _process = process;
        Port = port;
        GrpcPort = grpcPort;
        _http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(60) };
    }

    /// <summary>The REST port.</summary>
    public int Port { get; }

    /// <summary>The gRPC port.</summary>
    public int GrpcPort { get; }

    /// <summary>The process id.</summary>
    public int Id => _process.Id;

    /// <summary>True once the process exited.</summary>
    public bool HasExited => _process.HasExited;

    /// <summary>What the process wrote (stdout and stderr, interleaved), for failure messages.</summary>
    public string Output
    {
        get
        {
            lock (_output) return _output.ToString();
        }
    }

    /// <summary>
    /// Starts <c>dotnet DualChunk.Server.dll --urls ... --grpc-urls ... --model M --chunk-size C</c> plus
    /// <paramref name="settings"/> (as <c>--Key value</c>), and waits until <c>/v2/health/ready</c> answers 200.
    /// </summary>
    public static async Task<ServerProcess> StartAsync(string model, int chunkSize, params (string Key, string Value)[] settings)
    {
        int port = FreePort(), grpcPort = FreePort();
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = AppContext.BaseDirectory,
        };
        var args = new List<string>
        {
            Path.Combine(AppContext.BaseDirectory, "DualChunk.Server.dll"),
            "--urls", $"http://127.0.0.1:{port}", "--grpc-urls", $"http://127.0.0.1:{grpcPort}",
            "--model", model, "--chunk-size", chunkSize.ToString(CultureInfo.InvariantCulture),
        };
        foreach (var (k, v) in settings)
        {
            args.Add("--" + k);
            args.Add(v);
        }
        foreach (string a in args) psi.ArgumentList.Add(a);
        psi.Environment["Logging__Console__FormatterName"] = "simple";
        psi.Environment["DOTNET_gcServer"] = "0";
        var process = Process.Start(psi) ?? throw new InvalidOperationException("the server did not start");
        var server = new ServerProcess(process, port, grpcPort);
        process.OutputDataReceived += (_, e) => server.Append(e.Data);
        process.ErrorDataReceived += (_, e) => server.Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < StartBound)
        {
            if (process.HasExited)
                throw new InvalidOperationException($"The server exited with {process.ExitCode} before it was ready:\n{server.Output}");
            if (await server.ReadyStatusAsync() == HttpStatusCode.OK) return server;
            await Task.Delay(100);
        }
        server.Dispose();
        throw new InvalidOperationException($"The server was not ready within {StartBound.TotalSeconds} s:\n{server.Output}");
    }

    /// <summary>The status of <c>/v2/health/ready</c>, or null when nothing answers.</summary>
    public async Task<HttpStatusCode?> ReadyStatusAsync()
    {
        try
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            using var response = await _http.GetAsync(new Uri("/v2/health/ready", UriKind.Relative), cts.Token);
            return response.StatusCode;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            return null;
        }
    }

    /// <summary>GET of a path, as text.</summary>
    public async Task<(HttpStatusCode Status, string Body)> GetAsync(string path)
    {
        using var response = await _http.GetAsync(new Uri(path, UriKind.Relative));
        return (response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    /// <summary>
    /// One OIP REST request of a sequence: <paramref name="input"/> [B, k·C, E] and the output as binary tensor data. Returns the status, the output floats (on 200) and the error text (otherwise).
    /// </summary>
    public async Task<InferResult> InferAsync(string model, string sequenceId, float[] input, int batch, int embed, string mode,
        bool start = false, bool end = false, int? sequenceLength = null, CancellationToken cancellationToken = default)
    {
        var parameters = new JsonObject { ["sequence_id"] = sequenceId, ["output_mode"] = mode, ["binary_data_output"] = true };
        if (start) parameters["sequence_start"] = true;
        if (end) parameters["sequence_end"] = true;
        if (sequenceLength is { } n) parameters["sequence_length"] = n;
        var body = new JsonObject
        {
            ["parameters"] = parameters,
            ["inputs"] = new JsonArray
            {
                new JsonObject
                {
                    ["name"] = "input", ["datatype"] = "FP32",
                    ["shape"] = new JsonArray(batch, input.Length / (batch * embed), embed),
                    ["parameters"] = new JsonObject { ["binary_data_size"] = input.Length * 4 },
                },
            },
            ["outputs"] = new JsonArray { new JsonObject { ["name"] = "output", ["parameters"] = new JsonObject { ["binary_data"] = true } } },
        };
        // Binary tensor data both ways: the floats travel exactly.
        byte[] header = Encoding.UTF8.GetBytes(body.ToJsonString());
        var payload = new byte[header.Length + input.Length * 4];
        header.CopyTo(payload, 0);
        for (int i = 0; i < input.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(payload.AsSpan(header.Length + i * 4), input[i]);
        using var content = new ByteArrayContent(payload);
        content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/octet-stream");
        content.Headers.Add("Inference-Header-Content-Length", header.Length.ToString(CultureInfo.InvariantCulture));
        using var response = await _http.PostAsync(new Uri($"/v2/models/{model}/infer", UriKind.Relative), content, cancellationToken);
        var bytes = await response.Content.ReadAsByteArrayAsync(cancellationToken);
        if (response.StatusCode != HttpStatusCode.OK)
            return new InferResult(response.StatusCode, null, Encoding.UTF8.GetString(bytes), response.Headers.RetryAfter?.Delta);
        int jsonLength = response.Headers.TryGetValues("Inference-Header-Content-Length", out var values)
            ? int.Parse(values.First(), CultureInfo.InvariantCulture)
            : throw new InvalidOperationException("A binary response without Inference-Header-Content-Length: " + Encoding.UTF8.GetString(bytes));
        var raw = bytes.AsSpan(jsonLength);
        var output = new float[raw.Length / 4];
        for (int i = 0; i < output.Length; i++) output[i] = BinaryPrimitives.ReadSingleLittleEndian(raw[(i * 4)..]);
        return new InferResult(response.StatusCode, output, Encoding.UTF8.GetString(bytes, 0, jsonLength), null);
    }

    /// <summary>A gRPC client of the server's proto on the gRPC port (cleartext HTTP/2).</summary>
    public GRPCInferenceService.GRPCInferenceServiceClient GrpcClient
        => new((_channel ??= GrpcChannel.ForAddress($"http://127.0.0.1:{GrpcPort}")).CreateCallInvoker());

    /// <summary>
    /// The same sequence request as <see cref="InferAsync"/> over gRPC (ModelInfer, raw tensor contents): the status
    /// code, the output floats (on OK) and the status detail (otherwise).
    /// </summary>
    public async Task<GrpcResult> GrpcInferAsync(string model, string sequenceId, float[] input, int batch, int embed, string mode,
        bool start = false, bool end = false, int? sequenceLength = null)
    {
        var request = new ModelInferRequest { ModelName = model };
        var tensor = new ModelInferRequest.Types.InferInputTensor { Name = "input", Datatype = "FP32" };
        tensor.Shape.AddRange([batch, input.Length / (batch * embed), embed]);
        request.Inputs.Add(tensor);
        var bytes = new byte[input.Length * 4];
        for (int i = 0; i < input.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * 4), input[i]);
        request.RawInputContents.Add(ByteString.CopyFrom(bytes));
        request.Parameters["sequence_id"] = new InferParameter { StringParam = sequenceId };
        request.Parameters["output_mode"] = new InferParameter { StringParam = mode };
        if (start) request.Parameters["sequence_start"] = new InferParameter { BoolParam = true };
        if (end) request.Parameters["sequence_end"] = new InferParameter { BoolParam = true };
        if (sequenceLength is { } n) request.Parameters["sequence_length"] = new InferParameter { Int64Param = n };
        try
        {
            var response = await GrpcClient.ModelInferAsync(request, deadline: DateTime.UtcNow.AddSeconds(60));
            var raw = response.RawOutputContents[0].Span;
            var output = new float[raw.Length / 4];
            for (int i = 0; i < output.Length; i++) output[i] = BinaryPrimitives.ReadSingleLittleEndian(raw[(i * 4)..]);
            return new GrpcResult(StatusCode.OK, output, "");
        }
        catch (RpcException ex)
        {
            return new GrpcResult(ex.StatusCode, null, ex.Status.Detail);
        }
    }

    /// <summary>Sends SIGTERM (what Kubernetes sends to stop a pod).</summary>
    public void Terminate() => Signal(15);

    /// <summary>Sends SIGKILL (a crash, a lost node).</summary>
    public void KillHard() => Signal(9);

    /// <summary>Waits for the exit; the exit code, or null if it did not exit within <paramref name="bound"/>.</summary>
    public async Task<int?> WaitForExitAsync(TimeSpan bound)
    {
        using var cts = new CancellationTokenSource(bound);
        try
        {
            await _process.WaitForExitAsync(cts.Token);
            return _process.ExitCode;
        }
        catch (OperationCanceledException)
        {
            return null;
        }
    }

    public void Dispose()
    {
        _http.Dispose();
        _channel?.Dispose();
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                _process.WaitForExit(10_000);
            }
        }
        catch (InvalidOperationException)
        {
            // already gone
        }
        _process.Dispose();
    }

    private void Signal(int signal)
    {
        if (SysKill(_process.Id, signal) != 0)
            throw new InvalidOperationException($"kill({_process.Id}, {signal}) failed: errno {Marshal.GetLastPInvokeError()}");
    }

    private void Append(string? line)
    {
        if (line is null) return;
        lock (_output) _output.AppendLine(line);
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int SysKill(int pid, int signal);

    internal static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }
}

/// <summary>One sequence request's answer over gRPC.</summary>
/// <param name="Code">The status code.</param>
/// <param name="Output">The output floats on OK.</param>
/// <param name="Detail">The status detail otherwise.</param>
internal sealed record GrpcResult(StatusCode Code, float[]? Output, string Detail);

/// <summary>One sequence request's answer.</summary>
/// <param name="Status">The HTTP status.</param>
/// <param name="Output">The output floats on 200.</param>
/// <param name="Text">The JSON header on 200, the error body otherwise.</param>
/// <param name="RetryAfter">Retry-After, when sent.</param>
internal sealed record InferResult(HttpStatusCode Status, float[]? Output, string Text, TimeSpan? RetryAfter)
{
    /// <summary>The "error" field of an error body (or the body).</summary>
    public string Error
    {
        get
        {
            try
            {
                return JsonNode.Parse(Text)?["error"]?.GetValue<string>() ?? Text;
            }
            catch (JsonException)
            {
                return Text;
            }
        }
    }
}
