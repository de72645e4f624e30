using System.Runtime.Intrinsics;

namespace DualChunk.Kernels;

/// <summary>The instruction-set family a kernel path is written for.</summary>
public enum KernelIsa
{
    /// <summary>Vector128 code: SSE/NEON where accelerated, software otherwise.</summary>
    Portable = 0,

    /// <summary>256-bit vectors (AVX2 + FMA on x64).</summary>
    Vector256 = 1,

    /// <summary>512-bit vectors (AVX-512F on x64).</summary>
    Vector512 = 2,
}

/// <summary>
/// The kernel path for this process, chosen once at start-up from what the JIT accelerates.
/// <c>DOTNET_EnableAVX512F=0</c> (or .NET 10's <c>DOTNET_EnableAVX512=0</c>) selects
/// <see cref="KernelIsa.Vector256"/>; <c>DOTNET_EnableAVX2=0</c> selects <see cref="KernelIsa.Portable"/>.
/// </summary>
/// <remarks>
/// .NET 10 groups AVX-512 under one switch, <c>DOTNET_EnableAVX512</c>, and no longer honours the
/// older <c>DOTNET_EnableAVX512F=0</c>: the JIT would keep accelerating Vector512. We read the older
/// switch ourselves so that the documented way to select the 256-bit path keeps working.
/// </remarks>
public static class KernelSelection
{
    /// <summary>The path every kernel dispatches to in this process.</summary>
    public static KernelIsa Isa { get; } = Choose();

    /// <summary>Throws unless <paramref name="isa"/> is a path this process can run (the kernels' explicit-path overloads).</summary>
    internal static void CheckIsa(KernelIsa isa)
    {
        if (isa < KernelIsa.Portable || isa > Isa)
            throw new ArgumentOutOfRangeException(nameof(isa), isa, $"Path not supported here (best is {Isa}).");
    }

    private static KernelIsa Choose()
    {
        bool avx512Off = Environment.GetEnvironmentVariable("DOTNET_EnableAVX512F") == "0";
        if (Vector512.IsHardwareAccelerated && !avx512Off) return KernelIsa.Vector512;
        if (Vector256.IsHardwareAccelerated) return KernelIsa.Vector256;
        return KernelIsa.Portable;
    }
}
