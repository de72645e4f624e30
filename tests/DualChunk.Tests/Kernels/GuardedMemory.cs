using System.Runtime.InteropServices;

namespace DualChunk.Tests.Kernels;

/// <summary>Where a guarded span lies: its last float right before an inaccessible page, or its first right after one.</summary>
internal enum GuardPlacement
{
    BeforeGuard,
    AfterGuard,
}

/// <summary>
/// Floats in their own anonymous mapping between two PROT_NONE pages (mmap + mprotect through libc), placed flush
/// against one of them: a kernel that reads or writes one float past either end of the span touches the guard and
/// the process dies with SIGSEGV (that is the test failing). Linux only.
/// </summary>
internal sealed unsafe partial class GuardedMemory : IDisposable
{
    private const int ProtNone = 0, ProtRead = 1, ProtWrite = 2;
    private const int MapPrivate = 0x02, MapAnonymous = 0x20;

    private readonly nint _base;
    private readonly nuint _length;

    public GuardedMemory(int floats, GuardPlacement placement)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(floats);
        long page = Environment.SystemPageSize;
        long dataPages = Math.Max(1, ((long)floats * sizeof(float) + page - 1) / page);
        _length = (nuint)((dataPages + 2) * page);
        _base = Mmap(0, _length, ProtNone, MapPrivate | MapAnonymous, -1, 0);
        if (_base == -1) throw new InvalidOperationException($"mmap failed: errno {Marshal.GetLastPInvokeError()}");
        nint data = _base + (nint)page;
        if (Mprotect(data, (nuint)(dataPages * page), ProtRead | ProtWrite) != 0)
            throw new InvalidOperationException($"mprotect failed: errno {Marshal.GetLastPInvokeError()}");
        Pointer = placement == GuardPlacement.AfterGuard
            ? (float*)data
            : (float*)(data + (nint)(dataPages * page)) - floats;
        Length = floats;
    }

    public float* Pointer { get; }

    public int Length { get; }

    public Span<float> Span => new(Pointer, Length);

    public static bool Supported => OperatingSystem.IsLinux();

    public void Dispose()
    {
        if (Munmap(_base, _length) != 0) throw new InvalidOperationException($"munmap failed: errno {Marshal.GetLastPInvokeError()}");
    }

    [LibraryImport("libc", EntryPoint = "mmap", SetLastError = true)]
    private static partial nint Mmap(nint addr, nuint length, int prot, int flags, int fd, nint offset);

    [LibraryImport("libc", EntryPoint = "mprotect", SetLastError = true)]
    private static partial int Mprotect(nint addr, nuint length, int prot);

    [LibraryImport("libc", EntryPoint = "munmap", SetLastError = true)]
    private static partial int Munmap(nint addr, nuint length);
}
