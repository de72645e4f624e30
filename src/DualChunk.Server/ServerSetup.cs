using System.Globalization;
using System.Net;
using DualChunk.Extensions.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace DualChunk.Server;

/// <summary>The models the server was started with, and the one <c>/v1/predict</c> serves.</summary>
/// <param name="Names">Every registered model name (each served under its own name by OIP).</param>
/// <param name="DefaultName">The model of <c>/v1/predict</c>: <c>--name</c> (default <c>dualchunk</c>), or the only model.</param>
public sealed record ServerModels(IReadOnlyList<string> Names, string DefaultName);

/// <summary>The command line of the server and the configuration it becomes.</summary>
internal static class ServerSetup
{
    /// <summary>The model name when <c>--name</c> is not given.</summary>
    public const string DefaultModelName = "dualchunk";

    private const string Models = DualChunkServiceCollectionExtensions.ConfigurationSection;

    /// <summary>
    /// <c>--model F [--name M] [--chunk-size C] [--threads T] [--max-batch B] [--max-seq-len N]</c> become
    /// <c>DualChunk:Models:M:*</c>; <c>--max-concurrent-calls</c>, <c>--max-queued-calls</c> become <c>Service:*</c>;
    /// <c>--grpc-urls</c> becomes <c>Server:GrpcUrls</c>. <c>--urls</c> is ASP.NET Core's own.
    /// </summary>
    public static void AddCommandLine(ConfigurationManager configuration, string[] args)
    {
        configuration.AddCommandLine(args, new Dictionary<string, string>
        {
            ["--model"] = "Server:Model:Path",
            ["--name"] = "Server:Model:Name",
            ["--chunk-size"] = "Server:Model:ChunkSize",
            ["--threads"] = "Server:Model:MaxDegreeOfParallelism",
            ["--max-batch"] = "Server:Model:MaxBatch",
            ["--max-seq-len"] = "Server:Model:MaxSeqLen",
            ["--max-concurrent-calls"] = "Service:MaxConcurrentCalls",
            ["--max-queued-calls"] = "Service:MaxQueuedCalls",
            ["--grpc-urls"] = "Server:GrpcUrls",
        });
        var model = configuration.GetSection("Server:Model");
        string name = model["Name"] is { Length: > 0 } n ? n : DefaultModelName;
        var values = new Dictionary<string, string?>();
        // Every Server:Model:* setting but the name is the model's own key (Path, ChunkSize, MaxDegreeOfParallelism,
        // MaxBatch, MaxSeqLen, and any DualChunkHostedModelOptions / DualChunkModelOptions key set that way).
        foreach (var setting in model.GetChildren())
        {
            if (setting.Key != "Name" && setting.Value is { } v) values[$"{Models}:{name}:{setting.Key}"] = v;
        }
        if (values.Count > 0) configuration.AddInMemoryCollection(values);
    }

    /// <summary>
    /// Registers every model of <c>DualChunk:Models</c> (each subsection with a <c>Path</c>; the command line's too),
    /// with the server's default batch and length limits where none is set.
    /// </summary>
    public static ServerModels AddModels(IServiceCollection services, IConfiguration configuration)
    {
        var names = new List<string>();
        foreach (var section in configuration.GetSection(Models).GetChildren())
        {
            if (section.GetChildren().Any()) names.Add(section.Key);
        }
        if (names.Count == 0)
            throw new InvalidOperationException(
                $"No model to serve: pass --model <file> (a .safetensors or .dcw file), or set {Models}:<name>:Path in the configuration.");
        foreach (string name in names)
        {
            services.AddDualChunkModel(name, o =>
            {
                o.Model.MaxBatch ??= ServiceOptions.DefaultMaxBatch;
                o.Model.MaxSeqLen ??= ServiceOptions.DefaultMaxSeqLen;
            });
        }
        string wanted = configuration["Server:Model:Name"] is { Length: > 0 } n ? n : DefaultModelName;
        string defaultName = names.FirstOrDefault(x => string.Equals(x, wanted, StringComparison.OrdinalIgnoreCase))
            ?? (names.Count == 1 ? names[0] : throw new InvalidOperationException(
                $"Several models are configured ({string.Join(", ", names)}) and none is named '{wanted}': pass --name <one of them> for /v1/predict."));
        var models = new ServerModels(names, defaultName);
        services.AddSingleton(models);
        return models;
    }

    /// <summary>
    /// With <c>--grpc-urls</c>: Kestrel listens on <c>--urls</c> with HTTP/1.1 (REST) and on <c>--grpc-urls</c> with
    /// cleartext HTTP/2 (gRPC needs HTTP/2; without TLS a port speaks one or the other). Without it ASP.NET Core's own
    /// <c>--urls</c> handling applies.
    /// </summary>
    public static void ConfigureListeners(WebApplicationBuilder builder)
    {
        string? grpc = builder.Configuration["Server:GrpcUrls"];
        if (string.IsNullOrWhiteSpace(grpc)) return;
        string rest = builder.Configuration["urls"] is { Length: > 0 } u ? u : "http://localhost:5000";
        var restEndpoints = Parse(rest, "--urls");
        var grpcEndpoints = Parse(grpc, "--grpc-urls");
        builder.WebHost.ConfigureKestrel(k =>
        {
            foreach (var (host, port) in restEndpoints) Listen(k, host, port, HttpProtocols.Http1);
            foreach (var (host, port) in grpcEndpoints) Listen(k, host, port, HttpProtocols.Http2);
        });
        // Kestrel then logs "Overriding address(es)": the endpoints above include --urls' own.
    }

    private static List<(string Host, int Port)> Parse(string urls, string option)
    {
        var result = new List<(string, int)>();
        foreach (string text in urls.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            // "http://*:8000" and "http://+:8000" are not valid URIs: read the host by hand.
            string t = text.Replace("://*", "://0.0.0.0", StringComparison.Ordinal).Replace("://+", "://0.0.0.0", StringComparison.Ordinal);
            if (!Uri.TryCreate(t, UriKind.Absolute, out var uri) || uri.Scheme != Uri.UriSchemeHttp || uri.IsDefaultPort && !t.Contains(":80", StringComparison.Ordinal))
                throw new InvalidOperationException(
                    $"{option} '{text}' is not an http://host:port URL; the server listens without TLS (put a TLS proxy in front), e.g. {option} http://127.0.0.1:8000.");
            result.Add((uri.Host, uri.Port));
        }
        return result;
    }

    private static void Listen(KestrelServerOptions k, string host, int port, HttpProtocols protocols)
    {
        Action<ListenOptions> configure = l => l.Protocols = protocols;
        if (host == "localhost") k.ListenLocalhost(port, configure);
        else if (host is "0.0.0.0" or "[::]") k.ListenAnyIP(port, configure);
        else if (IPAddress.TryParse(host.Trim('[', ']'), out var ip)) k.Listen(ip, port, configure);
        else throw new InvalidOperationException(string.Create(CultureInfo.InvariantCulture,
            $"Cannot listen on host '{host}': use an IP address, localhost, 0.0.0.0 or *."));
    }
}
