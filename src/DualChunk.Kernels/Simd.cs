using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace DualChunk.Kernels;

/// <summary>
/// The vector operations the width-generic kernels use, over one float vector type <typeparamref name="TVec"/>.
/// Each kernel is written once as <c>Kernel&lt;TSimd, TVec&gt;</c> and dispatched to <see cref="V128"/>,
/// <see cref="V256"/> or <see cref="V512"/>:
/// the JIT specializes a generic method per struct type argument and inlines these static calls, so each
/// instantiation compiles to the same code as a kernel written directly against Vector128/256/512.
/// </summary>
/// <remarks>
/// Every member maps to exactly one VectorNNN call (or the same short sequence on every width), so the arithmetic,
/// and therefore every result bit, is what the per-width code did: multiply-adds are MultiplyAddEstimate
/// (one FMA where the hardware has it, multiply + add otherwise) on every width.
/// Masks are float vectors with all bits set in the selected lanes, as Vector128.GreaterThan etc. return them.
/// </remarks>
internal interface ISimd<TVec>
    where TVec : struct
{
    /// <summary>Float lanes per vector.</summary>
    static abstract int Count { get; }

    static abstract TVec Zero { get; }
    static abstract TVec One { get; }
    static abstract TVec Create(float value);
    static abstract TVec Load(ref float source, nuint elementOffset);
    static abstract void Store(TVec value, ref float destination, nuint elementOffset);

    static abstract TVec Add(TVec a, TVec b);
    static abstract TVec Subtract(TVec a, TVec b);
    static abstract TVec Multiply(TVec a, TVec b);
    static abstract TVec Divide(TVec a, TVec b);
    static abstract TVec Negate(TVec a);
    static abstract TVec And(TVec a, TVec b);

    /// <summary>a·b + c: one FMA where the hardware has it, multiply + add otherwise.</summary>
    static abstract TVec MultiplyAddEstimate(TVec a, TVec b, TVec c);
    static abstract TVec Abs(TVec a);
    static abstract TVec MaxNative(TVec a, TVec b);
    static abstract TVec MinNative(TVec a, TVec b);

    static abstract TVec Equals(TVec a, TVec b);
    static abstract TVec LessThan(TVec a, TVec b);
    static abstract TVec GreaterThan(TVec a, TVec b);
    static abstract TVec ConditionalSelect(TVec mask, TVec whenTrue, TVec whenFalse);

    /// <summary>Mask of the lanes k ≥ <paramref name="first"/> (Indices ≥ first, as float bits).</summary>
    static abstract TVec LanesFrom(int first);

    /// <summary>
    /// <paramref name="q"/> (|q| &lt; 2^22) rounded to the nearest integer n, ties to even, carried in the form this
    /// width's <see cref="CarriedInteger"/> and <see cref="ScaleExp2"/> read (only they may read it).
    /// </summary>
    static abstract TVec RoundToCarrier(TVec q);

    /// <summary>The integer n of a <see cref="RoundToCarrier"/> result, as a float.</summary>
    static abstract TVec CarriedInteger(TVec carrier);

    /// <summary><paramref name="p"/>·2^n for the n of a <see cref="RoundToCarrier"/> result; exact when the result is a normal float.</summary>
    static abstract TVec ScaleExp2(TVec p, TVec carrier);

    /// <summary>((v as int32) &lt;&lt; <paramref name="shift"/>) + <paramref name="addend"/>, reinterpreted as float.</summary>
    static abstract TVec ShiftLeftAddInt32(TVec v, int shift, int addend);

    /// <summary>(<paramref name="a"/> as int32) + ((<paramref name="v"/> as int32) &lt;&lt; <paramref name="shift"/>), reinterpreted as float.</summary>
    static abstract TVec AddShiftedInt32(TVec a, TVec v, int shift);

}

/// <summary>
/// <see cref="ISimd{TVec}"/> plus the double-precision companion <typeparamref name="TVecD"/> of the float vector
/// (same width, half the lanes), for the kernels that accumulate in double.
/// </summary>
internal interface ISimdWide<TVec, TVecD> : ISimd<TVec>
    where TVec : struct
    where TVecD : struct
{
    static abstract TVecD CreateD(double value);
    static abstract TVecD AddD(TVecD a, TVecD b);
    static abstract TVecD SubtractD(TVecD a, TVecD b);
    static abstract TVecD MultiplyD(TVecD a, TVecD b);
    static abstract TVecD MultiplyAddEstimateD(TVecD a, TVecD b, TVecD c);
    static abstract double SumD(TVecD v);

    /// <summary>The float lanes widened to double: (lower half, upper half).</summary>
    static abstract (TVecD Lower, TVecD Upper) Widen(TVec v);

    /// <summary>Two double vectors rounded to float and joined (lower, upper).</summary>
    static abstract TVec Narrow(TVecD lower, TVecD upper);
}

/// <summary>Vector128 operations (SSE/NEON, or software where not accelerated).</summary>
internal readonly struct V128 : ISimdWide<Vector128<float>, Vector128<double>>
{
    public static int Count { [MethodImpl(MethodImplOptions.AggressiveInlining)] get => Vector128<float>.Count; }
    public static Vector128<float> Zero { [MethodImpl(MethodImplOptions.AggressiveInlining)] get => Vector128<float>.Zero; }
    public static Vector128<float> One { [MethodImpl(MethodImplOptions.AggressiveInlining)] get => Vector128<float>.One; }
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Create(float value) => Vector128.Create(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Load(ref float source, nuint elementOffset) => Vector128.LoadUnsafe(ref source, elementOffset);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector128<float> value, ref float destination, nuint elementOffset) => value.StoreUnsafe(ref destination, elementOffset);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Add(Vector128<float> a, Vector128<float> b) => a + b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Subtract(Vector128<float> a, Vector128<float> b) => a - b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Multiply(Vector128<float> a, Vector128<float> b) => a * b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Divide(Vector128<float> a, Vector128<float> b) => a / b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Negate(Vector128<float> a) => -a;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> And(Vector128<float> a, Vector128<float> b) => a & b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> MultiplyAddEstimate(Vector128<float> a, Vector128<float> b, Vector128<float> c) => Vector128.MultiplyAddEstimate(a, b, c);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Abs(Vector128<float> a) => Vector128.Abs(a);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> MaxNative(Vector128<float> a, Vector128<float> b) => Vector128.MaxNative(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> MinNative(Vector128<float> a, Vector128<float> b) => Vector128.MinNative(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Equals(Vector128<float> a, Vector128<float> b) => Vector128.Equals(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> LessThan(Vector128<float> a, Vector128<float> b) => Vector128.LessThan(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> GreaterThan(Vector128<float> a, Vector128<float> b) => Vector128.GreaterThan(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> ConditionalSelect(Vector128<float> mask, Vector128<float> whenTrue, Vector128<float> whenFalse) => Vector128.ConditionalSelect(mask, whenTrue, whenFalse);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> LanesFrom(int first) => Vector128.GreaterThanOrEqual(Vector128<int>.Indices, Vector128.Create(first)).AsSingle();
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> ShiftLeftAddInt32(Vector128<float> v, int shift, int addend) => ((v.AsInt32() << shift) + Vector128.Create(addend)).AsSingle();
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> AddShiftedInt32(Vector128<float> a, Vector128<float> v, int shift) => (a.AsInt32() + (v.AsInt32() << shift)).AsSingle();
    // n = round(q) lands in the low mantissa bits of q + 1.5·2^23 (the carrier); ScaleExp2 shifts it into the exponent field.
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> RoundToCarrier(Vector128<float> q) => q + Vector128.Create(VectorMath.RoundMagic);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> CarriedInteger(Vector128<float> carrier) => carrier - Vector128.Create(VectorMath.RoundMagic);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> ScaleExp2(Vector128<float> p, Vector128<float> carrier) => AddShiftedInt32(p, carrier, 23);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<double> CreateD(double value) => Vector128.Create(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<double> AddD(Vector128<double> a, Vector128<double> b) => a + b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<double> SubtractD(Vector128<double> a, Vector128<double> b) => a - b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<double> MultiplyD(Vector128<double> a, Vector128<double> b) => a * b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<double> MultiplyAddEstimateD(Vector128<double> a, Vector128<double> b, Vector128<double> c) => Vector128.MultiplyAddEstimate(a, b, c);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static double SumD(Vector128<double> v) => Vector128.Sum(v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static (Vector128<double> Lower, Vector128<double> Upper) Widen(Vector128<float> v) => Vector128.Widen(v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Narrow(Vector128<double> lower, Vector128<double> upper) => Vector128.Narrow(lower, upper);
}

/// <summary>Vector256 operations (AVX2 + FMA on x64).</summary>
internal readonly struct V256 : ISimdWide<Vector256<float>, Vector256<double>>
{
    public static int Count { [MethodImpl(MethodImplOptions.AggressiveInlining)] get => Vector256<float>.Count; }
    public static Vector256<float> Zero { [MethodImpl(MethodImplOptions.AggressiveInlining)] get => Vector256<float>.Zero; }
    public static Vector256<float> One { [MethodImpl(MethodImplOptions.AggressiveInlining)] get => Vector256<float>.One; }
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Create(float value) => Vector256.Create(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Load(ref float source, nuint elementOffset) => Vector256.LoadUnsafe(ref source, elementOffset);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector256<float> value, ref float destination, nuint elementOffset) => value.StoreUnsafe(ref destination, elementOffset);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Add(Vector256<float> a, Vector256<float> b) => a + b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Subtract(Vector256<float> a, Vector256<float> b) => a - b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Multiply(Vector256<float> a, Vector256<float> b) => a * b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Divide(Vector256<float> a, Vector256<float> b) => a / b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Negate(Vector256<float> a) => -a;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> And(Vector256<float> a, Vector256<float> b) => a & b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> MultiplyAddEstimate(Vector256<float> a, Vector256<float> b, Vector256<float> c) => Vector256.MultiplyAddEstimate(a, b, c);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Abs(Vector256<float> a) => Vector256.Abs(a);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> MaxNative(Vector256<float> a, Vector256<float> b) => Vector256.MaxNative(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> MinNative(Vector256<float> a, Vector256<float> b) => Vector256.MinNative(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Equals(Vector256<float> a, Vector256<float> b) => Vector256.Equals(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> LessThan(Vector256<float> a, Vector256<float> b) => Vector256.LessThan(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> GreaterThan(Vector256<float> a, Vector256<float> b) => Vector256.GreaterThan(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> ConditionalSelect(Vector256<float> mask, Vector256<float> whenTrue, Vector256<float> whenFalse) => Vector256.ConditionalSelect(mask, whenTrue, whenFalse);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> LanesFrom(int first) => Vector256.GreaterThanOrEqual(Vector256<int>.Indices, Vector256.Create(first)).AsSingle();
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> ShiftLeftAddInt32(Vector256<float> v, int shift, int addend) => ((v.AsInt32() << shift) + Vector256.Create(addend)).AsSingle();
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> AddShiftedInt32(Vector256<float> a, Vector256<float> v, int shift) => (a.AsInt32() + (v.AsInt32() << shift)).AsSingle();
    // n = round(q) lands in the low mantissa bits of q + 1.5·2^23 (the carrier); ScaleExp2 shifts it into the exponent field.
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> RoundToCarrier(Vector256<float> q) => q + Vector256.Create(VectorMath.RoundMagic);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> CarriedInteger(Vector256<float> carrier) => carrier - Vector256.Create(VectorMath.RoundMagic);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> ScaleExp2(Vector256<float> p, Vector256<float> carrier) => AddShiftedInt32(p, carrier, 23);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<double> CreateD(double value) => Vector256.Create(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<double> AddD(Vector256<double> a, Vector256<double> b) => a + b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<double> SubtractD(Vector256<double> a, Vector256<double> b) => a - b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<double> MultiplyD(Vector256<double> a, Vector256<double> b) => a * b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<double> MultiplyAddEstimateD(Vector256<double> a, Vector256<double> b, Vector256<double> c) => Vector256.MultiplyAddEstimate(a, b, c);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static double SumD(Vector256<double> v) => Vector256.Sum(v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static (Vector256<double> Lower, Vector256<double> Upper) Widen(Vector256<float> v) => Vector256.Widen(v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Narrow(Vector256<double> lower, Vector256<double> upper) => Vector256.Narrow(lower, upper);
}

/// <summary>Vector512 operations (AVX-512F on x64).</summary>
internal readonly struct V512 : ISimdWide<Vector512<float>, Vector512<double>>
{
    public static int Count { [MethodImpl(MethodImplOptions.AggressiveInlining)] get => Vector512<float>.Count; }
    public static Vector512<float> Zero { [MethodImpl(MethodImplOptions.AggressiveInlining)] get => Vector512<float>.Zero; }
    public static Vector512<float> One { [MethodImpl(MethodImplOptions.AggressiveInlining)] get => Vector512<float>.One; }
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Create(float value) => Vector512.Create(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Load(ref float source, nuint elementOffset) => Vector512.LoadUnsafe(ref source, elementOffset);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector512<float> value, ref float destination, nuint elementOffset) => value.StoreUnsafe(ref destination, elementOffset);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Add(Vector512<float> a, Vector512<float> b) => a + b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Subtract(Vector512<float> a, Vector512<float> b) => a - b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Multiply(Vector512<float> a, Vector512<float> b) => a * b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Divide(Vector512<float> a, Vector512<float> b) => a / b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Negate(Vector512<float> a) => -a;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> And(Vector512<float> a, Vector512<float> b) => a & b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> MultiplyAddEstimate(Vector512<float> a, Vector512<float> b, Vector512<float> c) => Vector512.MultiplyAddEstimate(a, b, c);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Abs(Vector512<float> a) => Vector512.Abs(a);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> MaxNative(Vector512<float> a, Vector512<float> b) => Vector512.MaxNative(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> MinNative(Vector512<float> a, Vector512<float> b) => Vector512.MinNative(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Equals(Vector512<float> a, Vector512<float> b) => Vector512.Equals(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> LessThan(Vector512<float> a, Vector512<float> b) => Vector512.LessThan(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> GreaterThan(Vector512<float> a, Vector512<float> b) => Vector512.GreaterThan(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> ConditionalSelect(Vector512<float> mask, Vector512<float> whenTrue, Vector512<float> whenFalse) => Vector512.ConditionalSelect(mask, whenTrue, whenFalse);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> LanesFrom(int first) => Vector512.GreaterThanOrEqual(Vector512<int>.Indices, Vector512.Create(first)).AsSingle();
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> ShiftLeftAddInt32(Vector512<float> v, int shift, int addend) => ((v.AsInt32() << shift) + Vector512.Create(addend)).AsSingle();
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> AddShiftedInt32(Vector512<float> a, Vector512<float> v, int shift) => (a.AsInt32() + (v.AsInt32() << shift)).AsSingle();
    // AVX-512 does each of these in one instruction, with the bits of the Vector256 sequences (ErfGeluTests checks it):
    // vrndscaleps (imm 0: nearest, ties to even) is the integer that adding 1.5·2^23 rounds to; vscalefps is p·2^n,
    // exact for a normal result. (vrangeps, which would do abs + min in one, returns the number for a NaN operand.)
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> RoundToCarrier(Vector512<float> q) => Avx512F.RoundScale(q, 0);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> CarriedInteger(Vector512<float> carrier) => carrier;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> ScaleExp2(Vector512<float> p, Vector512<float> carrier) => Avx512F.Scale(p, carrier);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<double> CreateD(double value) => Vector512.Create(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<double> AddD(Vector512<double> a, Vector512<double> b) => a + b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<double> SubtractD(Vector512<double> a, Vector512<double> b) => a - b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<double> MultiplyD(Vector512<double> a, Vector512<double> b) => a * b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<double> MultiplyAddEstimateD(Vector512<double> a, Vector512<double> b, Vector512<double> c) => Vector512.MultiplyAddEstimate(a, b, c);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static double SumD(Vector512<double> v) => Vector512.Sum(v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static (Vector512<double> Lower, Vector512<double> Upper) Widen(Vector512<float> v) => Vector512.Widen(v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Narrow(Vector512<double> lower, Vector512<double> upper) => Vector512.Narrow(lower, upper);
}
