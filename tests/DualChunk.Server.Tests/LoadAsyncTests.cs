using System.Net;
using System.Runtime.InteropServices;
using DualChunk.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace DualChunk.Server.Tests;

/// <summary>
/// <see cref="DualChunkModel.LoadAsync(Stream, DualChunkModelOptions, long, CancellationToken)"/> on an ASP.NET Core
/// request body, which (as on Kestrel, and in the test server by default) refuses synchronous reads.
/// </summary>
[TestFixture]
public sealed class LoadAsyncTests
{
    private const int Batch = 2, SeqLen = 8;

    [Test]
    public async Task LoadAsyncReadsAModelPostedAsARequestBodyWhereLoadCannot()
    {
        using var factory = ServerHarness.Start().WithWebHostBuilder(b => b.ConfigureServices(s => s.AddSingleton<IStartupFilter>(new LoadEndpoint())));
        using var client = await ServerHarness.RestClient(factory);
        byte[] file = await File.ReadAllBytesAsync(ServerHarness.TinyModel);

        using var loaded = await client.PostAsync("/test/load?async=true", new ByteArrayContent(file));
        byte[] body = await loaded.Content.ReadAsByteArrayAsync();
        using var refused = await client.PostAsync("/test/load?async=false", new ByteArrayContent(file));
        string refusal = await refused.Content.ReadAsStringAsync();

        using var reference = DualChunkModel.Load(ServerHarness.TinyModel, 4);
        var expected = reference.Run(Input(), Batch, SeqLen, OutputMode.All);
        Assert.Multiple(() =>
        {
            Assert.That(loaded.StatusCode, Is.EqualTo(HttpStatusCode.OK), System.Text.Encoding.UTF8.GetString(body));
            Assert.That(MemoryMarshal.Cast<byte, float>(body).ToArray(), Is.EqualTo(expected), "the model read from the body computes what the file's does");
            Assert.That(refused.StatusCode, Is.EqualTo(HttpStatusCode.InternalServerError), "the synchronous Load(Stream) cannot read such a body");
            Assert.That(refusal, Does.Contain("Synchronous operations are disallowed"));
        });
    }

    [Test]
    public async Task LoadAsyncFromAPathEqualsLoad()
    {
        using var reference = DualChunkModel.Load(ServerHarness.TinyModel, 4);
        using var model = await DualChunkModel.LoadAsync(ServerHarness.TinyModel, new DualChunkModelOptions { ChunkSize = 4 });
        Assert.That(model.Run(Input(), Batch, SeqLen, OutputMode.All), Is.EqualTo(reference.Run(Input(), Batch, SeqLen, OutputMode.All)));
        Assert.That(async () => await DualChunkModel.LoadAsync(ServerHarness.TinyModel, new DualChunkModelOptions { ChunkSize = 4 }, new CancellationToken(true)),
            Throws.InstanceOf<OperationCanceledException>());
    }

    private static float[] Input() => RandomWeights.Input(Batch * SeqLen * ServerHarness.E, 5);

    /// <summary><c>POST /test/load?async=true|false</c>: loads the body as a model, answers its All output on <see cref="Input"/> as raw floats.</summary>
    private sealed class LoadEndpoint : IStartupFilter
    {
        public Action<IApplicationBuilder> Configure(Action<IApplicationBuilder> next) => app =>
        {
            app.Map("/test/load", load => load.Run(async context =>
            {
                try
                {
                    var options = new DualChunkModelOptions { ChunkSize = 4 };
                    using var model = context.Request.Query["async"] == "true"
                        ? await DualChunkModel.LoadAsync(context.Request.Body, options, cancellationToken: context.RequestAborted)
                        : DualChunkModel.Load(context.Request.Body, options);
                    var output = model.Run(Input(), Batch, SeqLen, OutputMode.All);
                    await context.Response.Body.WriteAsync(MemoryMarshal.AsBytes(output.AsSpan()).ToArray());
                }
                catch (InvalidOperationException ex)
                {
                    context.Response.StatusCode = StatusCodes.Status500InternalServerError;
                    await context.Response.WriteAsync(ex.Message);
                }
            }));
            next(app);
        };
    }
}
