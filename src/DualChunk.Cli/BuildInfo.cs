using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;
using System.Text.Json;
using DualChunk.Kernels;

namespace DualChunk.Cli;

/// <summary>
/// How this binary was built against what the CPU offers. Under the JIT the kernels follow the CPU; a NativeAOT binary's
/// vector width is fixed when it is compiled (IlcInstructionSet), so one built for less than the CPU has runs slower
/// kernels than it could, and <c>inspect</c> and <c>bench</c> say so.
/// </summary>
internal static class BuildInfo
{
    /// <summary>
    /// True in a NativeAOT binary. Not RuntimeFeature.IsDynamicCodeSupported alone: a JIT build of a PublishAot project
    /// turns that switch off too; only under NativeAOT has no method been JIT-compiled.
    /// </summary>
    public static bool IsNativeAot { get; } = !RuntimeFeature.IsDynamicCodeSupported && System.Runtime.JitInfo.GetCompiledMethodCount() == 0;

    /// <summary>The widest kernel path the CPU supports, read with CPUID (not through the compiler's view of the ISA).</summary>
    public static KernelIsa CpuIsa { get; } = DetectCpuIsa();

    /// <summary>True when this is a NativeAOT binary compiled for a narrower kernel path than the CPU offers.</summary>
    public static bool BinaryBelowCpu => IsNativeAot && KernelSelection.Isa < CpuIsa
        && !(CpuIsa == KernelIsa.Vector512 && Environment.GetEnvironmentVariable("DOTNET_EnableAVX512F") == "0");

    /// <summary>One line for <c>inspect</c>, or null when the binary uses all the CPU offers.</summary>
    public static string? Shortfall => BinaryBelowCpu
        ? $"this NativeAOT binary was compiled for {KernelSelection.Isa} but the CPU offers {CpuIsa}; publish it with -p:IlcInstructionSet=native (or {(CpuIsa == KernelIsa.Vector512 ? "x86-64-v4" : "x86-64-v3")}) for the faster kernels"
        : null;

    public static void WriteJson(Utf8JsonWriter json)
    {
        json.WriteString("cpu_isa", CpuIsa.ToString());
        json.WriteBoolean("native_aot", IsNativeAot);
        json.WriteBoolean("binary_below_cpu", BinaryBelowCpu);
    }

    private static KernelIsa DetectCpuIsa()
    {
        if (!X86Base.IsSupported) return KernelIsa.Portable;
        var (_, _, ecx1, _) = X86Base.CpuId(1, 0);
        bool osSavesAvx = (ecx1 & (1 << 27)) != 0 && (ecx1 & (1 << 28)) != 0; // OSXSAVE and AVX
        if (!osSavesAvx || X86Base.CpuId(0, 0).Eax < 7) return KernelIsa.Portable;
        int ebx7 = X86Base.CpuId(7, 0).Ebx;
        bool avx2 = (ebx7 & (1 << 5)) != 0 && (ecx1 & (1 << 12)) != 0; // AVX2 and FMA
        // .NET accelerates Vector512 with AVX-512 F, BW, CD, DQ and VL.
        const int Avx512 = (1 << 16) | (1 << 17) | (1 << 28) | (1 << 30) | (1 << 31);
        return (ebx7 & Avx512) == Avx512 ? KernelIsa.Vector512 : avx2 ? KernelIsa.Vector256 : KernelIsa.Portable;
    }
}
