using System.Diagnostics;
using System.Globalization;
using DualChunk.Core;

namespace DualChunk.Tests.Loading;

/// <summary>
/// Issue 20's load-time figure: a .nx of the default model (E 287, H 256, NH 8, L 4) against the same model's
/// safetensors, loads alternated A B A B, medians. A measurement, not an assertion (times are never asserted).
/// Run: <c>dotnet test -c Release --filter TestCategory=LoadTime</c>.
/// </summary>
[TestFixture]
public sealed class NxLoadTimeTests
{
    [Test, Explicit("a timing run"), Category("LoadTime")]
    public void NxLoadsAlongsideSafetensors()
    {
        var config = new ModelConfig(287, 256, 8, 4, 64, 1024);
        var tensors = RandomWeights.Create(config, seed: 5);
        using var dir = new TempDir();
        string st = dir.File("m.safetensors"), nx = dir.File("m.nx"), nxc = dir.File("m_c.nx");
        File.WriteAllBytes(st, LoadingTestData.Safetensors(tensors.Values.Select(LoadingTestData.F32)));
        var buffers = new MemoryStream();
        var pairs = new List<EtfTerm>();
        foreach (var (name, t) in tensors)
        {
            var bytes = System.Runtime.InteropServices.MemoryMarshal.AsBytes(t.Data.Span).ToArray();
            var tensor = EtfTerm.MakeCompound(EtfKind.Tuple, [EtfTerm.MakeAtom("t"), EtfTerm.MakeCompound(EtfKind.Tuple, [.. t.Shape.Select(d => EtfTerm.MakeInteger(d))]),
                EtfTerm.MakeCompound(EtfKind.Tuple, [EtfTerm.MakeAtom("f"), EtfTerm.MakeInteger(32)]), EtfTerm.MakeCompound(EtfKind.List, [.. t.Shape.Select(_ => EtfTerm.MakeAtom("nil"))]),
                EtfTerm.MakeCompound(EtfKind.List, []), EtfTerm.MakeInteger(buffers.Length), EtfTerm.MakeInteger(bytes.Length)]);
            buffers.Write(bytes);
            pairs.Add(EtfTerm.MakeCompound(EtfKind.Tuple, [EtfTerm.MakeBinary(System.Text.Encoding.UTF8.GetBytes(name)), tensor]));
        }
        var map = EtfTerm.MakeCompound(EtfKind.Tuple, [EtfTerm.MakeAtom("Elixir.Nx.Container.Map"), EtfTerm.MakeCompound(EtfKind.List, [.. pairs]), EtfTerm.MakeAtom("ok")]);
        var parts = new NxTestFiles.Parts(Checkpoint: true, Compressed: false, Metadata: null, Term: map, Buffers: buffers.ToArray());
        File.WriteAllBytes(nx, NxTestFiles.Join(parts));
        File.WriteAllBytes(nxc, NxTestFiles.Join(parts with { Compressed = true }));
        var times = new Dictionary<string, List<double>> { [st] = [], [nx] = [], [nxc] = [] };
        for (int round = 0; round < 9; round++)
        {
            foreach (var path in new[] { st, nx, nxc })
            {
                long start = Stopwatch.GetTimestamp();
                var loaded = WeightsLoader.Load(path, 64);
                times[path].Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
                Assert.That(loaded.Config, Is.EqualTo(config));
            }
        }
        double Median(string p) => times[p].Skip(1).Order().ElementAt(4);
        TestContext.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"load median of 8 (A B C alternated, first round dropped; load average {File.ReadAllText("/proc/loadavg").Split(' ')[0]}): safetensors {Median(st):F1} ms, .nx {Median(nx):F1} ms (ratio {Median(nx) / Median(st):F2}), compressed .nx {Median(nxc):F1} ms (ratio {Median(nxc) / Median(st):F2}); sizes {new FileInfo(st).Length:N0} / {new FileInfo(nx).Length:N0} / {new FileInfo(nxc).Length:N0} B"));
    }
}
