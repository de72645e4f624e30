using System.Diagnostics;
using DualChunk.Core;
using NUnit.Framework;
using static DualChunk.Tests.Loading.LoadingTestData;

namespace DualChunk.Tests.Loading;

/// <summary>
/// Where weights come from: a file that later changes, a stream, bytes in memory, and paths that are not regular files.
/// </summary>
[TestFixture]
public class LoadSourceTests
{
    private static readonly ModelConfig Config = new(30, 64, 4, 2, 8, 160);
    private const int Batch = 2, SeqLen = 24;

    private static float[] RunOnce(DualChunkModel model)
        => model.Run(RandomWeights.Input(Batch * SeqLen * Config.EmbedDim, 4), Batch, SeqLen, OutputMode.All);

    private static void AssertBitwise(float[] expected, float[] actual, string because)
        => Assert.That(actual.Select(BitConverter.SingleToInt32Bits), Is.EqualTo(expected.Select(BitConverter.SingleToInt32Bits)), because);

    /// <summary>A weights file of <see cref="Config"/> with random weights, as bytes.</summary>
    private static byte[] FileOf(string format, int seed)
    {
        var tensors = RandomWeights.Create(Config, seed);
        return format == "dcw" ? Dcw(Config, tensors) : SafetensorsOf(tensors, Config);
    }

    [TestCase("dcw")]
    [TestCase("safetensors")]
    public void LoadedModelDoesNotDependOnItsFile(string format)
    {
        using var dir = new TempDir();
        string path = dir.File("m." + format);
        File.WriteAllBytes(path, FileOf(format, seed: 9));
        byte[] otherBytes = FileOf(format, seed: 10);
        using var model = DualChunkModel.Load(path, format == "dcw" ? null : Config.ChunkSize);
        Assert.That(model.IsMemoryMapped, Is.False, "the default reads the file into memory");
        var expected = RunOnce(model);
        Assert.That(expected.All(float.IsFinite));

        // Overwritten in place with another model of the same size, then truncated to nothing: no effect.
        Assert.That(otherBytes, Has.Length.EqualTo(new FileInfo(path).Length));
        using (var fs = new FileStream(path, FileMode.Open, FileAccess.Write))
            fs.Write(otherBytes);
        AssertBitwise(expected, RunOnce(model), "after an in-place overwrite");
        using (var fs = new FileStream(path, FileMode.Open, FileAccess.Write))
            fs.SetLength(0);
        AssertBitwise(expected, RunOnce(model), "after truncation to 0 bytes");
        File.Delete(path);
        AssertBitwise(expected, RunOnce(model), "after deletion");
    }

    [Test]
    public void MappedModelSeesAnOverwrite()
    {
        // The documented hazard of MemoryMap = true (docs/api.md): the model reads the file for as long as it lives.
        // Only the overwrite is tested; a truncation would kill the test host with SIGBUS, which is the point of the
        // warning.
        using var dir = new TempDir();
        string path = dir.File("m.dcw");
        var tensors = RandomWeights.Create(Config, 9);
        DcwFile.Write(path, Config, tensors);
        using var model = DualChunkModel.Load(path, new DualChunkModelOptions { MemoryMap = true });
        Assert.That(model.IsMemoryMapped, Is.True);
        var before = RunOnce(model);

        var changed = new Dictionary<string, CheckpointTensor>(tensors);
        string gamma = CheckpointNames.FinalGamma;
        changed[gamma] = new CheckpointTensor(gamma, [Config.HiddenSize], tensors[gamma].Data.ToArray().Select(v => v * 2).ToArray());
        byte[] changedBytes = Dcw(Config, changed);
        using (var fs = new FileStream(path, FileMode.Open, FileAccess.Write))
            fs.Write(changedBytes);
        var after = RunOnce(model);
        Assert.That(after, Is.Not.EqualTo(before), "a mapped model uses the new bytes of final_norm.gamma");
    }

    [TestCase("dcw")]
    [TestCase("safetensors")]
    public void StreamAndBytesLoadExactlyWhatTheFileLoads(string format)
    {
        using var dir = new TempDir();
        string path = dir.File("m." + format);
        File.WriteAllBytes(path, FileOf(format, seed: 9));
        int? chunk = format == "dcw" ? null : Config.ChunkSize;
        byte[] bytes = File.ReadAllBytes(path);

        var fromFile = WeightsLoader.Load(path, chunk);
        var fromBytes = WeightsLoader.Load(bytes, chunk, "bytes");
        using var seekable = new MemoryStream(bytes, writable: false);
        var fromStream = WeightsLoader.Load(seekable, chunk, "seekable");
        using var trickle = new TrickleStream(new MemoryStream(bytes, writable: false), claimedLength: null);
        var fromTrickle = WeightsLoader.Load(trickle, chunk, "trickle");
        foreach (var loaded in new[] { fromBytes, fromStream, fromTrickle })
        {
            Assert.That(loaded.Config, Is.EqualTo(fromFile.Config));
            Assert.That(loaded.Format, Is.EqualTo(fromFile.Format));
            AssertBitwiseEqual(fromFile.Tensors, loaded.Tensors);
        }

        using var fileModel = DualChunkModel.Load(path, chunk);
        using var streamModel = DualChunkModel.Load(new MemoryStream(bytes), new DualChunkModelOptions { ChunkSize = chunk });
        using var bytesModel = DualChunkModel.Load(bytes, new DualChunkModelOptions { ChunkSize = chunk });
        var expected = RunOnce(fileModel);
        AssertBitwise(expected, RunOnce(streamModel), "Load(Stream)");
        bytes.AsSpan().Clear(); // the model must not refer to the caller's bytes
        AssertBitwise(expected, RunOnce(bytesModel), "Load(bytes) after the bytes were cleared");
    }

    [Test]
    public void StreamReadsAreBoundedWhateverTheStreamClaims()
    {
        // An endless non-seekable stream (like /dev/zero): stopped at maxLength + 1 bytes.
        using var endless = new TrickleStream(null, claimedLength: null);
        var clock = Stopwatch.StartNew();
        var ex = Assert.Throws<ModelFormatException>(() => WeightsLoader.Load(endless, null, "endless", maxLength: 1 << 20));
        Assert.That(ex!.Message, Does.Contain("endless").And.Contain("longer than the limit of 1048576"));
        Assert.That(endless.BytesRead, Is.LessThanOrEqualTo((1 << 20) + (1 << 16)), "reads stop just past the limit");
        Assert.That(clock.Elapsed, Is.LessThan(TimeSpan.FromSeconds(30)), "bounded, not endless");

        // A stream that claims 1 TB is refused by its claim, before anything is allocated for it.
        using var liar = new TrickleStream(new MemoryStream(SmallDcw()), claimedLength: 1L << 40);
        long before = GC.GetAllocatedBytesForCurrentThread();
        Assert.That(() => WeightsLoader.Load(liar, null, "liar", maxLength: 1 << 30),
            Throws.TypeOf<ModelFormatException>().With.Message.Contain("more than the limit"));
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.LessThan(1 << 20));

        // A stream that claims a small length but holds a valid model still loads: the claim only sizes the first buffer.
        var dcw = SmallDcw();
        using var understated = new TrickleStream(new MemoryStream(dcw), claimedLength: 10);
        Assert.That(WeightsLoader.Load(understated, null, "understated").Config, Is.EqualTo(SmallConfig));
        Assert.That(() => WeightsLoader.Load(new MemoryStream(dcw), null, "exact", maxLength: dcw.Length - 1),
            Throws.TypeOf<ModelFormatException>().With.Message.Contain("limit"));
        Assert.That(WeightsLoader.Load(new MemoryStream(dcw), null, "exact", maxLength: dcw.Length).Config, Is.EqualTo(SmallConfig));
    }

    [Test]
    public void NonRegularFilesAreRefusedWithoutBlocking()
    {
        if (!OperatingSystem.IsLinux()) Assert.Ignore("FIFOs and /dev/zero");
        using var dir = new TempDir();
        string fifo = dir.File("pipe.safetensors");
        using (var mkfifo = Process.Start("mkfifo", fifo))
            Assert.That(mkfifo.WaitForExit(30_000) && mkfifo.ExitCode == 0, "mkfifo");
        foreach (var (path, kind) in new[] { (fifo, "FIFO"), ("/dev/zero", "character device") })
        {
            Action[] loads =
            [
                () => WeightsLoader.Load(path, 2),
                () => DualChunkModel.Load(path).Dispose(),
                () => DualChunkModel.Load(path, new DualChunkModelOptions { MemoryMap = true }).Dispose(),
                () => SafetensorsReader.Inspect(path),
                () => DcwFile.Inspect(path),
                () => DcwFile.Read(path),
            ];
            foreach (var load in loads)
            {
                var task = Task.Run(load);
                bool finished = ((IAsyncResult)task).AsyncWaitHandle.WaitOne(TimeSpan.FromSeconds(30)) || Unblock(fifo, task);
                Assert.That(finished, Is.True, $"{path}: the load blocked");
                Assert.That(task.Exception?.InnerException, Is.TypeOf<ArgumentException>()
                    .With.Message.Contain(path).And.Message.Contain(kind).And.Message.Contain("not a regular file"));
            }
        }
    }

    /// <summary>Opens the FIFO for writing so that a reader blocked in open() returns; false (it had blocked).</summary>
    private static bool Unblock(string fifo, Task task)
    {
        using (new FileStream(fifo, FileMode.Open, FileAccess.Write))
        {
        }
        ((IAsyncResult)task).AsyncWaitHandle.WaitOne(TimeSpan.FromSeconds(30));
        return false;
    }

    /// <summary>
    /// A non-seekable stream that returns at most 1000 bytes per read from <c>inner</c> (zeros forever when null);
    /// with <c>claimedLength</c> it is seekable and reports that length whatever it holds.
    /// </summary>
    private sealed class TrickleStream(Stream? inner, long? claimedLength) : Stream
    {
        public long BytesRead { get; private set; }

        public override bool CanRead => true;
        public override bool CanSeek => claimedLength is not null;
        public override bool CanWrite => false;
        public override long Length => claimedLength ?? throw new NotSupportedException();
        public override long Position { get => BytesRead; set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count)
        {
            int n = Math.Min(count, 1000);
            if (inner is not null) n = inner.Read(buffer, offset, n);
            else buffer.AsSpan(offset, n).Clear();
            BytesRead += n;
            return n;
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing) inner?.Dispose();
            base.Dispose(disposing);
        }
    }
}
