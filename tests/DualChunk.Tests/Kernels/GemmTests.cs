using System.Runtime.InteropServices;
using DualChunk.Kernels;
using DualChunk.TestKernels;
using NUnit.Framework;

namespace DualChunk.Tests.Kernels;

/// <summary>
/// Gemm against its float64 twin on seeded random non-zero data, on every ISA path this machine supports, for all
/// epilogues and every M tail (mod MR) and N tail (mod NR).
/// <para>
/// Tolerance per element: |c − ref| ≤ tol · (Σ_k |a·w| + |b|) + tol, with ref computed in double (GELU by
/// <see cref="Gelu.ScalarReference"/>, the residual add as C_old + s). tol = 5e-7 for Bias and BiasAccumulate
/// (float FMA chains over K ≤ 1100 use at most ~60 % of it here); tol = 1e-6 for BiasGelu, which also carries the
/// error of the float GELU (Gelu.cs) against the double one. Each test prints the largest fraction it used.
/// </para>
/// </para>
/// </summary>
[TestFixture]
public sealed class GemmTests
{
    private const double LinearTolerance = 5e-7;
    private const double GeluTolerance = 1e-6;

    /// <summary>Relative error allowed for the float SiLU of the SwiGLU epilogue (exp ≈ 2 ulp, one division, one product).</summary>
    private const double SiluTolerance = 6e-7;

    /// <summary>Marks C entries Gemm must not touch (padding between N and ldc, past the span).</summary>
    private const float Sentinel = -12345.678f;

    private static readonly GemmEpilogue[] Epilogues = [GemmEpilogue.Bias, GemmEpilogue.BiasGelu, GemmEpilogue.BiasAccumulate, GemmEpilogue.BiasSiluGate];

    private static KernelIsa[] SupportedIsas()
        => Enum.GetValues<KernelIsa>().Where(isa => isa <= KernelSelection.Isa).ToArray();

    private static int RowsOf(KernelIsa isa) => isa == KernelIsa.Portable ? 4 : 6;

    private static int ColumnsOf(KernelIsa isa) => Gemm.PanelColumnsOf(isa);

    /// <summary>Random floats in [-1, 1), never exactly 0.</summary>
    private static float[] RandomData(Random random, int length)
    {
        var data = new float[length];
        for (int i = 0; i < length; i++)
        {
            float x;
            do x = random.NextSingle() * 2f - 1f; while (x == 0f);
            data[i] = x;
        }
        return data;
    }

    /// <summary>One problem: data plus the float64 sums s = A·W + b and magnitudes Σ|a·w| + |b|.</summary>
    private sealed class Problem
    {
        public required int M, K, N, Lda, Ldc;
        public required float[] A, W, Bias, InitialC;
        public required double[] Sums, Magnitudes;

        public static Problem Create(int m, int k, int n, int ldaPad, int ldcPad, int seed)
        {
            var random = new Random(seed);
            int lda = k + ldaPad, ldc = n + ldcPad;
            var a = RandomData(random, (m - 1) * lda + k); // exact length: no slack to read into
            var w = RandomData(random, k * n);
            var bias = RandomData(random, n);
            var initialC = new float[(m - 1) * ldc + n];
            var values = RandomData(random, initialC.Length);
            for (int i = 0; i < initialC.Length; i++)
                initialC[i] = i % ldc < n ? values[i] : Sentinel;

            var sums = new double[m * n];
            var magnitudes = new double[m * n];
            for (int r = 0; r < m; r++)
            {
                for (int j = 0; j < n; j++)
                {
                    double s = bias[j], mag = Math.Abs(bias[j]);
                    for (int p = 0; p < k; p++)
                    {
                        double product = (double)a[r * lda + p] * w[p * n + j];
                        s += product;
                        mag += Math.Abs(product);
                    }
                    sums[r * n + j] = s;
                    magnitudes[r * n + j] = mag;
                }
            }
            return new Problem { M = m, K = k, N = n, Lda = lda, Ldc = ldc, A = a, W = w, Bias = bias, InitialC = initialC, Sums = sums, Magnitudes = magnitudes };
        }

        public double Reference(GemmEpilogue epilogue, int r, int j) => epilogue switch
        {
            GemmEpilogue.BiasGelu => Gelu.ScalarReference(Sums[r * N + j]),
            GemmEpilogue.BiasAccumulate => InitialC[r * Ldc + j] + Sums[r * N + j],
            GemmEpilogue.BiasSiluGate => ScalarTwins.Silu(InitialC[r * Ldc + j]) * Sums[r * N + j],
            _ => Sums[r * N + j],
        };

        public override string ToString() => $"M={M} K={K} N={N} lda={Lda} ldc={Ldc}";
    }

    /// <summary>Runs one problem on one path and epilogue; returns the largest fraction of the tolerance any element used.</summary>
    private static double RunAndCheck(Problem problem, KernelIsa isa, GemmEpilogue epilogue)
    {
        var packed = PackedMatrix.Pack(problem.W, problem.K, problem.N, isa);
        // C lives inside a larger buffer with sentinels after it: writing past the span would show.
        const int guard = 67;
        var buffer = new float[problem.InitialC.Length + guard];
        buffer.AsSpan().Fill(Sentinel);
        problem.InitialC.CopyTo(buffer, 0);
        var c = buffer.AsSpan(0, problem.InitialC.Length);

        Gemm.Run(problem.A, problem.M, problem.Lda, packed, problem.Bias, c, problem.Ldc, epilogue, isa);

        double worst = 0;
        for (int i = 0; i < buffer.Length; i++)
        {
            int r = i / problem.Ldc, j = i % problem.Ldc;
            bool inside = i < c.Length && j < problem.N;
            if (!inside)
            {
                if (BitConverter.SingleToInt32Bits(buffer[i]) != BitConverter.SingleToInt32Bits(Sentinel))
                    Assert.Fail($"{isa} {epilogue} {problem}: wrote outside C[m, N] at flat index {i} (row {r}, column {j}).");
                continue;
            }
            double expected = problem.Reference(epilogue, r, j);
            double magnitude = problem.Magnitudes[r * problem.N + j];
            double error = Math.Abs(buffer[i] - expected);
            double tol = epilogue == GemmEpilogue.BiasGelu ? GeluTolerance : LinearTolerance;
            double tolerance = tol * magnitude + tol;
            if (epilogue == GemmEpilogue.BiasSiluGate)
            {
                // The up branch's error scaled by |SiLU(gate)|, plus the float SiLU's (≈ 3 ulp) on the product.
                double silu = Math.Abs(ScalarTwins.Silu(problem.InitialC[r * problem.Ldc + j]));
                tolerance = LinearTolerance * (magnitude * silu + silu) + SiluTolerance * Math.Abs(expected) + 1e-30;
            }
            if (!(error <= tolerance))
                Assert.Fail($"{isa} {epilogue} {problem}: C[{r},{j}] = {buffer[i]:R}, reference {expected:R}, error {error:E3} > tolerance {tolerance:E3}.");
            worst = Math.Max(worst, error / tolerance);
        }
        return worst;
    }

    /// <summary>Every supported path × every epilogue over the given shapes (m, k, n).</summary>
    private static void CheckShapes(IEnumerable<(int M, int K, int N)> shapes, int seed)
    {
        double worst = 0;
        int count = 0;
        foreach (var (m, k, n) in shapes)
        {
            // Alternate tight and padded strides so both lda = K / ldc = N and lda > K / ldc > N are covered.
            int pad = count % 3;
            var problem = Problem.Create(m, k, n, ldaPad: pad * 3, ldcPad: pad * 5, seed: seed + count);
            foreach (var isa in SupportedIsas())
            {
                foreach (var epilogue in Epilogues)
                    worst = Math.Max(worst, RunAndCheck(problem, isa, epilogue));
            }
            count++;
        }
        TestContext.Out.WriteLine($"{count} shapes on {string.Join(", ", SupportedIsas())}: worst error = {worst:P1} of the tolerance");
        Assert.That(count, Is.GreaterThan(0));
    }

    private static int MaxRows => SupportedIsas().Max(RowsOf);

    private static int[] AllColumnTails()
    {
        // N = 1..NR+1 for the widest panel covers every N mod NR of every path; plus 2·NR ± 1 of each path and model widths.
        var widths = new SortedSet<int>(Enumerable.Range(1, 65)) { 60, 180, 768 };
        foreach (var isa in SupportedIsas())
        {
            int nr = ColumnsOf(isa);
            widths.Add(2 * nr - 1);
            widths.Add(2 * nr);
            widths.Add(2 * nr + 1);
        }
        return widths.ToArray();
    }

    [Test]
    public void EveryRowTail_MatchesFloat64Reference()
    {
        // M = 1 .. 2·MR+1 hits every M mod MR twice; 64, 65, 129 and 200 cross M blocks (48 rows) with tails.
        var ms = Enumerable.Range(1, 2 * MaxRows + 1).Concat([64, 65, 129, 200]);
        CheckShapes(ms.SelectMany(m => new[] { (m, 37, 180), (m, 7, 63) }), seed: 1000);
    }

    [Test]
    public void EveryColumnTail_MatchesFloat64Reference()
    {
        CheckShapes(AllColumnTails().SelectMany(n => new[] { (7, 37, n), (1, 3, n) }), seed: 2000);
    }

    [Test]
    public void EveryDepth_MatchesFloat64Reference()
    {
        // 256 and 287 exceed the Vector512 K block (128); 1024 and 1100 exceed every path's K block (≤ 512).
        int[] ks = [1, 2, 3, 7, 37, 128, 129, 256, 287, 1024, 1100];
        CheckShapes(ks.SelectMany(k => new[] { (13, k, 70), (5, k, 17) }), seed: 3000);
    }

    [Test]
    public void ModelShapes_MatchFloat64Reference()
    {
        CheckShapes(
        [
            (64, 256, 768), (64, 256, 1024), (64, 1024, 256), (64, 287, 256), (64, 256, 256),
            (1, 256, 768), (1, 1024, 256), (97, 287, 60),
        ], seed: 4000);
    }

    [Test]
    public void ColumnRangeSplits_AreBitwiseIdenticalToOneCall()
    {
        foreach (var isa in SupportedIsas())
        {
            foreach (var epilogue in Epilogues)
            {
                foreach (var (m, k, n) in new[] { (13, 300, 200), (7, 37, 768), (1, 1024, 129), (20, 5, 64) })
                {
                    var problem = Problem.Create(m, k, n, ldaPad: 1, ldcPad: 3, seed: 5000 + m + k + n);
                    var packed = PackedMatrix.Pack(problem.W, k, n, isa);
                    var whole = problem.InitialC.ToArray();
                    Gemm.Run(problem.A, m, problem.Lda, packed, problem.Bias, whole, problem.Ldc, epilogue, isa);

                    // One call per panel-width block, in reverse order, and an uneven two-way split.
                    var perBlock = problem.InitialC.ToArray();
                    for (int start = (n - 1) / PackedMatrix.PanelWidth * PackedMatrix.PanelWidth; start >= 0; start -= PackedMatrix.PanelWidth)
                    {
                        int count = Math.Min(PackedMatrix.PanelWidth, n - start);
                        Gemm.Run(problem.A, m, problem.Lda, packed, problem.Bias, perBlock, problem.Ldc, epilogue, start, count, isa);
                    }
                    var twoWay = problem.InitialC.ToArray();
                    int split = Math.Min(n, PackedMatrix.PanelWidth * ((n / PackedMatrix.PanelWidth + 1) / 2));
                    Gemm.Run(problem.A, m, problem.Lda, packed, problem.Bias, twoWay, problem.Ldc, epilogue, 0, split, isa);
                    Gemm.Run(problem.A, m, problem.Lda, packed, problem.Bias, twoWay, problem.Ldc, epilogue, split, n - split, isa);

                    // A range that ends inside a panel: same bits in its columns, nothing written after it.
                    var partial = problem.InitialC.ToArray();
                    int partialCount = Math.Max(1, n - 37);
                    Gemm.Run(problem.A, m, problem.Lda, packed, problem.Bias, partial, problem.Ldc, epilogue, 0, partialCount, isa);
                    var expectedPartial = problem.InitialC.ToArray();
                    for (int i = 0; i < expectedPartial.Length; i++)
                    {
                        if (i % problem.Ldc < partialCount)
                            expectedPartial[i] = whole[i];
                    }

                    Assert.That(perBlock, Is.EqualTo(whole).AsCollection, $"{isa} {epilogue} M={m} K={k} N={n}: per-block split differs.");
                    Assert.That(partial, Is.EqualTo(expectedPartial).AsCollection, $"{isa} {epilogue} M={m} K={k} N={n}: range [0, {partialCount}) differs.");
                    Assert.That(twoWay, Is.EqualTo(whole).AsCollection, $"{isa} {epilogue} M={m} K={k} N={n}: split at {split} differs.");
                }
            }
        }
    }

    [Test]
    public void RowResults_DoNotDependOnM()
    {
        // Each row alone (M = 1, the 1-row tail kernel) equals that row of a 103-row call (full tiles, M blocks, tail).
        var problem = Problem.Create(103, 300, 130, ldaPad: 2, ldcPad: 2, seed: 9000);
        foreach (var isa in SupportedIsas())
        {
            var packed = PackedMatrix.Pack(problem.W, problem.K, problem.N, isa);
            foreach (var epilogue in Epilogues)
            {
                var whole = problem.InitialC.ToArray();
                Gemm.Run(problem.A, problem.M, problem.Lda, packed, problem.Bias, whole, problem.Ldc, epilogue, isa);
                var byRow = problem.InitialC.ToArray();
                for (int r = 0; r < problem.M; r++)
                {
                    Gemm.Run(problem.A.AsSpan(r * problem.Lda, problem.K), 1, problem.Lda, packed, problem.Bias,
                        byRow.AsSpan(r * problem.Ldc, problem.N), problem.Ldc, epilogue, isa);
                }
                Assert.That(byRow, Is.EqualTo(whole).AsCollection, $"{isa} {epilogue}");
            }
        }
    }

    [Test]
    public void Blockings_AreBitwiseIdentical()
    {
        // Row and K blocks change only the loop order, never an element's FMA chain (a later K block resumes from the
        // raw sums, an exact round trip): forced blockings, odd row blocks and K blocks of 1 included, give the bits
        // of this machine's own blocking, on every path and epilogue, for model shapes and tails; with no allocation.
        GemmBlocking[] forced = [new(1, 1), new(5, 7), new(12, 100), new(48, 128), new(72, 512), new(72, 963), new(72, 1445), new(GemmBlocking.MaxRowBlock, 1 << 20)];
        foreach (var (m, k, n) in new[] { (64, 287, 256), (65, 1024, 130), (1, 300, 200), (1, 256, 768), (13, 256, 70), (2, 33, 5) })
        {
            var problem = Problem.Create(m, k, n, ldaPad: 1, ldcPad: 2, seed: 7000 + m + k + n);
            foreach (var isa in SupportedIsas())
            {
                var packed = PackedMatrix.Pack(problem.W, k, n, isa);
                foreach (var epilogue in Epilogues)
                {
                    var expected = problem.InitialC.ToArray();
                    Gemm.Run(problem.A, m, problem.Lda, packed, problem.Bias, expected, problem.Ldc, epilogue, isa);
                    foreach (var blocking in forced)
                    {
                        // The first call with a blocking may hit one-time runtime work (tiering, type loads: 632 B once
                        // in a loaded CI run); the claim is about the steady state, so the second call is measured.
                        var c = problem.InitialC.ToArray();
                        Gemm.Run(problem.A, m, problem.Lda, packed, problem.Bias, c, problem.Ldc, epilogue, 0, n, isa, blocking);
                        // The fewest bytes of three calls: the runtime itself (tiering, on this thread) may allocate
                        // during one of them, once; the kernel's steady state must allocate nothing.
                        long allocated = long.MaxValue;
                        for (int attempt = 0; attempt < 3 && allocated != 0; attempt++)
                        {
                            problem.InitialC.CopyTo(c, 0);
                            long before = GC.GetAllocatedBytesForCurrentThread();
                            Gemm.Run(problem.A, m, problem.Lda, packed, problem.Bias, c, problem.Ldc, epilogue, 0, n, isa, blocking);
                            allocated = Math.Min(allocated, GC.GetAllocatedBytesForCurrentThread() - before);
                        }
                        Assert.That(MemoryMarshal.Cast<float, int>(c).ToArray(), Is.EqualTo(MemoryMarshal.Cast<float, int>(expected).ToArray()).AsCollection,
                            $"{isa} {epilogue} M={m} K={k} N={n} blocking {blocking} vs {Gemm.BlockingOf(isa)}");
                        Assert.That(allocated, Is.Zero, $"{isa} {epilogue} blocking {blocking}");
                    }
                }
            }
        }
        Assert.That(() => Gemm.Run(new float[4], 1, 4, PackedMatrix.Pack(new float[16], 4, 4, KernelSelection.Isa), new float[4], new float[4], 4,
            GemmEpilogue.Bias, 0, 4, KernelSelection.Isa, new GemmBlocking(0, 1)), Throws.InstanceOf<ArgumentOutOfRangeException>());
        TestContext.Out.WriteLine($"This machine: {Gemm.BlockingDescription}");
    }

    [Test]
    public void Blocking_FollowsTheCaches()
    {
        var zen4 = new CpuCaches(32 * 1024, 1024 * 1024, 32L << 20, "test");
        Assert.Multiple(() =>
        {
            // 1 MB L2: 72 rows; the largest K block with (72 + NR)·kc floats in three quarters of L2.
            Assert.That(GemmBlocking.For(64, zen4), Is.EqualTo(new GemmBlocking(72, 1445)));
            Assert.That(GemmBlocking.For(16, zen4), Is.EqualTo(new GemmBlocking(72, 2234)));
            Assert.That(GemmBlocking.For(8, zen4), Is.EqualTo(new GemmBlocking(72, 2457)));
            // A 256 KB L2 (Skylake client): K blocks of 361 on the 6x64 kernel, still 72 rows.
            Assert.That(GemmBlocking.For(64, zen4 with { L2Bytes = 256 * 1024 }), Is.EqualTo(new GemmBlocking(72, 361)));
            // A tiny L2: fewer rows, and never a K block below the one that fits L1D.
            var tiny = GemmBlocking.For(64, new CpuCaches(32 * 1024, 64 * 1024, 0, "test"));
            Assert.That(tiny.RowBlock % GemmBlocking.RowGranule, Is.Zero);
            Assert.That(tiny.RowBlock, Is.LessThan(72));
            Assert.That(tiny.MaxKBlock, Is.GreaterThanOrEqualTo(128));
            // This machine's caches are read (CPUID or /sys) and give a usable blocking on every path.
            Assert.That(CpuCaches.Current.L1DataBytes, Is.GreaterThan(0));
            Assert.That(CpuCaches.Current.L2Bytes, Is.GreaterThanOrEqualTo(CpuCaches.Current.L1DataBytes));
            foreach (var isa in SupportedIsas())
                Assert.That(Gemm.BlockingOf(isa).RowBlock, Is.InRange(GemmBlocking.RowGranule, GemmBlocking.MaxRowBlock));
            Assert.That(CpuCaches.ParseSize("32K"), Is.EqualTo(32 * 1024));
            Assert.That(CpuCaches.ParseSize("1M"), Is.EqualTo(1024 * 1024));
            Assert.That(CpuCaches.ParseSize("512"), Is.EqualTo(512));
            Assert.That(CpuCaches.ParseSize("-1K"), Is.Zero);
            Assert.That(CpuCaches.ParseSize("99999999999999999999K"), Is.Zero);
            Assert.That(CpuCaches.ParseSize(""), Is.Zero);
        });
        if (CpuCaches.FromSysfs("/sys/devices/system/cpu/cpu0/cache") is { } sysfs)
        {
            // Where Linux describes the caches too, CPUID and /sys agree on L1D and L2.
            TestContext.Out.WriteLine($"cpuid/current: {CpuCaches.Current}; sysfs: {sysfs}");
            if (CpuCaches.Current.Source == "cpuid")
                Assert.That((sysfs.L1DataBytes, sysfs.L2Bytes), Is.EqualTo((CpuCaches.Current.L1DataBytes, CpuCaches.Current.L2Bytes)));
        }
    }

    [Test]
    public void PublicApi_UsesSelectedPath()
    {
        var problem = Problem.Create(9, 37, 70, ldaPad: 2, ldcPad: 1, seed: 6000);
        var packed = PackedMatrix.Pack(problem.W, problem.K, problem.N);
        var c = problem.InitialC.ToArray();
        Gemm.Run(problem.A, problem.M, problem.Lda, packed, problem.Bias, c, problem.Ldc, GemmEpilogue.Bias);
        var expected = problem.InitialC.ToArray();
        Gemm.Run(problem.A, problem.M, problem.Lda, PackedMatrix.Pack(problem.W, problem.K, problem.N, KernelSelection.Isa),
            problem.Bias, expected, problem.Ldc, GemmEpilogue.Bias, KernelSelection.Isa);
        Assert.Multiple(() =>
        {
            Assert.That(c, Is.EqualTo(expected).AsCollection);
            Assert.That(Gemm.MicroKernel, Is.EqualTo(Gemm.MicroKernelOf(KernelSelection.Isa)));
            Assert.That(Gemm.MicroKernel, Does.Match(@"^\w+ \d+x\d+$"));
            Assert.That(PackedMatrix.PanelWidth % ColumnsOf(KernelSelection.Isa), Is.Zero);
        });
        TestContext.Out.WriteLine($"Selected: {KernelSelection.Isa}, {Gemm.MicroKernel}");
    }

    [Test]
    public void Run_DoesNotAllocate()
    {
        // K = 300 takes the multi-K-block path (scratch on the stack), N = 70 an edge panel, M = 100 three M blocks.
        var problem = Problem.Create(100, 300, 70, ldaPad: 0, ldcPad: 0, seed: 8000);
        foreach (var isa in SupportedIsas())
        {
            var packed = PackedMatrix.Pack(problem.W, problem.K, problem.N, isa);
            var c = problem.InitialC.ToArray();
            foreach (var epilogue in Epilogues)
            {
                Gemm.Run(problem.A, problem.M, problem.Lda, packed, problem.Bias, c, problem.Ldc, epilogue, isa); // warm up
                long before = GC.GetAllocatedBytesForCurrentThread();
                Gemm.Run(problem.A, problem.M, problem.Lda, packed, problem.Bias, c, problem.Ldc, epilogue, isa);
                long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
                Assert.That(allocated, Is.Zero, $"{isa} {epilogue}");
            }
        }
    }

    [Test]
    public void Pack_RoundTripsAndZeroPadsEveryPath()
    {
        var w = RandomData(new Random(7000), 37 * 70);
        foreach (var isa in SupportedIsas())
        {
            var packed = PackedMatrix.Pack(w, 37, 70, isa);
            int nr = ColumnsOf(isa);
            Assert.Multiple(() =>
            {
                Assert.That(packed.ToRowMajor(), Is.EqualTo(w).AsCollection, $"{isa}");
                Assert.That(packed.PanelCount, Is.EqualTo((70 + nr - 1) / nr), $"{isa}");
                var lastPanel = packed.Panels.Slice((packed.PanelCount - 1) * 37 * nr);
                int live = 70 - (packed.PanelCount - 1) * nr;
                for (int kk = 0; kk < 37; kk++)
                {
                    for (int j = live; j < nr; j++)
                        Assert.That(lastPanel[kk * nr + j], Is.Zero, $"{isa} padding k={kk} j={j}");
                }
            });
        }
    }

    [Test]
    public void Run_RejectsBadArguments()
    {
        var isa = KernelSelection.Isa;
        const int m = 4, k = 10, n = 20;
        var packed = PackedMatrix.Pack(new float[k * n], k, n, isa);
        var a = new float[m * k];
        var bias = new float[n];
        var c = new float[m * n];
        Assert.Multiple(() =>
        {
            Assert.That(() => Gemm.Run(a, m, k - 1, packed, bias, c, n, GemmEpilogue.Bias, isa), Throws.InstanceOf<ArgumentException>(), "lda < K");
            Assert.That(() => Gemm.Run(a, m, k, packed, bias, c, n - 1, GemmEpilogue.Bias, isa), Throws.InstanceOf<ArgumentException>(), "ldc < N");
            Assert.That(() => Gemm.Run(a.AsSpan(1), m, k, packed, bias, c, n, GemmEpilogue.Bias, isa), Throws.InstanceOf<ArgumentException>(), "A short");
            Assert.That(() => Gemm.Run(a, m, k, packed, bias, c.AsSpan(1), n, GemmEpilogue.Bias, isa), Throws.InstanceOf<ArgumentException>(), "C short");
            Assert.That(() => Gemm.Run(a, m, k, packed, bias.AsSpan(1), c, n, GemmEpilogue.Bias, isa), Throws.InstanceOf<ArgumentException>(), "bias short");
            Assert.That(() => Gemm.Run(a, m + 1, k, packed, bias, c, n, GemmEpilogue.Bias, isa), Throws.InstanceOf<ArgumentException>(), "m too large");
            Assert.That(() => Gemm.Run(a, -1, k, packed, bias, c, n, GemmEpilogue.Bias, isa), Throws.InstanceOf<ArgumentException>(), "m < 0");
            Assert.That(() => Gemm.Run(a, m, k, packed, bias, c, n, (GemmEpilogue)7, isa), Throws.InstanceOf<ArgumentException>(), "epilogue");
            Assert.That(() => Gemm.Run(a, m, k, packed, bias, c, n, GemmEpilogue.Bias, 1, 5), Throws.InstanceOf<ArgumentException>(), "unaligned column start");
            Assert.That(() => Gemm.Run(a, m, k, packed, bias, c, n, GemmEpilogue.Bias, 0, n + 1), Throws.InstanceOf<ArgumentException>(), "column count > N");
            Assert.That(() => Gemm.Run(a, m, k, null!, bias, c, n, GemmEpilogue.Bias), Throws.InstanceOf<ArgumentNullException>(), "null W");
            if (isa != KernelIsa.Portable)
            {
                var other = PackedMatrix.Pack(new float[k * n], k, n, KernelIsa.Portable);
                Assert.That(() => Gemm.Run(a, m, k, other, bias, c, n, GemmEpilogue.Bias, isa), Throws.InstanceOf<ArgumentException>(), "layout of another path");
            }
            Assert.That(() => Gemm.Run(a, 0, k, packed, bias, Span<float>.Empty, n, GemmEpilogue.Bias, isa), Throws.Nothing, "m = 0");
        });
    }
}
