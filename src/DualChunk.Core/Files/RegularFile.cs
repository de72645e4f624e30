using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace DualChunk.Core;

/// <summary>
/// Opening weights files for reading only when they are regular files: opening a FIFO for reading blocks until a
/// writer appears, and a device such as /dev/zero never ends, so both are refused with a message, by type, before
/// the open and again on the opened handle (the path may be swapped in between).
/// </summary>
internal static partial class RegularFile
{
    /// <summary>Opens <paramref name="path"/> for reading after checking that it is a regular file.</summary>
    /// <exception cref="FileNotFoundException">Nothing exists at the path.</exception>
    /// <exception cref="ArgumentException">The path is empty or names a directory, a FIFO, a device or a socket.</exception>
    public static FileStream OpenRead(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (Directory.Exists(path))
            throw new ArgumentException($"'{path}' is a directory; pass the weights file inside it (e.g. '{Path.Combine(path, "model.safetensors")}').", nameof(path));
        if (!File.Exists(path))
            throw new FileNotFoundException($"Weights file '{path}' does not exist. Check the path (relative paths are resolved against '{Environment.CurrentDirectory}').", path);
        RequireRegular(path, KindOf(path));
        var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        try
        {
            RequireRegular(path, KindOf(fs.SafeFileHandle));
        }
        catch
        {
            fs.Dispose();
            throw;
        }
        return fs;
    }

    /// <summary>
    /// Throws the exception made by <paramref name="error"/> when <paramref name="path"/> (symlinks followed) exists and
    /// is not a regular file. A missing path passes, so that opening it gives the usual "not found" error.
    /// </summary>
    public static void Check(string path, string what, Func<string, Exception> error)
    {
        string? kind = Directory.Exists(path) ? "a directory" : NonRegularKind(path);
        if (kind is not null)
            throw error($"{path}: is {kind}, not a regular file; give {what} (e.g. save the data to a file first).");
    }

    /// <summary>
    /// What is at <paramref name="path"/> when it exists and is not a regular file or a directory ("a FIFO", "a character
    /// device", ...), following symbolic links; null for a regular file, a directory, nothing, or an unknown type.
    /// </summary>
    public static string? NonRegularKind(string path) => KindOf(path) switch
    {
        Kind.Regular or Kind.Directory or Kind.Missing or Kind.Unknown => null,
        var k => Describe(k),
    };

    private static void RequireRegular(string path, Kind kind)
    {
        if (kind is Kind.Regular or Kind.Unknown) return;
        if (kind == Kind.Directory)
            throw new ArgumentException($"'{path}' is a directory; pass the weights file inside it (e.g. '{Path.Combine(path, "model.safetensors")}').", nameof(path));
        throw new ArgumentException($"'{path}' is {Describe(kind)}, not a regular file; pass a weights file (.safetensors or .dcw) saved on disk.", nameof(path));
    }

    private static string Describe(Kind kind) => kind switch
    {
        Kind.Fifo => "a FIFO (named pipe)",
        Kind.CharDevice => "a character device",
        Kind.BlockDevice => "a block device",
        Kind.Socket => "a socket",
        Kind.Directory => "a directory",
        Kind.EmptyOrSpecial => "empty or a FIFO, device or socket",
        _ => "not a regular file",
    };

    private enum Kind
    {
        Unknown,
        Missing,
        Regular,
        Directory,
        Fifo,
        CharDevice,
        BlockDevice,
        Socket,
        EmptyOrSpecial,
    }

    private static Kind KindOf(string path)
    {
        if (OperatingSystem.IsLinux())
            return Statx(AtFdCwd, path, 0);
        if (OperatingSystem.IsWindows())
            return Kind.Unknown; // no FIFOs or devices behind ordinary paths
        // Other Unix systems: no portable stat layout to read; FIFOs, devices and sockets report length 0, and a
        // zero-length regular file is no weights file either, so refusing length 0 before opening is safe.
        var info = new FileInfo(path);
        return !info.Exists ? Kind.Missing : info.Length == 0 ? Kind.EmptyOrSpecial : Kind.Regular;
    }

    private static Kind KindOf(SafeFileHandle handle)
    {
        if (!OperatingSystem.IsLinux()) return Kind.Unknown;
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            return Statx((int)handle.DangerousGetHandle(), "", AtEmptyPath);
        }
        finally
        {
            if (added) handle.DangerousRelease();
        }
    }

    private const int AtFdCwd = -100;
    private const int AtEmptyPath = 0x1000;
    private const uint StatxType = 1;
    private const int StatxModeOffset = 28; // struct statx: u32 mask, u32 blksize, u64 attributes, u32 nlink, uid, gid, u16 mode

    private static unsafe Kind Statx(int dirFd, string path, int flags)
    {
        byte* buffer = stackalloc byte[256]; // sizeof(struct statx) is 256 on every Linux architecture
        try
        {
            if (StatxNative(dirFd, path, flags, StatxType, buffer) != 0)
                return Marshal.GetLastPInvokeError() == 2 /* ENOENT */ ? Kind.Missing : Kind.Unknown;
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException)
        {
            return Kind.Unknown; // a libc without statx (kernel < 4.11 or old libc): the open below then decides
        }
        int mode = *(ushort*)(buffer + StatxModeOffset) & 0xF000;
        return mode switch
        {
            0x8000 => Kind.Regular,
            0x4000 => Kind.Directory,
            0x1000 => Kind.Fifo,
            0x2000 => Kind.CharDevice,
            0x6000 => Kind.BlockDevice,
            0xC000 => Kind.Socket,
            _ => Kind.Unknown,
        };
    }

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int StatxNative(int dirFd, string path, int flags, uint mask, byte* buffer);
}
