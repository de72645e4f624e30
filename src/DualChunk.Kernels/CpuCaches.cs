using System.Globalization;
using System.Runtime.Intrinsics.X86;

namespace DualChunk.Kernels;

/// <summary>
/// Sizes of this CPU's data caches, read once at start-up: the GEMM derives its blocking from them
/// (<see cref="GemmBlocking"/>).
/// </summary>
/// <remarks>
/// On x86 from CPUID (leaf 0x8000001D on AMD, leaf 4 on Intel: both describe each cache as ways × partitions × line
/// size × sets); elsewhere, or when CPUID says nothing, from /sys/devices/system/cpu/cpu0/cache (Linux); else the
/// defaults (32 KB L1D, 512 KB L2, L3 unknown). Sizes are per core for L1D and L2, and per shared L3 slice for L3.
/// </remarks>
internal readonly record struct CpuCaches(int L1DataBytes, int L2Bytes, long L3Bytes, string Source)
{
    /// <summary>L1D assumed when nothing says otherwise.</summary>
    public const int DefaultL1DataBytes = 32 * 1024;

    /// <summary>L2 assumed when nothing says otherwise.</summary>
    public const int DefaultL2Bytes = 512 * 1024;

    /// <summary>The caches of this machine (CPU core 0).</summary>
    public static CpuCaches Current { get; } = Detect();

    /// <summary>e.g. "L1D 32 KB, L2 1024 KB, L3 32768 KB (cpuid)".</summary>
    public override string ToString()
        => $"L1D {L1DataBytes / 1024} KB, L2 {L2Bytes / 1024} KB, L3 {(L3Bytes > 0 ? $"{L3Bytes / 1024} KB" : "unknown")} ({Source})";

    private static CpuCaches Detect()
    {
        try
        {
            if (FromCpuid() is { } cpuid) return cpuid;
        }
        catch (PlatformNotSupportedException)
        {
            // Not x86 after all: fall through to the file system.
        }
        try
        {
            if (FromSysfs("/sys/devices/system/cpu/cpu0/cache") is { } sysfs) return sysfs;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A sandbox without /sys: use the defaults.
        }
        return new CpuCaches(DefaultL1DataBytes, DefaultL2Bytes, 0, "default");
    }

    /// <summary>The deterministic cache parameters leaf (AMD 0x8000001D, Intel 4); null when the CPU has neither.</summary>
    private static CpuCaches? FromCpuid()
    {
        if (!X86Base.IsSupported) return null;
        var (_, vendorB, vendorC, vendorD) = X86Base.CpuId(0, 0);
        bool amd = vendorB == 0x68747541 && vendorD == 0x69746E65 && vendorC == 0x444D4163;  // "AuthenticAMD"
        int leaf;
        if (amd)
        {
            var (maxExtended, _, _, _) = X86Base.CpuId(unchecked((int)0x80000000), 0);
            var (_, _, features, _) = X86Base.CpuId(unchecked((int)0x80000001), 0);
            bool topologyExtensions = (features & (1 << 22)) != 0;
            if ((uint)maxExtended < 0x8000001D || !topologyExtensions) return null;
            leaf = unchecked((int)0x8000001D);
        }
        else
        {
            var (maxBasic, _, _, _) = X86Base.CpuId(0, 0);
            if (maxBasic < 4) return null;
            leaf = 4;
        }

        int l1 = 0, l2 = 0;
        long l3 = 0;
        for (int index = 0; index < 16; index++)
        {
            var (eax, ebx, ecx, _) = X86Base.CpuId(leaf, index);
            int type = eax & 0x1F;            // 0 none left, 1 data, 2 instruction, 3 unified
            if (type == 0) break;
            if (type == 2) continue;
            int level = (eax >> 5) & 0x7;
            long ways = ((ebx >> 22) & 0x3FF) + 1, partitions = ((ebx >> 12) & 0x3FF) + 1, line = (ebx & 0xFFF) + 1, sets = (uint)ecx + 1L;
            long bytes = ways * partitions * line * sets;
            switch (level)
            {
                case 1: l1 = (int)Math.Min(bytes, int.MaxValue); break;
                case 2: l2 = (int)Math.Min(bytes, int.MaxValue); break;
                case 3: l3 = bytes; break;
            }
        }
        return l1 > 0 && l2 > 0 ? new CpuCaches(l1, l2, l3, "cpuid") : null;
    }

    /// <summary>Linux's description of CPU 0's caches (index*/level, type, size such as "32K"); null if absent.</summary>
    internal static CpuCaches? FromSysfs(string directory)
    {
        if (!Directory.Exists(directory)) return null;
        int l1 = 0, l2 = 0;
        long l3 = 0;
        foreach (var index in Directory.EnumerateDirectories(directory, "index*"))
        {
            string? type = ReadLine(Path.Combine(index, "type"));
            if (type is null || type == "Instruction") continue;
            if (!int.TryParse(ReadLine(Path.Combine(index, "level")), NumberStyles.None, CultureInfo.InvariantCulture, out int level)) continue;
            long bytes = ParseSize(ReadLine(Path.Combine(index, "size")));
            if (bytes <= 0) continue;
            switch (level)
            {
                case 1: l1 = (int)Math.Min(bytes, int.MaxValue); break;
                case 2: l2 = (int)Math.Min(bytes, int.MaxValue); break;
                case 3: l3 = bytes; break;
            }
        }
        return l1 > 0 && l2 > 0 ? new CpuCaches(l1, l2, l3, "sysfs") : null;
    }

    private static string? ReadLine(string path)
    {
        if (!File.Exists(path)) return null;
        using var reader = new StreamReader(path);
        return reader.ReadLine()?.Trim();
    }

    /// <summary>"32K", "1024K", "32M" or a plain byte count; 0 when unreadable or out of range.</summary>
    internal static long ParseSize(string? text)
    {
        if (string.IsNullOrEmpty(text)) return 0;
        long unit = char.ToUpperInvariant(text[^1]) switch { 'K' => 1024, 'M' => 1024 * 1024, 'G' => 1024L * 1024 * 1024, _ => 1 };
        string digits = unit == 1 ? text : text[..^1];
        return long.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out long n) && n > 0 && n <= (1L << 40) / unit ? n * unit : 0;
    }
}
