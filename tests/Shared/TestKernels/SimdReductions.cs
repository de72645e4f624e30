using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace DualChunk.TestKernels;

/// <summary>
/// The lane-wise max and the horizontal reductions (sum, max) that only the test and benchmark kernels use, for any
/// width of <c>ISimd</c>. The library's kernels do not need them, so <c>ISimd</c> does not ship them.
/// </summary>
/// <remarks>
/// <c>typeof(TVec)</c> is a JIT-time constant for a struct type argument, so each instantiation compiles to the one
/// VectorNNN call of its width (no branches, no boxing).
/// </remarks>
internal static class SimdReductions
{
    /// <summary>Lane-wise IEEE max (NaN if either lane is NaN).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVec Max<TVec>(TVec a, TVec b) where TVec : struct
    {
        if (typeof(TVec) == typeof(Vector512<float>)) return As<Vector512<float>, TVec>(Vector512.Max(As<TVec, Vector512<float>>(a), As<TVec, Vector512<float>>(b)));
        if (typeof(TVec) == typeof(Vector256<float>)) return As<Vector256<float>, TVec>(Vector256.Max(As<TVec, Vector256<float>>(a), As<TVec, Vector256<float>>(b)));
        if (typeof(TVec) == typeof(Vector128<float>)) return As<Vector128<float>, TVec>(Vector128.Max(As<TVec, Vector128<float>>(a), As<TVec, Vector128<float>>(b)));
        throw new NotSupportedException(typeof(TVec).Name);
    }

    /// <summary>Sum of the lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum<TVec>(TVec v) where TVec : struct
    {
        if (typeof(TVec) == typeof(Vector512<float>)) return Vector512.Sum(As<TVec, Vector512<float>>(v));
        if (typeof(TVec) == typeof(Vector256<float>)) return Vector256.Sum(As<TVec, Vector256<float>>(v));
        if (typeof(TVec) == typeof(Vector128<float>)) return Vector128.Sum(As<TVec, Vector128<float>>(v));
        throw new NotSupportedException(typeof(TVec).Name);
    }

    /// <summary>Largest lane (NaN if any lane is NaN): halve the vector until one Vector128 is left, then two shuffles.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxAcross<TVec>(TVec v) where TVec : struct
    {
        Vector128<float> q;
        if (typeof(TVec) == typeof(Vector512<float>))
        {
            Vector512<float> v512 = As<TVec, Vector512<float>>(v);
            Vector256<float> h = Vector256.Max(v512.GetLower(), v512.GetUpper());
            q = Vector128.Max(h.GetLower(), h.GetUpper());
        }
        else if (typeof(TVec) == typeof(Vector256<float>))
        {
            Vector256<float> v256 = As<TVec, Vector256<float>>(v);
            q = Vector128.Max(v256.GetLower(), v256.GetUpper());
        }
        else if (typeof(TVec) == typeof(Vector128<float>)) q = As<TVec, Vector128<float>>(v);
        else throw new NotSupportedException(typeof(TVec).Name);
        q = Vector128.Max(q, Vector128.Shuffle(q, Vector128.Create(2, 3, 0, 1)));
        q = Vector128.Max(q, Vector128.Shuffle(q, Vector128.Create(1, 0, 3, 2)));
        return q.ToScalar();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TTo As<TFrom, TTo>(TFrom value) where TFrom : struct where TTo : struct => Unsafe.As<TFrom, TTo>(ref value);
}
