using System.Buffers;
using System.IO.MemoryMappedFiles;

namespace DualChunk.Core;

/// <summary>
/// A file mapped read-only into memory, held by a model until it is disposed. Mapping the same file read-only in
/// several models (or processes) shares its pages through the OS page cache.
/// </summary>
internal sealed unsafe class MappedFile : IDisposable
{
    private readonly MemoryMappedFile _file;
    private readonly MemoryMappedViewAccessor _view;
    private int _disposed;

    private MappedFile(MemoryMappedFile file, MemoryMappedViewAccessor view, byte* pointer, long length)
    {
        _file = file;
        _view = view;
        Pointer = pointer;
        Length = length;
    }

    /// <summary>First byte of the file (page-aligned).</summary>
    public byte* Pointer { get; }

    /// <summary>The file's length in bytes.</summary>
    public long Length { get; }

    public static MappedFile Open(string path)
    {
        var fs = SafetensorsReader.OpenFile(path);
        long length = fs.Length;
        MemoryMappedFile? file = null;
        MemoryMappedViewAccessor? view = null;
        try
        {
            file = MemoryMappedFile.CreateFromFile(fs, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
            view = file.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* p = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            return new MappedFile(file, view, p + view.PointerOffset, length);
        }
        catch
        {
            view?.Dispose();
            if (file is null) fs.Dispose();
            file?.Dispose();
            throw;
        }
    }

    /// <summary>A stream over the whole file (no copy of the mapping).</summary>
    public UnmanagedMemoryStream OpenStream() => new(Pointer, Length);

    /// <summary><paramref name="count"/> floats at byte <paramref name="offset"/>, as memory over the mapping (no copy).</summary>
    public ReadOnlyMemory<float> Floats(long offset, int count) => new FloatManager((float*)(Pointer + offset), count).Memory;

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _file.Dispose();
    }

    /// <summary>Memory&lt;float&gt; over mapped memory; valid while the <see cref="MappedFile"/> is.</summary>
    private sealed class FloatManager(float* pointer, int length) : MemoryManager<float>
    {
        public override Span<float> GetSpan() => new(pointer, length);

        public override MemoryHandle Pin(int elementIndex = 0) => new(pointer + elementIndex);

        public override void Unpin()
        {
        }

        protected override void Dispose(bool disposing)
        {
        }
    }
}
