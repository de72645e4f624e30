using System.Buffers;
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
            ? (Marshaller<TRequest>)(object)ModelInferRequestMarshaller.Instance
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

    /// <summary><paramref name="parser"/>'s message from <paramref name="payload"/>, or INVALID_ARGUMENT saying why not.</summary>
    public static T Parse<T>(MessageParser<T> parser, in ReadOnlySequence<byte> payload) where T : IMessage<T>
    {
        try
        {
            return parser.ParseFrom(payload);
        }
        catch (InvalidProtocolBufferException ex)
        {
            throw NotProtobuf(typeof(T).Name, ex.Message);
        }
    }

    public static RpcException NotProtobuf(string messageName, string why) => new(new Status(StatusCode.InvalidArgument,
        $"The request is not a valid inference.{messageName} message: {why} Send the message the service's .proto describes."));

    private static Marshaller<T> Refusing<T>(Marshaller<T> generated)
    {
        var deserialize = generated.ContextualDeserializer;
        return Marshallers.Create(generated.ContextualSerializer, context =>
        {
            try
            {
                return deserialize(context);
            }
            catch (InvalidProtocolBufferException ex)
            {
                throw NotProtobuf(typeof(T).Name, ex.Message);
            }
        });
    }
}
