using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using DualChunk.Core;
using DualChunk.Fuzz;
using NUnit.Framework;
using static DualChunk.Tests.Loading.LoadingTestData;

namespace DualChunk.Tests.Loading;

/// <summary>
/// Deterministic, count-bounded mutation and truncation of valid files of both formats (safetensors in F32, F16, BF16
/// and F64; .dcw): every outcome must be a clean load or a <see cref="ModelFormatException"/> (what the README
/// promises for a bad file), never another exception type, and no file may take long. Iteration i of a campaign uses
/// <c>new Random(seed + i)</c>, so a failure names everything needed to reproduce it.
/// </summary>
/// <remarks>
/// CI runs a modest count. The large campaign (≥ 200,000 files) is <see cref="ExplicitAttribute"/>:
/// <c>dotnet test -c Release --filter TestCategory=FuzzLarge</c>; <c>DUALCHUNK_FUZZ_COUNT=N</c> overrides the count
/// of every campaign. A true infinite loop cannot be stopped in-process; run with <c>--blame-hang-timeout</c> for that.
/// </remarks>
[TestFixture]
public class FuzzTests
{
    /// <summary>A file that takes longer than this is a (slow) hang: small inputs parse in microseconds.</summary>
    private static readonly TimeSpan PerFileBudget = TimeSpan.FromSeconds(5);

    private static readonly long[] Interesting =
    [
        0, 1, 2, 3, 4, 7, 8, 63, 64, 65, 255, 256, 4096, 65535, 65536, int.MaxValue, (long)int.MaxValue + 1,
        uint.MaxValue, (long)uint.MaxValue + 1, long.MaxValue, long.MinValue, -1, -2, 1L << 40, 100_000_000, 100_000_001,
    ];

    /// <summary>JSON fragments spliced into safetensors headers: escapes, structure, numbers, keys and dtypes.</summary>
    private static readonly string[] JsonTokens =
    [
        "\\ud800", "\\udfff", "\\ud800\\u0041", "\\u0000", "\\\"", "\\", "\"", "[", "]", "{", "}", ",", ":", "null",
        "true", "1e999", "-0", "0.5", "-1", "18446744073709551616", "9223372036854775807", "\"F16\"", "\"BF16\"",
        "\"F64\"", "\"I64\"", "\"U8\"", "\"dtype\"", "\"shape\"", "\"data_offsets\"", "\"__metadata__\"", "[]", "{}",
    ];

    private static readonly string[] DtypeNames = ["F32", "F16", "BF16", "F64", "I64", "U8", "BOOL", "F8_E4M3", "I32"];

    [TestCase(12_000)]
    public void MutatedSafetensors(int count) => Campaign(SafetensorsCampaign(), Count(count)).AssertHeld();

    [TestCase(6_000)]
    public void MutatedDcw(int count) => Campaign(DcwCampaign(), Count(count)).AssertHeld();

    [TestCase(3_000)]
    public void MutatedNx(int count) => Campaign(NxCampaign(), Count(count)).AssertHeld();

    /// <summary>Issue 20's ≥ 100,000-file campaign over Edifice's .nx files (plain, compressed, no spec, Nx.serialize); minutes, so not in CI.</summary>
    [Test, Explicit("≥ 100,000 files, minutes: run with --filter TestCategory=FuzzLarge"), Category("FuzzLarge")]
    public void MutatedNxLarge()
    {
        var nx = Campaign(NxCampaign(), Count(100_000));
        TestContext.Out.WriteLine($"total: {nx.Total} files, {nx.Clean} clean loads, {nx.Rejected} ModelFormatException, {nx.Others.Count} other outcomes");
        nx.AssertHeld();
    }

    private static CampaignSpec NxCampaign()
    {
        // Edifice's own files of a DualChunk and a DecoderOnly case, every variant.
        var bases = new List<(byte[] File, string Name)>();
        foreach (var c in new[] { "d1", "x1" })
            foreach (var v in new[] { "model.nx", "model_c6.nx", "model_nospec.nx", "model_serialize.nx", "model_serialize_data.nx" })
                bases.Add((File.ReadAllBytes(Path.Combine(TestContext.CurrentContext.TestDirectory, "golden", "edifice-l", c, v)), $"{c}/{v}"));
        return new("nx", 2020,
            (rng, i) =>
            {
                var (file, name) = bases[i % bases.Count];
                var (m, what, truncated) = MutateNx(file, rng);
                // The buffers must tile to the end of the file (or of the zlib stream), so no strict prefix is valid.
                return (m, $"{name}: {what}", truncated, truncated);
            },
            (file, rng) =>
            {
                using var ms = new MemoryStream(file, writable: false);
                var reader = CheckpointReader.Open(ms, "fuzz.nx");
                string described = reader.Description + reader.Entries.Count;
                reader.Load(null);
            },
            path => WeightsLoader.Load(path, null), FileEvery: 20);
    }

    private static (byte[], string, bool) MutateNx(byte[] file, Random rng)
    {
        switch (rng.Next(6))
        {
            case 0:
            {
                int len = rng.Next(file.Length);
                return (file[..len], $"truncate to {len}", true);
            }
            case 1:
            case 2:
            {
                // Bytes in the header, metadata and term (where the structure is), a few anywhere.
                var m = (byte[])file.Clone();
                int n = 1 + rng.Next(4);
                var sb = new StringBuilder("set");
                int structure = Math.Min(m.Length, 4096);
                for (int k = 0; k < n; k++)
                {
                    int pos = rng.Next(4) == 0 ? rng.Next(m.Length) : rng.Next(structure);
                    m[pos] = rng.Next(3) == 0 ? (byte)"adhlmjtnbvw"[rng.Next(11)] : (byte)rng.Next(256);
                    sb.Append(CultureInfo.InvariantCulture, $" {pos}={m[pos]}");
                }
                return (m, sb.ToString(), false);
            }
            case 3:
            {
                // A 1-, 2-, 4- or 8-byte big-endian field (sizes, counts, offsets) in the structure.
                var m = (byte[])file.Clone();
                int width = 1 << rng.Next(4);
                int pos = rng.Next(Math.Min(m.Length, 4096) - 8);
                long v = PickInteresting(rng, file.Length);
                for (int k = 0; k < width; k++) m[pos + k] = (byte)(v >> (8 * (width - 1 - k)));
                return (m, $"{width}-byte field at {pos} := {v}", false);
            }
            case 4:
            {
                // Insert or delete bytes in the structure.
                var list = file.ToList();
                int pos = rng.Next(Math.Min(file.Length, 4096));
                int n = 1 + rng.Next(16);
                bool insert = rng.Next(2) == 0;
                if (insert) list.InsertRange(pos, Enumerable.Range(0, n).Select(_ => (byte)rng.Next(256)));
                else list.RemoveRange(pos, Math.Min(n, list.Count - pos));
                return (list.ToArray(), $"{(insert ? "insert" : "delete")} {n} at {pos}", false);
            }
            default:
            {
                int n = 1 + rng.Next(100);
                var extra = new byte[n];
                rng.NextBytes(extra);
                return ([.. file, .. extra], $"append {n}", false);
            }
        }
    }

    /// <summary>The ≥ 200,000-file campaign of issue 9 (both formats, every dtype); minutes, so not in CI.</summary>
    [Test, Explicit("≥ 200,000 files, minutes: run with --filter TestCategory=FuzzLarge"), Category("FuzzLarge")]
    public void MutatedFilesLarge()
    {
        var st = Campaign(SafetensorsCampaign(), Count(160_000));
        var dcw = Campaign(DcwCampaign(), Count(80_000));
        TestContext.Out.WriteLine($"total: {st.Total + dcw.Total} files, {st.Clean + dcw.Clean} clean loads, {st.Rejected + dcw.Rejected} ModelFormatException, {st.Others.Count + dcw.Others.Count} other outcomes");
        st.AssertHeld();
        dcw.AssertHeld();
    }

    private static int Count(int fallback)
        => int.TryParse(Environment.GetEnvironmentVariable("DUALCHUNK_FUZZ_COUNT"), NumberStyles.None, CultureInfo.InvariantCulture, out int n) && n > 0 ? n : fallback;

    /// <summary>One campaign: how to make file i, what to do with it in memory, and how to load it from disk.</summary>
    private sealed record CampaignSpec(string Name, int Seed, Func<Random, int, (byte[] File, string What, bool Truncated, bool MustReject)> Make,
        Action<byte[], Random> InMemory, Action<string> FromFile, int FileEvery);

    private static CampaignSpec SafetensorsCampaign()
    {
        // Every supported dtype of both seed configurations, plus a golden checkpoint.
        var bases = new List<(byte[] File, string Name)>();
        foreach (var config in Seeds.Configs)
        {
            var tensors = RandomWeights.Create(config, seed: 3);
            foreach (var dtype in SafetensorsReader.SupportedDtypes)
                bases.Add((Seeds.Safetensors(config, tensors, dtype, metadata: bases.Count % 3 == 0), $"{config} {dtype}"));
        }
        bases.Add((File.ReadAllBytes(GoldenModel("chunk1")), "golden chunk1"));
        return new("safetensors", 12345,
            (rng, i) =>
            {
                var (file, name) = bases[i % bases.Count];
                var (m, what, truncated) = MutateSafetensors(file, rng);
                // Tensors must tile the data section exactly, so no strict prefix of a valid file is valid.
                return (m, $"{name}: {what}", truncated, truncated);
            },
            (file, rng) =>
            {
                SafetensorsReader.Inspect(file, "fuzz.safetensors");
                var t = SafetensorsReader.Read(file, "fuzz.safetensors");
                TensorSetValidator.Infer(t, 1 + rng.Next(8));
            },
            path => WeightsLoader.Load(path, 1), FileEvery: 20);
    }

    private static CampaignSpec DcwCampaign()
    {
        var bases = Seeds.Configs.Select(c => Dcw(c, RandomWeights.Create(c, seed: 4))).ToArray();
        return new("dcw", 777,
            (rng, i) =>
            {
                var file = bases[i % bases.Length];
                var (m, what, truncated) = MutateDcw(file, rng);
                // Half the files get a recomputed checksum, as a hostile writer would, so the checks behind it run too.
                bool resigned = rng.Next(2) == 0;
                if (resigned)
                {
                    FuzzTargets.Resign(m);
                    what += " +resigned";
                }
                // Without a recomputed checksum, any real change must be caught.
                return (m, what, truncated, !resigned && !m.AsSpan().SequenceEqual(file));
            },
            (file, _) =>
            {
                InspectDcw(file);
                ReadDcw(file);
            },
            path => WeightsLoader.Load(path, null), FileEvery: 20);
    }

    private sealed class Outcome(string name, int seed)
    {
        public int Total, Truncated, Clean, Rejected, ViaFile;
        public double MaxSeconds;
        public string MaxWhat = "";
        public List<string> Others { get; } = [];

        public void AssertHeld()
        {
            TestContext.Out.WriteLine($"{name} (seed {seed}): {Total} files ({Truncated} truncated, {Total - Truncated} mutated; {ViaFile} also loaded from disk): " +
                $"{Clean} clean loads, {Rejected} ModelFormatException, {Others.Count} other outcomes; slowest {MaxSeconds * 1e3:F1} ms ({MaxWhat})");
            Assert.That(Others, Is.Empty, $"{Others.Count} inputs escaped as other exception types or took too long:\n" + string.Join("\n", Others.Take(10)));
            // A campaign whose mutants all load (or all fail) exercises nothing: both outcomes must occur.
            Assert.That(Clean, Is.GreaterThan(0), "no mutant loaded cleanly: the mutator only produces garbage");
            Assert.That(Rejected, Is.GreaterThan(Total / 2), "most mutants must be rejected");
        }
    }

    private static Outcome Campaign(CampaignSpec spec, int count)
    {
        var result = new Outcome(spec.Name, spec.Seed);
        using var dir = new TempDir();
        for (int i = 0; i < count; i++)
        {
            var rng = new Random(spec.Seed + i);
            var (file, what, truncated, mustReject) = spec.Make(rng, i);
            string label = $"{spec.Name} seed {spec.Seed} iteration {i}: {what}";
            result.Total++;
            if (truncated) result.Truncated++;
            bool clean = Attempt(() => spec.InMemory(file, rng), label, result);
            if (clean && mustReject)
                result.Others.Add($"{label}: loaded cleanly, but this change must be rejected");
            if (i % spec.FileEvery == 0)
            {
                string path = dir.File("fuzz" + i.ToString(CultureInfo.InvariantCulture));
                File.WriteAllBytes(path, file);
                result.ViaFile++;
                // The file path must reach the same verdict as the in-memory one.
                bool cleanFromFile = Attempt(() => spec.FromFile(path), label + " (from disk)", result, count: false);
                if (cleanFromFile != clean)
                    result.Others.Add($"{label}: in memory {(clean ? "loaded" : "was rejected")} but from disk {(cleanFromFile ? "loaded" : "was rejected")}");
                File.Delete(path);
            }
        }
        return result;
    }

    /// <summary>Runs one parse; true for a clean load. Anything but ModelFormatException is recorded as a failure.</summary>
    private static bool Attempt(Action act, string label, Outcome result, bool count = true)
    {
        long start = Stopwatch.GetTimestamp();
        bool clean = false;
        try
        {
            act();
            clean = true;
            if (count) result.Clean++;
        }
        catch (ModelFormatException)
        {
            if (count) result.Rejected++;
        }
#pragma warning disable CA1031 // every other exception type is the finding
        catch (Exception ex)
#pragma warning restore CA1031
        {
            result.Others.Add($"{label}: {ex.GetType().Name}: {ex.Message}\n{ex.StackTrace}");
        }
        double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        if (seconds > result.MaxSeconds)
        {
            result.MaxSeconds = seconds;
            result.MaxWhat = label;
        }
        if (seconds > PerFileBudget.TotalSeconds)
            result.Others.Add($"{label}: took {seconds:F1} s (budget {PerFileBudget.TotalSeconds} s)");
        return clean;
    }

    private static (byte[], string, bool) MutateSafetensors(byte[] file, Random rng)
    {
        int headerLength = (int)BinaryPrimitives.ReadUInt64LittleEndian(file);
        string header = Encoding.UTF8.GetString(file, 8, headerLength);
        byte[] data = file[(8 + headerLength)..];
        switch (rng.Next(9))
        {
            case 0:
            {
                int len = rng.Next(file.Length);
                return (file[..len], $"truncate to {len}", true);
            }
            case 1:
            {
                var m = (byte[])file.Clone();
                int n = 1 + rng.Next(4);
                var sb = new StringBuilder("set");
                for (int k = 0; k < n; k++)
                {
                    // Mostly in the header; a quarter anywhere (data bytes: NaN/Inf/overflowing F64 values).
                    int pos = rng.Next(4) == 0 ? rng.Next(m.Length) : rng.Next(8 + headerLength);
                    m[pos] = (byte)rng.Next(256);
                    sb.Append(CultureInfo.InvariantCulture, $" {pos}={m[pos]}");
                }
                return (m, sb.ToString(), false);
            }
            case 2:
            {
                var m = (byte[])file.Clone();
                long v = PickInteresting(rng, file.Length);
                BinaryPrimitives.WriteInt64LittleEndian(m, v);
                return (m, $"header length := {v}", false);
            }
            case 3:
            case 4:
            {
                // Replace one number in the JSON (a shape dim or an offset) and re-frame the header.
                var runs = new List<(int Start, int Length)>();
                for (int i = 0; i < header.Length; i++)
                {
                    if (!char.IsAsciiDigit(header[i])) continue;
                    int j = i;
                    while (j < header.Length && char.IsAsciiDigit(header[j])) j++;
                    runs.Add((i, j - i));
                    i = j;
                }
                var (start, length) = runs[rng.Next(runs.Count)];
                string replacement = rng.Next(3) switch
                {
                    0 => PickInteresting(rng, file.Length).ToString(CultureInfo.InvariantCulture),
                    1 => (long.Parse(header.AsSpan(start, length), CultureInfo.InvariantCulture) + rng.Next(-8, 9)).ToString(CultureInfo.InvariantCulture),
                    _ => new string('9', 1 + rng.Next(30)),
                };
                return (Assemble(header[..start] + replacement + header[(start + length)..], data), $"json number at {start} := {replacement}", false);
            }
            case 5:
            {
                // Insert or delete raw bytes inside the header, re-framed or not.
                var list = file.ToList();
                int pos = 8 + rng.Next(headerLength);
                int n = 1 + rng.Next(16);
                bool insert = rng.Next(2) == 0;
                if (insert) list.InsertRange(pos, Enumerable.Range(0, n).Select(_ => (byte)rng.Next(256)));
                else list.RemoveRange(pos, Math.Min(n, list.Count - pos));
                var m = list.ToArray();
                bool reframe = rng.Next(2) == 0;
                if (reframe) BinaryPrimitives.WriteUInt64LittleEndian(m, (ulong)(headerLength + (insert ? n : -Math.Min(n, file.Length - pos))));
                return (m, $"{(insert ? "insert" : "delete")} {n} at {pos}{(reframe ? " reframed" : "")}", false);
            }
            case 6:
            {
                // Splice a JSON token (escape, bracket, number, key, dtype) into the header text, re-framed.
                int pos = rng.Next(header.Length + 1);
                string token = JsonTokens[rng.Next(JsonTokens.Length)];
                return (Assemble(header[..pos] + token + header[pos..], data), $"splice {token} at {pos}", false);
            }
            case 7:
            {
                // Change one tensor's dtype (the data no longer matches its size, or a dtype we do not convert).
                int at = header.IndexOf("\"dtype\":\"", StringComparison.Ordinal);
                for (int skip = rng.Next(8); skip > 0 && at >= 0; skip--)
                {
                    int next = header.IndexOf("\"dtype\":\"", at + 1, StringComparison.Ordinal);
                    if (next < 0) break;
                    at = next;
                }
                int start = at + 9, end = header.IndexOf('"', start);
                string dtype = DtypeNames[rng.Next(DtypeNames.Length)];
                return (Assemble(header[..start] + dtype + header[end..], data), $"dtype at {start} := {dtype}", false);
            }
            default:
            {
                int n = 1 + rng.Next(100);
                var extra = new byte[n];
                rng.NextBytes(extra);
                return ([.. file, .. extra], $"append {n}", false);
            }
        }
    }

    private static (byte[], string, bool) MutateDcw(byte[] file, Random rng)
    {
        long tableEnd = 64 + BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(44));
        switch (rng.Next(5))
        {
            case 0:
            {
                int len = rng.Next(file.Length);
                return (file[..len], $"truncate to {len}", true);
            }
            case 1:
            {
                var m = (byte[])file.Clone();
                int n = 1 + rng.Next(4);
                var sb = new StringBuilder("flip");
                for (int k = 0; k < n; k++)
                {
                    int pos = rng.Next(m.Length);
                    m[pos] ^= (byte)(1 + rng.Next(255));
                    sb.Append(CultureInfo.InvariantCulture, $" {pos}");
                }
                return (m, sb.ToString(), false);
            }
            case 2:
            case 3:
            {
                // A random integer field value somewhere in the preamble or table (counts, lengths, offsets, dims).
                var m = (byte[])file.Clone();
                int pos = rng.Next((int)tableEnd - 8);
                long v = PickInteresting(rng, file.Length);
                if (rng.Next(2) == 0) BinaryPrimitives.WriteUInt32LittleEndian(m.AsSpan(pos), (uint)v);
                else BinaryPrimitives.WriteInt64LittleEndian(m.AsSpan(pos), v);
                return (m, $"field at {pos} := {v}", false);
            }
            default:
            {
                int n = 1 + rng.Next(100);
                var extra = new byte[n];
                rng.NextBytes(extra);
                return ([.. file, .. extra], $"append {n}", false);
            }
        }
    }

    private static long PickInteresting(Random rng, int fileLength) => rng.Next(4) switch
    {
        0 => fileLength + rng.Next(-16, 17),
        1 => rng.NextInt64(),
        _ => Interesting[rng.Next(Interesting.Length)],
    };
}
