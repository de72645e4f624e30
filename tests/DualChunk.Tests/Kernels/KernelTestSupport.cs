using DualChunk.Kernels;

namespace DualChunk.Tests.Kernels;

/// <summary>Shared helpers: the ISA paths this machine runs, and seeded non-zero random data.</summary>
internal static class KernelTestSupport
{
    /// <summary>Every path up to the process's best one (the env vars of CI lower the best one).</summary>
    public static IEnumerable<KernelIsa> Isas()
    {
        foreach (KernelIsa isa in Enum.GetValues<KernelIsa>())
            if (isa <= KernelSelection.Isa) yield return isa;
    }

    /// <summary>Uniform in ±[0.05, 1]·scale: never zero, so a dropped term always shows.</summary>
    public static float[] RandomNonZero(Random rng, int n, float scale = 1f)
    {
        var a = new float[n];
        for (int i = 0; i < n; i++)
        {
            float m = (float)(0.05 + 0.95 * rng.NextDouble()) * scale;
            a[i] = rng.Next(2) == 0 ? m : -m;
        }
        return a;
    }
}
