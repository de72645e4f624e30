using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using DualChunk.Core;
using NUnit.Framework;
using static DualChunk.Tests.Loading.LoadingTestData;

namespace DualChunk.Tests.Loading;

/// <summary>
/// Deterministic mutation fuzzing: every mutated file must load or fail with ModelFormatException/ArgumentException;
/// never another exception type, never a hang.
/// </summary>
[TestFixture]
public class FuzzTests
{
    private const int Iterations = 3000;
    private static readonly TimeSpan Budget = TimeSpan.FromSeconds(60);

    private static readonly long[] Interesting =
    [
        0, 1, 2, 3, 4, 7, 8, 63, 64, 65, 255, 256, 4096, 65535, 65536, int.MaxValue, (long)int.MaxValue + 1,
        uint.MaxValue, (long)uint.MaxValue + 1, long.MaxValue, long.MinValue, -1, -2, 1L << 40, 100_000_000, 100_000_001,
    ];

    [Test]
    public void MutatedSafetensorsNeverEscapeAsOtherExceptions()
    {
        var configs = new[] { SmallConfig, new ModelConfig(4, 4, 1, 2, 2, 16) };
        var bases = configs.Select(c => SafetensorsOf(MakeTensors(c), c)).ToArray();
        Run(seed: 12345, iteration =>
        {
            var rng = new Random(12345 + iteration);
            var file = bases[iteration % bases.Length];
            var (mutated, what) = MutateSafetensors(file, rng);
            return (mutated, what, () =>
            {
                var t = SafetensorsReader.Read(mutated, "fuzz.safetensors");
                SafetensorsReader.Inspect(mutated, "fuzz.safetensors");
                TensorSetValidator.Infer(t, 1 + rng.Next(8));
            });
        }, useFile: path => WeightsLoader.Load(path, 2));
    }

    [Test]
    public void MutatedDcwNeverEscapesAsOtherExceptions()
    {
        var bases = new[] { SmallDcw(), Dcw(new ModelConfig(4, 4, 1, 2, 2, 16), MakeTensors(new ModelConfig(4, 4, 1, 2, 2, 16))) };
        int accepted = 0;
        Run(seed: 777, iteration =>
        {
            var rng = new Random(777 + iteration);
            var file = bases[iteration % bases.Length];
            var (mutated, what) = MutateDcw(file, rng);
            bool resigned = rng.Next(2) == 0;
            if (resigned)
            {
                Resign(mutated);
                what += " +resigned";
            }
            return (mutated, what, () =>
            {
                InspectDcw(mutated);
                ReadDcw(mutated);
                // Without a recomputed checksum, any real change must be caught.
                if (!resigned && !mutated.AsSpan().SequenceEqual(file))
                    throw new InvalidOperationException("a modified file without a valid checksum was accepted");
                accepted++;
            });
        }, useFile: path => WeightsLoader.Load(path, null));
        TestContext.Out.WriteLine($"{accepted} of {Iterations} mutated .dcw files were accepted (no-op writes, or data changes with a recomputed checksum).");
    }

    private static void Run(int seed, Func<int, (byte[] File, string What, Action Act)> make, Action<string> useFile)
    {
        var failures = new List<string>();
        var sw = Stopwatch.StartNew();
        using var dir = new TempDir();
        var task = Task.Run(() =>
        {
            for (int i = 0; i < Iterations; i++)
            {
                var (file, what, act) = make(i);
                Check(() => act(), $"seed {seed} iteration {i}: {what}", failures);
                if (i % 50 == 0)
                {
                    string path = dir.File("fuzz" + i.ToString(CultureInfo.InvariantCulture));
                    File.WriteAllBytes(path, file);
                    Check(() => useFile(path), $"seed {seed} iteration {i} (via file): {what}", failures);
                }
            }
        });
        Assert.That(task.Wait(Budget), Is.True, $"fuzzing did not finish within {Budget} (a hang?)");
        TestContext.Out.WriteLine($"{Iterations} mutations in {sw.ElapsedMilliseconds} ms");
        Assert.That(failures, Is.Empty, string.Join("\n", failures.Take(20)));
    }

    private static void Check(Action act, string what, List<string> failures)
    {
        try
        {
            act();
        }
        catch (ModelFormatException)
        {
        }
        catch (ArgumentException)
        {
        }
#pragma warning disable CA1031 // the fuzzer must see every other exception type
        catch (Exception ex)
#pragma warning restore CA1031
        {
            failures.Add($"{what}: {ex.GetType().Name}: {ex.Message}\n{ex.StackTrace}");
        }
    }

    private static (byte[], string) MutateSafetensors(byte[] file, Random rng)
    {
        int headerLength = (int)BinaryPrimitives.ReadUInt64LittleEndian(file);
        switch (rng.Next(7))
        {
            case 0:
            {
                int len = rng.Next(file.Length);
                return (file[..len], $"truncate to {len}");
            }
            case 1:
            {
                var m = (byte[])file.Clone();
                int n = 1 + rng.Next(4);
                var sb = new StringBuilder("flip");
                for (int k = 0; k < n; k++)
                {
                    int pos = rng.Next(4) == 0 ? rng.Next(m.Length) : rng.Next(8 + headerLength);
                    m[pos] = (byte)rng.Next(256);
                    sb.Append(CultureInfo.InvariantCulture, $" {pos}={m[pos]}");
                }
                return (m, sb.ToString());
            }
            case 2:
            {
                var m = (byte[])file.Clone();
                long v = PickInteresting(rng, file.Length);
                BinaryPrimitives.WriteInt64LittleEndian(m, v);
                return (m, $"header length := {v}");
            }
            case 3:
            case 4:
            {
                // Replace one number in the JSON (a shape dim or an offset) and re-frame the header.
                string header = Encoding.UTF8.GetString(file, 8, headerLength);
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
                string mutated = header[..start] + replacement + header[(start + length)..];
                return (Assemble(mutated, file[(8 + headerLength)..]), $"json number at {start} := {replacement}");
            }
            case 5:
            {
                // Insert or delete bytes inside the header, re-framed or not.
                var list = file.ToList();
                int pos = 8 + rng.Next(headerLength);
                int n = 1 + rng.Next(16);
                bool insert = rng.Next(2) == 0;
                if (insert) list.InsertRange(pos, Enumerable.Range(0, n).Select(_ => (byte)rng.Next(256)));
                else list.RemoveRange(pos, Math.Min(n, list.Count - pos));
                var m = list.ToArray();
                bool reframe = rng.Next(2) == 0;
                if (reframe) BinaryPrimitives.WriteUInt64LittleEndian(m, (ulong)(headerLength + (insert ? n : -Math.Min(n, file.Length - pos))));
                return (m, $"{(insert ? "insert" : "delete")} {n} at {pos}{(reframe ? " reframed" : "")}");
            }
            default:
            {
                int n = 1 + rng.Next(100);
                var extra = new byte[n];
                rng.NextBytes(extra);
                return ([.. file, .. extra], $"append {n}");
            }
        }
    }

    private static (byte[], string) MutateDcw(byte[] file, Random rng)
    {
        long tableEnd = 64 + BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(44));
        switch (rng.Next(5))
        {
            case 0:
            {
                int len = rng.Next(file.Length);
                return (file[..len], $"truncate to {len}");
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
                return (m, sb.ToString());
            }
            case 2:
            case 3:
            {
                // A random integer field value somewhere in the preamble or table.
                var m = (byte[])file.Clone();
                int pos = rng.Next((int)tableEnd - 8);
                long v = PickInteresting(rng, file.Length);
                if (rng.Next(2) == 0) BinaryPrimitives.WriteUInt32LittleEndian(m.AsSpan(pos), (uint)v);
                else BinaryPrimitives.WriteInt64LittleEndian(m.AsSpan(pos), v);
                return (m, $"field at {pos} := {v}");
            }
            default:
            {
                int n = 1 + rng.Next(100);
                var extra = new byte[n];
                rng.NextBytes(extra);
                return ([.. file, .. extra], $"append {n}");
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
