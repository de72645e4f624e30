using System.Runtime.InteropServices;
using DualChunk.Extensions.Hosting;
using DualChunk.Server.Pipeline;
using DualChunk.Server.Rest;
using DualChunk.Server.Sequences.Store;
using Google.Protobuf;
using Google.Protobuf.Collections;
using global::Grpc.Core;
using static DualChunk.Server.Pipeline.InferenceException;

namespace DualChunk.Server.Grpc;

/// <summary>
/// <c>inference.GRPCInferenceService</c>, the Open Inference Protocol over gRPC, on the same pipeline as REST:
/// inputs in <c>contents.fp32_contents</c> / <c>fp64_contents</c> or <c>raw_input_contents</c>, the output in
/// <c>raw_output_contents</c> (as Triton answers); errors are status codes with REST's messages. ModelInfer's request
/// is read by <see cref="ModelInferRequestMarshaller"/> (<see cref="BindService"/>).
/// </summary>
[BindServiceMethod(typeof(OipGrpcService), nameof(BindService))]
internal sealed class OipGrpcService(InferencePipeline pipeline, DualChunkModelProvider pool, ShutdownDrainState drain) : GRPCInferenceService.GRPCInferenceServiceBase
{
    /// <summary>What <c>MapGrpcService</c> calls (found by the attribute): the generated binding through <see cref="OipServiceBinder"/>.</summary>
    public static void BindService(ServiceBinderBase binder, GRPCInferenceService.GRPCInferenceServiceBase? service)
        => GRPCInferenceService.BindService(new OipServiceBinder(binder), service);

    public override Task<ServerLiveResponse> ServerLive(ServerLiveRequest request, ServerCallContext context)
        => Task.FromResult(new ServerLiveResponse { Live = true });

    public override Task<ServerReadyResponse> ServerReady(ServerReadyRequest request, ServerCallContext context)
        => Task.FromResult(new ServerReadyResponse { Ready = pool.IsReady && !drain.IsDraining }); // not ready once shutdown begins

    public override Task<ModelReadyResponse> ModelReady(ModelReadyRequest request, ServerCallContext context)
    {
        try
        {
            using var target = pipeline.Resolve(request.Name, request.Version);
            return Task.FromResult(new ModelReadyResponse { Ready = true });
        }
        catch (InferenceException ex) when (ex.Kind == InferenceErrorKind.NotReady)
        {
            return Task.FromResult(new ModelReadyResponse { Ready = false });
        }
        catch (InferenceException ex)
        {
            throw ToRpc(ex);
        }
    }

    public override Task<ServerMetadataResponse> ServerMetadata(ServerMetadataRequest request, ServerCallContext context)
    {
        var (name, version, extensions) = OipRest.ServerInfo;
        var response = new ServerMetadataResponse { Name = name, Version = version };
        response.Extensions.AddRange(extensions);
        return Task.FromResult(response);
    }

    public override Task<ModelMetadataResponse> ModelMetadata(ModelMetadataRequest request, ServerCallContext context)
    {
        try
        {
            using var target = pipeline.Resolve(request.Name, request.Version);
            var c = target.Model.Config;
            var response = new ModelMetadataResponse { Name = target.Name, Platform = "dualchunk" };
            response.Versions.Add(target.Version);
            response.Inputs.Add(new ModelMetadataResponse.Types.TensorMetadata { Name = "input", Datatype = TensorData.Fp32, Shape = { -1, -1, c.EmbedDim } });
            response.Outputs.Add(new ModelMetadataResponse.Types.TensorMetadata { Name = "output", Datatype = TensorData.Fp32, Shape = { -1, -1, c.HiddenSize } });
            response.Properties.Add(OipRest.Properties(target, pipeline));
            return Task.FromResult(response);
        }
        catch (InferenceException ex)
        {
            throw ToRpc(ex);
        }
    }

    public override async Task<ModelInferResponse> ModelInfer(ModelInferRequest request, ServerCallContext context)
    {
        var ct = context.CancellationToken;
        try
        {
            using var admitted = pipeline.Admit();
            using var target = pipeline.Resolve(request.ModelName, request.ModelVersion);
            using var decoded = Decode(request, target.Limits);
            ModelInferRequestMarshaller.ReturnRawContents(request); // copied into decoded: back to the pool before the wait
            using var result = await pipeline.InferAsync(target, decoded, ct);
            var response = new ModelInferResponse { ModelName = result.ModelName, ModelVersion = result.ModelVersion, Id = request.Id };
            var output = new ModelInferResponse.Types.InferOutputTensor { Name = "output", Datatype = TensorData.Fp32 };
            foreach (int d in result.Shape) output.Shape.Add(d);
            response.Outputs.Add(output);
            response.RawOutputContents.Add(ByteString.CopyFrom(MemoryMarshal.AsBytes(result.Output.Span)));
            context.ResponseTrailers.Add("server-timing", Inv($"model;dur={result.ModelTime.TotalMilliseconds:0.###}"));
            return response;
        }
        catch (InferenceException ex)
        {
            throw ToRpc(ex);
        }
        finally
        {
            ModelInferRequestMarshaller.ReturnRawContents(request); // when a refusal came before the return above (a second does nothing)
        }
    }

    /// <summary>The gRPC request as the pipeline's: one input "input", data from contents or raw bytes.</summary>
    private static InferenceRequest Decode(ModelInferRequest request, InputLimits limits)
    {
        var (mode, sequence) = ReadParameters(request.Parameters);
        if (request.Inputs.Count != 1)
            throw new InferenceException(Inv($"The request has {request.Inputs.Count} inputs; the model has one, \"input\" ([B, N, {limits.EmbedDim}] or [N, {limits.EmbedDim}], FP32)."));
        foreach (var o in request.Outputs)
        {
            if (o.Name != "output")
                throw new InferenceException($"Unknown output \"{(o.Name.Length > 64 ? o.Name[..64] + "…" : o.Name)}\"; the model's only output is \"output\".");
        }
        var tensor = request.Inputs[0];
        var (batch, seqLen, batched) = OipRequestDecoder.CheckTensor(tensor.Name, tensor.Datatype, tensor.Shape, limits);
        int e = limits.EmbedDim;
        int count = batch * seqLen * e; // within the limits
        var input = ParsedInput.Allocate(batch, seqLen, e, batched);
        try
        {
            var contents = tensor.Contents;
            bool hasContents = contents is not null && (contents.Fp32Contents.Count > 0 || contents.Fp64Contents.Count > 0);
            if (request.RawInputContents.Count > 0)
            {
                if (hasContents)
                    throw new InferenceException("Input \"input\" has both contents and raw_input_contents; send one of them.");
                if (request.RawInputContents.Count != 1)
                    throw new InferenceException(Inv($"raw_input_contents has {request.RawInputContents.Count} entries; it needs one per input (1)."));
                var raw = request.RawInputContents[0].Span;
                int size = TensorData.ElementSize(tensor.Datatype);
                if (raw.Length != (long)count * size)
                    throw new InferenceException(Inv($"raw_input_contents[0] has {raw.Length} bytes; shape [{string.Join(", ", tensor.Shape)}] of {tensor.Datatype} needs {(long)count * size}."));
                TensorData.ReadLittleEndian(raw, tensor.Datatype, input.Writable, seqLen, e);
            }
            else if (tensor.Datatype == TensorData.Fp64)
            {
                var values = contents?.Fp64Contents;
                if (values is null || values.Count != count)
                    throw new InferenceException(Inv($"Input \"input\" (FP64) has {values?.Count ?? 0} values in contents.fp64_contents; shape [{string.Join(", ", tensor.Shape)}] needs {count}."));
                if (contents!.Fp32Contents.Count > 0)
                    throw new InferenceException("Input \"input\" is FP64 but has contents.fp32_contents; send the values in fp64_contents.");
                var into = input.Writable;
                for (int i = 0; i < count; i++) into[i] = TensorData.Finite(values[i], i, seqLen, e);
            }
            else
            {
                var values = contents?.Fp32Contents;
                if (values is null || values.Count != count)
                    throw new InferenceException(Inv($"Input \"input\" (FP32) has {values?.Count ?? 0} values in contents.fp32_contents; shape [{string.Join(", ", tensor.Shape)}] needs {count}."));
                if (contents!.Fp64Contents.Count > 0)
                    throw new InferenceException("Input \"input\" is FP32 but has contents.fp64_contents; send the values in fp32_contents.");
                var into = input.Writable;
                for (int i = 0; i < count; i++) into[i] = TensorData.Finite(values[i], i, seqLen, e); // float → double → float: exact
            }
            return new InferenceRequest(input, mode, sequence);
        }
        catch
        {
            input.Dispose();
            throw;
        }
    }

    private static (DualChunk.Core.OutputMode Mode, SequenceParameters Sequence) ReadParameters(MapField<string, InferParameter> parameters)
    {
        string? mode = null, id = null;
        bool isString = false, start = false, end = false;
        long? length = null;
        foreach (var (key, value) in parameters)
        {
            switch (key)
            {
                case "output_mode":
                    if (value.ParameterChoiceCase != InferParameter.ParameterChoiceOneofCase.StringParam)
                        throw new InferenceException("The parameter \"output_mode\" must be a string_param: \"last\", \"all\" or \"mean\".");
                    mode = value.StringParam;
                    break;
                case "sequence_id":
                    switch (value.ParameterChoiceCase)
                    {
                        case InferParameter.ParameterChoiceOneofCase.Int64Param:
                            if (value.Int64Param < 0) throw new InferenceException("\"sequence_id\" must be an unsigned 64-bit integer or a string.");
                            id = value.Int64Param == 0 ? null : value.Int64Param.ToString(System.Globalization.CultureInfo.InvariantCulture);
                            break;
                        case InferParameter.ParameterChoiceOneofCase.Uint64Param:
                            id = value.Uint64Param == 0 ? null : value.Uint64Param.ToString(System.Globalization.CultureInfo.InvariantCulture);
                            break;
                        case InferParameter.ParameterChoiceOneofCase.StringParam:
                            if (value.StringParam.Length > 256) throw new InferenceException("\"sequence_id\" is longer than 256 characters.");
                            id = value.StringParam.Length == 0 ? null : value.StringParam;
                            isString = true;
                            break;
                        default:
                            throw new InferenceException("\"sequence_id\" must be an int64_param / uint64_param or a string_param.");
                    }
                    break;
                case "sequence_start":
                    start = Bool(value, key);
                    break;
                case "sequence_end":
                    end = Bool(value, key);
                    break;
                case "sequence_length":
                    length = value.ParameterChoiceCase switch
                    {
                        InferParameter.ParameterChoiceOneofCase.Int64Param when value.Int64Param >= 0 => value.Int64Param,
                        InferParameter.ParameterChoiceOneofCase.Uint64Param when value.Uint64Param <= long.MaxValue => (long)value.Uint64Param,
                        _ => throw new InferenceException("\"sequence_length\" must be a non-negative int64_param / uint64_param: the positions the sequence holds before this request."),
                    };
                    break;
                default:
                    break; // other servers' parameters (priority, timeout, ...): ignored
            }
        }
        var sequence = new SequenceParameters(id, isString, start, end, length);
        sequence.Validate();
        return (InferenceRequest.ParseMode(mode, "the request parameter \"output_mode\""), sequence);
    }

    private static bool Bool(InferParameter value, string key) => value.ParameterChoiceCase == InferParameter.ParameterChoiceOneofCase.BoolParam
        ? value.BoolParam
        : throw new InferenceException($"The parameter \"{key}\" must be a bool_param.");

    private static RpcException ToRpc(InferenceException ex) => new(new Status(ErrorMapping.GrpcStatus(ex.Kind), ex.Message));
}
