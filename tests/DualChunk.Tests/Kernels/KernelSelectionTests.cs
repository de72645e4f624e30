using DualChunk.Kernels;

namespace DualChunk.Tests.Kernels;

/// <summary>The CI reruns only prove the fallback paths if the environment switches really select them.</summary>
[TestFixture]
public sealed class KernelSelectionTests
{
    [Test]
    public void EnvironmentSwitchesSelectThePathCiExpects()
    {
        TestContext.Out.WriteLine($"KernelSelection.Isa = {KernelSelection.Isa}, GEMM = {Gemm.MicroKernel}");
        if (Environment.GetEnvironmentVariable("DOTNET_EnableAVX2") == "0")
            Assert.That(KernelSelection.Isa, Is.EqualTo(KernelIsa.Portable));
        else if (Environment.GetEnvironmentVariable("DOTNET_EnableAVX512F") == "0")
            Assert.That(KernelSelection.Isa, Is.EqualTo(KernelIsa.Vector256));
        else
            Assert.That(KernelSelection.Isa, Is.EqualTo(
                System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated ? KernelIsa.Vector512
                : System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated ? KernelIsa.Vector256 : KernelIsa.Portable));
    }
}
