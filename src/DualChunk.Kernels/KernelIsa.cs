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
/// <c>DOTNET_EnableAVX512F=0</c> selects <see cref="KernelIsa.Vector256"/>, <c>DOTNET_EnableAVX2=0</c>
/// selects <see cref="KernelIsa.Portable"/>.
/// </summary>
public static class KernelSelection
{
    /// <summary>The path every kernel dispatches to in this process.</summary>
    public static KernelIsa Isa { get; } =
        Vector512.IsHardwareAccelerated ? KernelIsa.Vector512
        : Vector256.IsHardwareAccelerated ? KernelIsa.Vector256
        : KernelIsa.Portable;
}
