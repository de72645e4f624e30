using DualChunk.Core;

var builder = WebApplication.CreateBuilder(args);

// One model for the whole process. If the file is missing or damaged, Load throws
// (FileNotFoundException / ModelFormatException) here, the host fails to start, and the
// orchestrator sees a crashed process instead of a service answering 500s.
builder.Services.AddSingleton(_ =>
{
    var model = DualChunkModel.Load(builder.Configuration["Model:Path"] ?? "model.dcw",
        new DualChunkModelOptions { MaxDegreeOfParallelism = 1 }); // requests already run in parallel
    model.WarmUp(maxBatch: 8, maxSeqLen: 512);                     // before the first request
    return model;
});
// Metrics (optional, with the OpenTelemetry.Extensions.Hosting package):
// builder.Services.AddOpenTelemetry().WithMetrics(m => m.AddMeter(DualChunkMetrics.MeterName));

var app = builder.Build();
_ = app.Services.GetRequiredService<DualChunkModel>(); // load eagerly: fail at startup, not on request 1

// POST /embed {"batch":1,"seqLen":64,"input":[... B·N·E floats ...],"mode":"LastTimestep"}
app.MapPost("/embed", (EmbedRequest request, DualChunkModel model, CancellationToken requestAborted) =>
{
    try
    {
        var output = new float[model.OutputLength(request.Batch, request.SeqLen, request.Mode)];
        model.Run(request.Input, request.Batch, request.SeqLen, output, request.Mode, requestAborted);
        return Results.Ok(output);
    }
    catch (ArgumentException ex) // wrong length, N not a multiple of C, NaN/∞, bad batch: the client's fault
    {
        return Results.BadRequest(new { error = ex.Message });
    }
    // OperationCanceledException (client went away): let ASP.NET Core end the request.
});

app.Run();

sealed record EmbedRequest(int Batch, int SeqLen, float[] Input, OutputMode Mode = OutputMode.LastTimestep);
