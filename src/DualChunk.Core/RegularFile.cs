using System.Runtime.InteropServices;

namespace DualChunk.Core;

/// <summary>
/// Refuses paths that are not regular files before they are opened: opening a FIFO blocks until a writer comes,
/// and a device such as /dev/zero streams without end, so neither may reach a reader.
/// </summary>
internal static partial class RegularFile
{
    /// <summary>
    /// Throws the exception made by <paramref name="error"/> when <paramref name="path"/> (symlinks followed) exists and
    /// is not a regular file. A missing path passes, so that opening it gives the usual "not found" error.
    /// </summary>
    public static void Check(string path, string what, Func<string, Exception> error)
    {
        string? kind = Kind(path);
        if (kind is not null)
            throw error($"{path}: is {kind}, not a regular file; give {what} (e.g. save the data to a file first).");
    }

    /// <summary>What a non-regular file is ("a FIFO", "a character device", ...), or null for a regular or missing file.</summary>
    public static string? Kind(string path)
    {
        if (Directory.Exists(path)) return "a directory";
        if (!OperatingSystem.IsLinux()) return null; // FIFOs and devices at file paths are a Unix hazard; statx is Linux's
        Span<byte> buffer = stackalloc byte[256];    // struct statx: a fixed layout on every Linux architecture
        unsafe
        {
            fixed (byte* b = buffer)
            {
                if (Statx(AtFdCwd, path, 0, StatxType, b) != 0) return null; // missing, or statx unavailable: open() decides
            }
        }
        int mode = BitConverter.ToUInt16(buffer[28..30]) & 0xF000; // stx_mode, S_IFMT bits
        return mode switch
        {
            0x8000 => null,
            0x1000 => "a FIFO (named pipe)",
            0x2000 => "a character device",
            0x6000 => "a block device",
            0xC000 => "a socket",
            0x4000 => "a directory",
            _ => "a special file",
        };
    }

    private const int AtFdCwd = -100;
    private const uint StatxType = 1;

    [LibraryImport("libc", EntryPoint = "statx", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static unsafe partial int Statx(int dirfd, string path, int flags, uint mask, byte* buffer);
}
