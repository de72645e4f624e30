using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace DualChunk.Kernels;

/// <summary>Finds NaN or ±∞ in a buffer: input validation before a forward pass.</summary>
public static class NonFinite
{
    /// <summary>Index of the first NaN or infinity in <paramref name="x"/>, or -1 when all values are finite.</summary>
    public static int IndexOf(ReadOnlySpan<float> x) => IndexOf(x, KernelSelection.Isa);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static int IndexOf(ReadOnlySpan<float> x, KernelIsa isa)
    {
        // v - v is 0 for finite v and NaN for NaN/±∞; NaN != NaN, so Equals(v - v, 0) is all-ones
        // exactly when every lane is finite. The bulk only answers "is there one"; the scalar
        // twin then locates it, which happens at most once per rejected call.
        ref float p = ref MemoryMarshal.GetReference(x);
        int i = 0;
        if (isa == KernelIsa.Vector512)
        {
            for (; i <= x.Length - Vector512<float>.Count; i += Vector512<float>.Count)
            {
                var v = Vector512.LoadUnsafe(ref p, (nuint)i);
                if (!Vector512.EqualsAll(v - v, Vector512<float>.Zero)) return i + Scalar(x.Slice(i, Vector512<float>.Count));
            }
        }
        if (isa >= KernelIsa.Vector256)
        {
            for (; i <= x.Length - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                var v = Vector256.LoadUnsafe(ref p, (nuint)i);
                if (!Vector256.EqualsAll(v - v, Vector256<float>.Zero)) return i + Scalar(x.Slice(i, Vector256<float>.Count));
            }
        }
        for (; i <= x.Length - Vector128<float>.Count; i += Vector128<float>.Count)
        {
            var v = Vector128.LoadUnsafe(ref p, (nuint)i);
            if (!Vector128.EqualsAll(v - v, Vector128<float>.Zero)) return i + Scalar(x.Slice(i, Vector128<float>.Count));
        }
        // Fewer than 4 floats remain: too short for any vector.
        int rest = Scalar(x[i..]);
        return rest < 0 ? -1 : i + rest;
    }

    /// <summary>Scalar twin, the tests' reference.</summary>
    internal static int Scalar(ReadOnlySpan<float> x)
    {
        for (int i = 0; i < x.Length; i++)
            if (!float.IsFinite(x[i])) return i;
        return -1;
    }
}
