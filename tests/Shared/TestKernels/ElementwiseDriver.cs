using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

using DualChunk.Kernels;

namespace DualChunk.TestKernels;

/// <summary>
/// One element-wise operation for every width (TensorPrimitives style): the driver owns loops and tails,
/// the operator only maps values.
/// </summary>
internal interface IUnaryOperator
{
    static abstract float Invoke(float x);
    static abstract TVec Invoke<TSimd, TVec>(TVec x) where TSimd : struct, ISimd<TVec> where TVec : struct;
}

/// <summary>The element-wise driver: y[i] = TOp(x[i]). The tests and benchmarks run VectorMath's functions over spans with it.</summary>
internal static class ElementwiseDriver
{
    /// <summary>
    /// y[i] = TOp(x[i]) for i &lt; x.Length on the <paramref name="isa"/> path. <paramref name="y"/> may be exactly
    /// <paramref name="x"/> (in place) but must not overlap it otherwise.
    /// </summary>
    public static void Run<TOp>(ReadOnlySpan<float> x, Span<float> y, KernelIsa isa)
        where TOp : struct, IUnaryOperator
    {
        KernelSelection.CheckIsa(isa);
        if (y.Length < x.Length)
            throw new ArgumentException($"Destination has {y.Length} elements, the source {x.Length}.", nameof(y));
        if (x.Overlaps(y, out int offset) && offset != 0)
            throw new ArgumentException("Source and destination overlap without being the same span.", nameof(y));

        ref float xr = ref MemoryMarshal.GetReference(x);
        ref float yr = ref MemoryMarshal.GetReference(y);
        nuint n = (nuint)x.Length;

        // Widest path whose vector fits the length: a 10-element input on the 512-bit path runs as one 256-bit
        // vector plus an overlapping one rather than a masked 512-bit vector.
        if (isa >= KernelIsa.Vector512 && n >= (nuint)Vector512<float>.Count) { RunVector<TOp, V512, Vector512<float>>(ref xr, ref yr, n); return; }
        if (isa >= KernelIsa.Vector256 && n >= (nuint)Vector256<float>.Count) { RunVector<TOp, V256, Vector256<float>>(ref xr, ref yr, n); return; }
        if (Vector128.IsHardwareAccelerated)
        {
            if (n >= (nuint)Vector128<float>.Count) { RunVector<TOp, V128, Vector128<float>>(ref xr, ref yr, n); return; }
            if (n > 0) RunPartial128<TOp>(ref xr, ref yr, n);
            return;
        }
        for (nuint i = 0; i < n; i++)
            Unsafe.Add(ref yr, i) = TOp.Invoke(Unsafe.Add(ref xr, i));
    }

    // Tail: the last full vector ends at n and overlaps the main loop's last vector. It is loaded before the
    // loop stores anything, so an in-place call recomputes the overlap from the original inputs (same results).
    // One text for every width: TSimd is V512, V256 or V128 (see ISimd).
    private static void RunVector<TOp, TSimd, TVec>(ref float xr, ref float yr, nuint n)
        where TOp : struct, IUnaryOperator
        where TSimd : struct, ISimd<TVec>
        where TVec : struct
    {
        nuint w = (nuint)TSimd.Count;
        TVec last = TSimd.Load(ref xr, n - w);
        nuint i = 0;
        for (; i + 2 * w <= n; i += 2 * w)
        {
            TVec a = TSimd.Load(ref xr, i), b = TSimd.Load(ref xr, i + w);
            TSimd.Store(TOp.Invoke<TSimd, TVec>(a), ref yr, i);
            TSimd.Store(TOp.Invoke<TSimd, TVec>(b), ref yr, i + w);
        }
        if (i + w <= n) { TSimd.Store(TOp.Invoke<TSimd, TVec>(TSimd.Load(ref xr, i)), ref yr, i); i += w; }
        if (i != n) TSimd.Store(TOp.Invoke<TSimd, TVec>(last), ref yr, n - w);
    }

    // Fewer than 4 elements: a partial vector. The live lanes are copied into a zeroed register-sized buffer,
    // mapped as one vector and copied back; the padding lanes (zeros) are computed and dropped.
    private static void RunPartial128<TOp>(ref float xr, ref float yr, nuint n) where TOp : struct, IUnaryOperator
    {
        Vector128<float> buf = Vector128<float>.Zero;
        ref float b = ref Unsafe.As<Vector128<float>, float>(ref buf);
        for (nuint i = 0; i < n; i++) Unsafe.Add(ref b, i) = Unsafe.Add(ref xr, i);
        buf = TOp.Invoke<V128, Vector128<float>>(buf);
        for (nuint i = 0; i < n; i++) Unsafe.Add(ref yr, i) = Unsafe.Add(ref b, i);
    }
}
