using Google.Protobuf;
using global::Grpc.Core;

namespace DualChunk.Server.Grpc;

/// <summary>
/// Binds the generated <c>inference.GRPCInferenceService</c> methods with two changes to how requests are read:
/// ModelInfer's by <see cref="ModelInferRequestMarshaller"/> (the raw tensor bytes in pooled buffers), and a request
/// that is not protobuf is refused with INVALID_ARGUMENT naming what is wrong (gRPC answers UNKNOWN, "Exception was
/// thrown by handler", for an exception in a deserializer that is not an <see cref="RpcException"/>).
/// </summary>
internal sealed class OipServiceBinder(ServiceBinderBase inner) : ServiceBinderBase
{
    public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, UnaryServerMethod<TRequest, TResponse>? handler)
    {
        var requests = method is Method<ModelInferRequest, ModelInferResponse>
            ? (Marshaller<TRequest>)(object)ModelInferRequestMarshaller.Instance // refusing already
            : Refusing(method.RequestMarshaller);
        inner.AddMethod(new Method<TRequest, TResponse>(method.Type, method.ServiceName, method.Name, requests, method.ResponseMarshaller), handler);
    }

    // The service has unary methods only; the other kinds are bound as generated.
    public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, ClientStreamingServerMethod<TRequest, TResponse>? handler)
        => inner.AddMethod(method, handler);

    public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, ServerStreamingServerMethod<TRequest, TResponse>? handler)
        => inner.AddMethod(method, handler);

    public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, DuplexStreamingServerMethod<TRequest, TResponse>? handler)
        => inner.AddMethod(method, handler);

    /// <summary>
    /// <paramref name="generated"/> with its deserializer's refusals (protobuf's, or <see cref="InvalidDataException"/>
    /// from a marshaller of this project's) turned into INVALID_ARGUMENT naming what is wrong.
    /// </summary>
    public static Marshaller<T> Refusing<T>(Marshaller<T> generated)
    {
        var deserialize = generated.ContextualDeserializer;
        return Marshallers.Create(generated.ContextualSerializer, context =>
        {
            try
            {
                return deserialize(context);
            }
            catch (Exception ex) when (ex is InvalidProtocolBufferException or InvalidDataException)
            {
                throw new RpcException(new Status(StatusCode.InvalidArgument,
                    $"The request is not a valid inference.{typeof(T).Name} message: {ex.Message} Send the message the service's .proto describes."));
            }
        });
    }
}
