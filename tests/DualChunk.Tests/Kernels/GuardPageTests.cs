using DualChunk.Kernels;

namespace DualChunk.Tests.Kernels;

/// <summary>
/// Bounded-memory tests, as TensorPrimitives does them: every SIMD kernel on every ISA path this process runs (CI
/// reruns this namespace with AVX-512 and AVX2 switched off), at every tail length 0 .. 2·16 + 1 (two vectors plus one
/// of the widest path), with each input, output and scratch buffer in its own mapping flush against a PROT_NONE page,
/// once ending right before it and once starting right after one. An over-read or over-write kills the test process
/// with SIGSEGV. Outputs start as NaN and must be fully written, so a kernel that skips its tail cannot pass either.
/// </summary>
/// <remarks>The table is keyed by kernel; a renamed entry point is a one-line change in <see cref="Kernels"/>.</remarks>
[TestFixture]
[Platform("Linux", Reason = "mmap/mprotect through libc")]
public class GuardPageTests
{
    private const int MaxTail = 2 * 16 + 1;

    private delegate void KernelCall(Buffers b, KernelIsa isa, int n);

    /// <summary>Kernel name, smallest n it accepts, and one call whose tail dimension is n.</summary>
    private static readonly (string Name, int MinN, KernelCall Call)[] Kernels =
    [
        ("NonFinite", 0, (b, isa, n) =>
        {
            var x = b.In(n);
            Assert.That(NonFinite.IndexOf(x, isa), Is.EqualTo(-1));
            if (n == 0) return;
            x[n - 1] = float.NaN; // the last float must be read
            Assert.That(NonFinite.IndexOf(x, isa), Is.EqualTo(n - 1));
        }),
        ("LayerNorm 1 row", 1, (b, isa, n) => LayerNorm.Run(b.In(n), 1, n, b.In(n), b.In(n), b.Out(n), isa)),
        ("LayerNorm 3 rows", 1, (b, isa, n) => LayerNorm.Run(b.In(3 * n), 3, n, b.In(n), b.In(n), b.Out(3 * n), isa)),
        ("LayerNorm in place", 1, (b, isa, n) => { var x = b.InOut(2 * n); LayerNorm.Run(x, 2, n, b.In(n), b.In(n), x, isa); }),
        ("RowMean width n", 1, (b, isa, n) => RowMean.Run(b.In(3 * n), 3, n, n, 3, b.Out(n), n, isa)),
        ("RowMean 2 groups, strided", 1, (b, isa, n) => RowMean.Run(b.In(3 * (n + 1) + n), 4, n + 1, n, 2, b.OutStrided(2, n, n + 2), n + 2, isa)),
        ("RowMean n rows", 1, (b, isa, n) => RowMean.Run(b.In(n * 5), n, 5, 5, n, b.Out(5), 5, isa)),
        ("CausalSoftmax last row", 1, (b, isa, n) => CausalSoftmax.Run(b.In(n), b.Out(n), n - 1, isa)),
        ("CausalSoftmax middle row", 1, (b, isa, n) => CausalSoftmax.Run(b.In(n), b.Out(n), n / 2, isa)),
        ("CausalSoftmax in place", 1, (b, isa, n) => { var s = b.InOut(n); CausalSoftmax.Run(s, s, n - 1, isa); }),
        ("CausalAttention d = n", 1, (b, isa, n) => Attention(b, isa, t: 5, d: n, blend: false, firstRow: 0)),
        ("CausalAttention t = n", 1, (b, isa, n) => Attention(b, isa, t: n, d: 7, blend: false, firstRow: 0)),
        ("CausalAttention t = n, blend", 1, (b, isa, n) => Attention(b, isa, t: n, d: 3, blend: true, firstRow: 0)),
        ("CausalAttention d = n, blend", 1, (b, isa, n) => Attention(b, isa, t: 3, d: n, blend: true, firstRow: 0)),
        ("CausalAttention t = n, last row", 1, (b, isa, n) => Attention(b, isa, t: n, d: 5, blend: true, firstRow: n - 1)),
        ("PackedMatrix.Pack n columns", 1, (b, isa, n) => PackedMatrix.Pack(b.In(3 * n), 3, n, isa)),
        ("PackedMatrix.Pack n rows", 1, (b, isa, n) => PackedMatrix.Pack(b.In(n * 17), n, 17, isa)),
        ("Gemm N = n, bias", 1, (b, isa, n) => GemmCall(b, isa, m: 7, k: 5, n: n, GemmEpilogue.Bias)),
        ("Gemm N = n, bias+GELU", 1, (b, isa, n) => GemmCall(b, isa, m: 7, k: 5, n: n, GemmEpilogue.BiasGelu)),
        ("Gemm N = n, accumulate", 1, (b, isa, n) => GemmCall(b, isa, m: 7, k: 5, n: n, GemmEpilogue.BiasAccumulate)),
        ("Gemm K = n", 1, (b, isa, n) => GemmCall(b, isa, m: 5, k: n, n: 20, GemmEpilogue.Bias)),
        ("Gemm M = n", 0, (b, isa, n) => GemmCall(b, isa, m: n, k: 4, n: 9, GemmEpilogue.BiasGelu)),
        ("Gemm N = n, K blocks", 1, (b, isa, n) => GemmCall(b, isa, m: 3, k: 600, n: n, GemmEpilogue.BiasAccumulate)),
        ("Gemm N = 64 + n, column range", 0, (b, isa, n) => GemmColumns(b, isa, m: 4, k: 6, n: n)),
    ];

    public static IEnumerable<TestCaseData> Cases()
    {
        foreach (var isa in KernelTestSupport.Isas())
            foreach (var (name, _, _) in Kernels)
                yield return new TestCaseData(name, isa).SetName($"{{m}}({name}, {isa})");
    }

    [TestCaseSource(nameof(Cases))]
    public void NoAccessPastEitherEndOfAnyBuffer(string kernel, KernelIsa isa)
    {
        var (_, minN, call) = Kernels.Single(k => k.Name == kernel);
        var rng = new Random(kernel.Length * 1000 + (int)isa);
        int calls = 0;
        for (int n = minN; n <= MaxTail; n++)
        {
            foreach (var placement in Enum.GetValues<GuardPlacement>())
            {
                using var b = new Buffers(placement, rng);
                call(b, isa, n);
                b.AssertOutputsWritten($"{kernel}, {isa}, n = {n}, {placement}");
                calls++;
            }
        }
        Assert.That(calls, Is.EqualTo(2 * (MaxTail - minN + 1)));
    }

    [Test]
    public void SpansLieFlushAgainstAProtNonePage()
    {
        // /proc/self/maps gives each mapping's protection: the page past a BeforeGuard span and the page before an
        // AfterGuard span must be "---p" (inaccessible), the span's own pages "rw-p".
        foreach (int n in new[] { 1, 5, 1024, 1025 })
        {
            unsafe
            {
                using var before = new GuardedMemory(n, GuardPlacement.BeforeGuard);
                using var after = new GuardedMemory(n, GuardPlacement.AfterGuard);
                before.Span.Fill(1);
                after.Span.Fill(1);
                Assert.That(Protection((nint)(before.Pointer + n - 1)), Does.StartWith("rw"), $"n = {n}: last float of a BeforeGuard span");
                Assert.That(Protection((nint)(before.Pointer + n)), Does.StartWith("---"), $"n = {n}: the float past a BeforeGuard span");
                Assert.That(Protection((nint)after.Pointer), Does.StartWith("rw"), $"n = {n}: first float of an AfterGuard span");
                Assert.That(Protection((nint)(after.Pointer - 1)), Does.StartWith("---"), $"n = {n}: the float before an AfterGuard span");
            }
        }
    }

    private static string Protection(nint address)
    {
        foreach (var line in File.ReadLines("/proc/self/maps"))
        {
            var parts = line.Split(' ', 3);
            var range = parts[0].Split('-');
            long lo = long.Parse(range[0], System.Globalization.NumberStyles.HexNumber, System.Globalization.CultureInfo.InvariantCulture);
            long hi = long.Parse(range[1], System.Globalization.NumberStyles.HexNumber, System.Globalization.CultureInfo.InvariantCulture);
            if (address >= lo && address < hi) return parts[1];
        }
        return "unmapped";
    }

    private static void Attention(Buffers b, KernelIsa isa, int t, int d, bool blend, int firstRow)
    {
        var q = b.In(t * d);
        var k = b.In(t * d);
        var v = b.In(t * d);
        var output = firstRow == 0 ? b.Out(t * d) : b.Untouched(t * d);
        var scratch = b.Untouched(CausalAttention.ScratchFloats(t, d));
        var blendRow = blend ? b.In(d) : default;
        var gate = blend ? b.In(d) : default;
        CausalAttention.Run(q, d, k, d, v, d, t, d, 0.5f, output, d, scratch, blendRow, gate, firstRow, isa);
        if (firstRow > 0)
        {
            Assert.That(output[(firstRow * d)..].ToArray(), Has.None.NaN, "rows from firstRow on must be written");
            Assert.That(output[..(firstRow * d)].ToArray(), Has.All.NaN, "rows before firstRow must not be written");
        }
    }

    private static void GemmCall(Buffers b, KernelIsa isa, int m, int k, int n, GemmEpilogue epilogue)
    {
        var w = PackedMatrix.Pack(b.In(k * n), k, n, isa);
        var a = b.In(m * k);
        var bias = b.In(n);
        var c = epilogue == GemmEpilogue.BiasAccumulate ? b.InOut(m * n) : b.Out(m * n);
        Gemm.Run(a, m, k, w, bias, c, n, epilogue, isa);
    }

    private static void GemmColumns(Buffers b, KernelIsa isa, int m, int k, int n)
    {
        // Only columns [64, 64 + n) are computed: C's last row ends at column 64 + n - 1, flush against the guard.
        int cols = 64 + n;
        var w = PackedMatrix.Pack(b.In(k * cols), k, cols, isa);
        var c = b.Untouched(m * cols);
        Gemm.Run(b.In(m * k), m, k, w, b.In(cols), c, cols, GemmEpilogue.Bias, 64, n, isa);
        for (int r = 0; r < m; r++)
        {
            Assert.That(c.Slice(r * cols + 64, n).ToArray(), Has.None.NaN, $"row {r}: the range must be written");
            Assert.That(c.Slice(r * cols, 64).ToArray(), Has.All.NaN, $"row {r}: columns before the range must not be written");
        }
    }

    /// <summary>The guarded buffers of one call, all at the same placement; inputs random non-zero, outputs NaN.</summary>
    private sealed class Buffers(GuardPlacement placement, Random rng) : IDisposable
    {
        private readonly List<GuardedMemory> _all = [];
        private readonly List<GuardedMemory> _outputs = [];
        private readonly List<(GuardedMemory Memory, int Rows, int Width, int Ld)> _strided = [];

        /// <summary>An input of n random floats in ±[0.05, 1].</summary>
        public Span<float> In(int n)
        {
            var g = New(n);
            KernelTestSupport.RandomNonZero(rng, n).CopyTo(g.Span);
            return g.Span;
        }

        /// <summary>An output the kernel must write completely (poisoned with NaN).</summary>
        public Span<float> Out(int n)
        {
            var g = New(n);
            g.Span.Fill(float.NaN);
            _outputs.Add(g);
            return g.Span;
        }

        /// <summary>An output of <paramref name="rows"/> rows of <paramref name="width"/> at stride <paramref name="ld"/>: rows written, padding untouched.</summary>
        public Span<float> OutStrided(int rows, int width, int ld)
        {
            var g = New((rows - 1) * ld + width);
            g.Span.Fill(float.NaN);
            _strided.Add((g, rows, width, ld));
            return g.Span;
        }

        /// <summary>Read and written: random inputs that must stay finite.</summary>
        public Span<float> InOut(int n)
        {
            var s = In(n);
            _outputs.Add(_all[^1]);
            return s;
        }

        /// <summary>Scratch or a partly written output: poisoned, not checked.</summary>
        public Span<float> Untouched(int n)
        {
            var g = New(n);
            g.Span.Fill(float.NaN);
            return g.Span;
        }

        public void AssertOutputsWritten(string what)
        {
            foreach (var g in _outputs)
                Assert.That(g.Span.ToArray(), Has.None.NaN, $"{what}: an output float was not written");
            foreach (var (g, rows, width, ld) in _strided)
            {
                for (int r = 0; r < rows; r++)
                {
                    Assert.That(g.Span.Slice(r * ld, width).ToArray(), Has.None.NaN, $"{what}: row {r} was not written");
                    if (r < rows - 1)
                        Assert.That(g.Span.Slice(r * ld + width, ld - width).ToArray(), Has.All.NaN, $"{what}: the padding after row {r} was written");
                }
            }
        }

        private GuardedMemory New(int n)
        {
            var g = new GuardedMemory(n, placement);
            _all.Add(g);
            return g;
        }

        public void Dispose()
        {
            foreach (var g in _all) g.Dispose();
        }
    }
}
