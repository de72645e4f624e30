using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using DualChunk.Core;

namespace DualChunk.Tests.Loading;

/// <summary>
/// The public <see cref="Npy"/> reader and writer: numpy's own bytes (samples/tiny was written by numpy.save),
/// every way a header can be wrong, truncation at every length, and special files that must not hang or bloat.
/// </summary>
[TestFixture]
public sealed class NpyTests
{
    private string _dir = "";

    [SetUp]
    public void SetUp()
    {
        _dir = Path.Combine(Path.GetTempPath(), "dualchunk-npy-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
    }

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, recursive: true);

    internal static string SamplesTiny
    {
        get
        {
            for (var d = new DirectoryInfo(TestContext.CurrentContext.TestDirectory); d is not null; d = d.Parent)
            {
                string candidate = Path.Combine(d.FullName, "samples", "tiny");
                if (File.Exists(Path.Combine(candidate, "input.npy"))) return candidate;
            }
            throw new InvalidOperationException("samples/tiny not found above the test directory");
        }
    }

    [Test]
    public void WriteIsByteForByteWhatNumpyWroteForTheSamples()
    {
        // input.npy: float32 [2, 8, 32]; expected_last_f64.npy: float64 [2, 32]; both from numpy.save.
        byte[] f32 = File.ReadAllBytes(Path.Combine(SamplesTiny, "input.npy"));
        var (x, xShape) = Npy.Read(f32, "input.npy");
        Assert.That(xShape, Is.EqualTo(new[] { 2, 8, 32 }));
        var written = new MemoryStream();
        Npy.Write(written, x, xShape);
        Assert.That(written.ToArray(), Is.EqualTo(f32));

        byte[] f64 = File.ReadAllBytes(Path.Combine(SamplesTiny, "expected_last_f64.npy"));
        double[] y = ReadF64(f64, out int[] yShape);
        Assert.That(yShape, Is.EqualTo(new[] { 2, 32 }));
        written = new MemoryStream();
        Npy.Write(written, y, yShape);
        Assert.That(written.ToArray(), Is.EqualTo(f64));
    }

    // Headers as numpy.save writes them (format.py: sorted dict repr, first axis padded to 21 digits, spaces and '\n'
    // to a multiple of 64 bytes with 1..64 spaces), built independently of Npy.Write for shapes the samples lack.
    [TestCase(new int[0])]
    [TestCase(new[] { 5 })]
    [TestCase(new[] { 0, 3 })]
    [TestCase(new[] { 1, 64, 287 })]
    [TestCase(new[] { 1234567, 1 })]
    [TestCase(new[] { 2, 3, 4, 5, 6, 7 })]
    [TestCase(new[] { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 })] // the growth room moves the data to byte 192
    [TestCase(new[] { 0, 1000, 10000, 10000, 10000, 10000, 10000 })]     // dict + '\n' already aligned: numpy adds 64 spaces
    public void WriteMatchesNumpysHeaderAlgorithm(int[] shape)
    {
        int count = shape.Aggregate(1, (a, d) => a * d);
        var data = RandomWeights.Input(count, seed: shape.Length + 1);
        var written = new MemoryStream();
        Npy.Write(written, data, shape);
        byte[] expected = NumpyReference("<f4", shape, data.SelectMany(BitConverter.GetBytes).ToArray());
        Assert.That(written.ToArray(), Is.EqualTo(expected));
        var (back, backShape) = Npy.Read(written.ToArray());
        Assert.That(backShape, Is.EqualTo(shape));
        Assert.That(back, Is.EqualTo(data));
    }

    [Test]
    public void Float64IsRoundedToNearestFloat32()
    {
        double[] values = [1.0 + 1e-9, -3.5, 1e300, 1.00000005960464477539, double.NaN];
        var s = new MemoryStream();
        Npy.Write(s, values, [values.Length]);
        var (x, _) = Npy.Read(s.ToArray());
        Assert.That(x, Is.EqualTo(values.Select(v => (float)v).ToArray()));
    }

    [Test]
    public void WriteRejectsAShapeThatDoesNotDescribeTheData()
    {
        Assert.Throws<ArgumentException>(() => Npy.Write(new MemoryStream(), new float[6], [2, 4]));
        Assert.Throws<ArgumentException>(() => Npy.Write(new MemoryStream(), new float[6], [-2, -3]));
    }

    [Test]
    public void EveryTruncationIsANamedFormatError()
    {
        byte[] file = File.ReadAllBytes(Path.Combine(SamplesTiny, "input.npy"));
        for (int length = 0; length < file.Length; length++)
        {
            var ex = Assert.Throws<NpyFormatException>(() => Npy.Read(file.AsSpan(0, length), "x.npy"), $"length {length}");
            Assert.That(ex!.Message, Does.StartWith("x.npy: ").And.Match("truncated|not a .npy|needs"), $"length {length}");
            // The same through a stream that cannot seek (an HTTP body): bounded by what arrives.
            Assert.Throws<NpyFormatException>(() => Npy.Read(new NonSeekable(file.AsSpan(0, length).ToArray()), "x.npy"), $"stream length {length}");
        }
        var extra = file.Concat(new byte[4]).ToArray();
        Assert.That(Assert.Throws<NpyFormatException>(() => Npy.Read(extra, "x.npy"))!.Message, Does.Contain("needs 2048 data bytes but the file has 2052"));
    }

    [TestCase("'<f2'", "'<f2' is not supported")]
    [TestCase("'>f4'", "'>f4' is not supported")]
    [TestCase("'<i4'", "'<i4' is not supported")]
    [TestCase("'|u1'", "'|u1' is not supported")]
    [TestCase("<f4", "not a quoted string")]
    public void UnsupportedDtypesAreRefusedByName(string descr, string expect)
    {
        var ex = Assert.Throws<NpyFormatException>(() => Npy.Read(Hand($"{{'descr': {descr}, 'fortran_order': False, 'shape': (2,), }}", 8)));
        Assert.That(ex!.Message, Does.Contain(expect));
    }

    [TestCase("True", "fortran_order arrays are not supported")]
    [TestCase("1", "neither True nor False")]
    public void FortranOrderIsRefused(string value, string expect)
    {
        var ex = Assert.Throws<NpyFormatException>(() => Npy.Read(Hand($"{{'descr': '<f4', 'fortran_order': {value}, 'shape': (2, 1), }}", 8)));
        Assert.That(ex!.Message, Does.Contain(expect));
    }

    [TestCase(2, 0)]
    [TestCase(3, 0)]
    public void Versions2And3AreRead(int major, int minor)
    {
        var body = new byte[] { 0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0 }; // 1.0f, -2.0f
        var (x, shape) = Npy.Read(Hand("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", body, major, minor));
        Assert.That(shape, Is.EqualTo(new[] { 2 }));
        Assert.That(x, Is.EqualTo(new[] { 1f, -2f }));
    }

    [TestCase(0, 0)]
    [TestCase(1, 1)]
    [TestCase(4, 0)]
    [TestCase(255, 255)]
    public void OtherVersionsAreRefused(int major, int minor)
    {
        var ex = Assert.Throws<NpyFormatException>(() => Npy.Read(Hand("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", new byte[8], major, minor)));
        Assert.That(ex!.Message, Does.Contain($"version {major}.{minor} is not supported"));
    }

    [TestCase("(2, -1)", "malformed dimension '-1'")]
    [TestCase("(2, x)", "malformed dimension 'x'")]
    [TestCase("(2,, 3)", "malformed dimension ''")]
    [TestCase("(4294967298,)", "malformed dimension '4294967298'")]
    [TestCase("[2, 3]", "malformed shape")]
    [TestCase("(65536, 65536)", "more elements than a .NET array can hold")]
    public void BadShapesAreRefused(string shape, string expect)
    {
        var ex = Assert.Throws<NpyFormatException>(() => Npy.Read(Hand($"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}", 8)));
        Assert.That(ex!.Message, Does.Contain(expect));
    }

    [Test]
    public void ZeroDimensionalAndEmptyArraysAreRead()
    {
        var (scalar, s0) = Npy.Read(Hand("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", BitConverter.GetBytes(2.5f)));
        Assert.That(s0, Is.Empty);
        Assert.That(scalar, Is.EqualTo(new[] { 2.5f }));
        var (empty, s1) = Npy.Read(Hand("{'descr': '<f8', 'fortran_order': False, 'shape': (3, 0), }", []));
        Assert.That(s1, Is.EqualTo(new[] { 3, 0 }));
        Assert.That(empty, Is.Empty);
    }

    [Test]
    public void MissingKeysAndAHugeHeaderAreRefused()
    {
        Assert.That(Assert.Throws<NpyFormatException>(() => Npy.Read(Hand("{'descr': '<f4', 'shape': (2,), }", 8)))!.Message, Does.Contain("no 'fortran_order' entry"));
        Assert.That(Assert.Throws<NpyFormatException>(() => Npy.Read(Hand("'descr': '<f4', 'fortran_order': False, 'shape': (2,)", 8)))!.Message, Does.Contain("not a {...} dict"));
        // Version 2.0 claims a 4 GiB header: refused from the preamble, before anything is allocated.
        byte[] huge = [0x93, .. "NUMPY"u8, 2, 0, 0xff, 0xff, 0xff, 0xff, (byte)'{'];
        Assert.That(Assert.Throws<NpyFormatException>(() => Npy.Read(new NonSeekable(huge)))!.Message, Does.Contain("over the 65536-byte limit"));
    }

    [Test]
    public void AHeaderClaimingAHugeArrayCostsOnlyWhatArrives()
    {
        // 2^31-1 floats claimed (8 GiB), 1 MiB sent through a stream without a length (an HTTP body).
        byte[] file = Hand("{'descr': '<f4', 'fortran_order': False, 'shape': (2147483591,), }", 1 << 20);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var ex = Assert.Throws<NpyFormatException>(() => Npy.Read(new NonSeekable(file), "body"));
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.That(ex!.Message, Does.Contain("needs 8589934364 data bytes but the file has 1048576"));
        Assert.That(allocated, Is.LessThan(16L << 20), "memory bounded by the bytes received, not the claim");

        // The same from a file: refused from its length before any data is read.
        string path = Path.Combine(_dir, "claim.npy");
        File.WriteAllBytes(path, file);
        before = GC.GetAllocatedBytesForCurrentThread();
        Assert.Throws<NpyFormatException>(() => Npy.Read(path));
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.LessThan(1L << 20));
    }

    [Test]
    public void SpecialFilesAreRefusedBeforeOpening()
    {
        if (!OperatingSystem.IsLinux()) Assert.Ignore("FIFOs and /dev/zero are Linux fixtures");
        string fifo = Path.Combine(_dir, "in.npy");
        using (var mkfifo = Process.Start("mkfifo", [fifo])) Assert.That(mkfifo.WaitForExit(10_000) && mkfifo.ExitCode == 0, "mkfifo");

        // Bounded: a reader that opened the FIFO would block here until a writer came (forever).
        var read = Task.Run(() => Npy.Read(fifo));
        if (!((IAsyncResult)read).AsyncWaitHandle.WaitOne(TimeSpan.FromSeconds(20)))
        {
            using (File.OpenWrite(fifo)) { } // unblock the reader so the test run can end
            Assert.Fail("reading a FIFO blocked");
        }
        Assert.That(read.Exception?.InnerException, Is.TypeOf<NpyFormatException>().With.Message.Contain("FIFO"));

        Assert.That(Assert.Throws<NpyFormatException>(() => Npy.Read("/dev/zero"))!.Message, Does.Contain("/dev/zero: is a character device"));
        Assert.That(Assert.Throws<NpyFormatException>(() => Npy.Read(_dir))!.Message, Does.Contain("a directory"));
        Assert.Throws<FileNotFoundException>(() => Npy.Read(Path.Combine(_dir, "missing.npy")));
    }

    [Test]
    public void FileRoundTripOfEveryTailLength()
    {
        string path = Path.Combine(_dir, "r.npy");
        for (int n = 0; n <= 70; n++)
        {
            var data = RandomWeights.Input(n * 3, seed: n);
            Npy.Write(path, data, [n, 3]);
            var (x, shape) = Npy.Read(path);
            Assert.That(shape, Is.EqualTo(new[] { n, 3 }));
            Assert.That(x, Is.EqualTo(data));
            var (xs, _) = Npy.Read(new NonSeekable(File.ReadAllBytes(path)));
            Assert.That(xs, Is.EqualTo(data));
        }
    }

    /// <summary>numpy.save's bytes for a header dict, written out from numpy's format.py rules, not from Npy.Write.</summary>
    private static byte[] NumpyReference(string descr, int[] shape, byte[] body)
    {
        string shapeRepr = shape.Length switch
        {
            0 => "()",
            1 => $"({shape[0]},)",
            _ => "(" + string.Join(", ", shape) + ")",
        };
        string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shapeRepr + ", }";
        if (shape.Length > 0) header += new string(' ', 21 - shape[0].ToString().Length);
        int hlen = header.Length + 1;
        int padlen = 64 - (6 + 2 + 2 + hlen) % 64;
        return Hand(header + new string(' ', padlen), body, 1, 0, addNewline: true, raw: true);
    }

    private static byte[] Hand(string dict, int dataBytes) => Hand(dict, new byte[dataBytes]);

    /// <summary>A .npy with a hand-written header (padded to 64 like numpy unless <paramref name="raw"/>).</summary>
    private static byte[] Hand(string dict, byte[] body, int major = 1, int minor = 0, bool addNewline = true, bool raw = false)
    {
        int preamble = major == 1 ? 10 : 12;
        string header = raw ? dict : dict + new string(' ', (64 - (preamble + dict.Length + 1) % 64) % 64);
        if (addNewline) header += "\n";
        var bytes = new List<byte> { 0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', (byte)major, (byte)minor };
        if (major == 1) bytes.AddRange(BitConverter.GetBytes((ushort)header.Length));
        else bytes.AddRange(BitConverter.GetBytes((uint)header.Length));
        bytes.AddRange(Encoding.Latin1.GetBytes(header));
        bytes.AddRange(body);
        return [.. bytes];
    }

    /// <summary>An independent float64 .npy reader for the numpy-written sample (fixed header, as numpy writes it).</summary>
    private static double[] ReadF64(byte[] file, out int[] shape)
    {
        int headerLength = BinaryPrimitives.ReadUInt16LittleEndian(file.AsSpan(8));
        string header = Encoding.Latin1.GetString(file, 10, headerLength);
        Assert.That(header, Does.Contain("'descr': '<f8'"));
        string dims = header[(header.IndexOf('(') + 1)..header.IndexOf(')')];
        shape = dims.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(int.Parse).ToArray();
        var data = new double[(file.Length - 10 - headerLength) / 8];
        for (int i = 0; i < data.Length; i++) data[i] = BinaryPrimitives.ReadDoubleLittleEndian(file.AsSpan(10 + headerLength + i * 8));
        return data;
    }

    /// <summary>A stream with no length, handing out at most 1000 bytes per read (like a socket).</summary>
    private sealed class NonSeekable(byte[] bytes) : Stream
    {
        private int _position;
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));
        public override int Read(Span<byte> buffer)
        {
            int n = Math.Min(Math.Min(buffer.Length, 1000), bytes.Length - _position);
            bytes.AsSpan(_position, n).CopyTo(buffer);
            _position += n;
            return n;
        }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
