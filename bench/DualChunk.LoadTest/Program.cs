using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.Json;
using DualChunk.Core;
using DualChunk.LoadTest;
using Google.Protobuf;
using Grpc.Core;

// Load generator for src/DualChunk.Server (bench/service-load.sh drives it). Loopback only, bounded in time and in
// requests; stops by itself. Every command prints what it measured, then one JSON line (for the script).
//   write-model <out.dcw> E,H,NH,L C       a random model file (config a: 287,256,8,4 64)
//   run --mode v1|json|binary|grpc|seq-rest|seq-grpc [--clients 8] [--seconds 20] [--warmup-seconds 3]
//       [--appends-per-sequence 4]          N clients in closed loop; throughput, p50/p90/p99/max, statuses, RSS
//   bad [--count 1000] [--parallel 4]      every bad kind (REST JSON, binary, gRPC, /v1) count times; RSS growth
//   interfere [--seconds 5] [--rounds 2] [--flood-clients 4] [--flood-rate 0] [--good grpc|binary]
//                                           one good client's latency alone and during a flood of bad requests (A B A B),
//                                           as fast as the clients go or --flood-rate R bad requests/s in all; the CPU
//                                           the server and this process (the flood's clients) used in each phase
//   seq-growth [--appends 256] [--repeats 3] one sequence appended to chunk after chunk: the k-th append's cost
//   idle [--sequences 1000] --idle-seconds S  open sequences, leave them idle: RSS before, open, after the timeout
//   write-bodies --out DIR                   the good requests' bodies as files, for other load generators (h2load):
//                                           grpc.bin (a gRPC frame: flag, length, ModelInferRequest), binary.bin (OIP
//                                           binary: JSON header + raw floats; its header length printed), json.json
// Common: --url http://127.0.0.1:P (REST) [--grpc-url http://127.0.0.1:P2] [--model-name dualchunk] --embed E
//   --seq N (one request's positions; a whole number of chunks) [--batch 1] [--server-pid PID] (RSS from /proc)
//   [--max-body-bytes 1048576] [--max-seq-len 16384] (the server's limits, for the over-limit kinds)
var inv = CultureInfo.InvariantCulture;
if (args.Length == 0 || args[0] is "-h" or "--help")
{
    Console.WriteLine("usage: write-model <out.dcw> E,H,NH,L C | write-bodies --out DIR | run --mode M ... | bad ... | interfere ... | seq-growth ... | idle ... (see Program.cs)");
    return 2;
}
var opts = new Dictionary<string, string>(StringComparer.Ordinal);
for (int i = 1; i + 1 < args.Length; i += 2)
    if (args[i].StartsWith("--", StringComparison.Ordinal)) opts[args[i]] = args[i + 1];
string Opt(string k, string d) => opts.TryGetValue(k, out var v) ? v : d;
int IntOpt(string k, int d) => int.Parse(Opt(k, d.ToString(inv)), inv);
double DoubleOpt(string k, double d) => double.Parse(Opt(k, d.ToString(inv)), inv);

if (args[0] == "write-model")
{
    var dims = args[2].Split(',').Select(x => int.Parse(x, inv)).ToArray();
    var config = new ModelConfig(dims[0], dims[1], dims[2], dims[3], int.Parse(args[3], inv), 4 * dims[1]);
    DcwFile.Write(args[1], config, RandomWeights.Create(config, 1));
    Console.WriteLine($"wrote {args[1]}: {config}");
    return 0;
}

Uri? Loopback(string? text)
{
    if (text is null) return null;
    var uri = new Uri(text);
    if (!IPAddress.TryParse(uri.Host, out var ip) || !IPAddress.IsLoopback(ip))
        throw new ArgumentException($"{text}: the load test sends only to a loopback address (127.0.0.1 or [::1]), not {uri.Host}.");
    return uri;
}
using var target = new Target(Loopback(Opt("--url", "http://127.0.0.1:5080"))!, Loopback(opts.GetValueOrDefault("--grpc-url")),
    Opt("--model-name", "dualchunk"), IntOpt("--embed", 287), IntOpt("--seq", 64), IntOpt("--batch", 1));
int? serverPid = opts.TryGetValue("--server-pid", out var pidText) ? int.Parse(pidText, inv) : null;
(double Rss, double Hwm) Memory() => ServerMemory.Read(serverPid);
var report = new Dictionary<string, object?> { ["command"] = args[0] };
int exit = 0;

switch (args[0])
{
    case "write-bodies":
    {
        string dir = Opt("--out", ".");
        Directory.CreateDirectory(dir);
        byte[] message = target.GrpcMessage();
        var frame = new byte[5 + message.Length]; // uncompressed, big-endian length (gRPC over HTTP/2)
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(1), (uint)message.Length);
        message.CopyTo(frame, 5);
        File.WriteAllBytes(Path.Combine(dir, "grpc.bin"), frame);
        byte[] header = System.Text.Encoding.UTF8.GetBytes(target.BinaryHeader());
        File.WriteAllBytes(Path.Combine(dir, "binary.bin"), [.. header, .. target.InputBytes]);
        File.WriteAllBytes(Path.Combine(dir, "json.json"), target.JsonBody());
        report["grpc_bytes"] = frame.Length;
        report["binary_bytes"] = header.Length + target.InputBytes.Length;
        report["binary_header_bytes"] = header.Length;
        break;
    }
    case "run":
    {
        string mode = Opt("--mode", "grpc");
        int clients = IntOpt("--clients", 8);
        double seconds = DoubleOpt("--seconds", 20), warmup = DoubleOpt("--warmup-seconds", 3);
        var send = target.Good(mode, IntOpt("--appends-per-sequence", 4));
        int warmupRequests = warmup > 0 ? (await Load.Run(send, clients, warmup, 0)).Samples.Count : 0; // the JIT's tier 1, pools filled, connections open
        var before = Memory();
        var cpu0 = (Server: Cpu.Server(serverPid) * 1000, Client: Cpu.Own() * 1000, Allocated: GC.GetTotalAllocatedBytes(true));
        var (samples, wall) = await Load.Run(send, clients, seconds, 0);
        var cpu1 = (Server: Cpu.Server(serverPid) * 1000, Client: Cpu.Own() * 1000, Allocated: GC.GetTotalAllocatedBytes(true));
        var after = Memory();
        var ok = samples.Where(s => s.Status is "200" or "OK").Select(s => s.Ms).Order().ToArray();
        var statuses = samples.GroupBy(s => s.Status).OrderBy(g => g.Key, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.Count());
        int errors = samples.Count - ok.Length;
        double throughput = ok.Length / wall;
        Console.WriteLine(string.Create(inv, $"{mode}: {clients} clients, {wall:0.0} s, input {target.Shape}: {samples.Count} requests, {throughput:0.0}/s ok, errors {errors}"));
        Console.WriteLine("  statuses: " + string.Join(", ", statuses.Select(kv => $"{kv.Key} x{kv.Value}")));
        Console.WriteLine(string.Create(inv, $"  latency ms: p50 {Stats.P(ok, .5):0.00} p90 {Stats.P(ok, .9):0.00} p99 {Stats.P(ok, .99):0.00} max {Stats.Max(ok):0.00}"));
        Console.WriteLine(string.Create(inv, $"  server RSS {before.Rss:0.0} -> {after.Rss:0.0} MB (peak {after.Hwm:0.0} MB)"));
        // CPU time per request (utime + stime), robust against the cores being shared, unlike wall time.
        double serverCpu = (cpu1.Server - cpu0.Server) / Math.Max(1, samples.Count), clientCpu = (cpu1.Client - cpu0.Client) / Math.Max(1, samples.Count);
        long clientBytes = (cpu1.Allocated - cpu0.Allocated) / Math.Max(1, samples.Count);
        Console.WriteLine(string.Create(inv, $"  CPU per request: server {serverCpu:0.000} ms, load generator {clientCpu:0.000} ms (it allocates {clientBytes} B per request)"));
        report["mode"] = mode;
        report["clients"] = clients;
        report["seconds"] = Math.Round(wall, 3);
        report["requests"] = samples.Count;
        report["warmup_requests"] = warmupRequests;
        report["throughput"] = Math.Round(throughput, 3);
        report["errors"] = errors;
        report["statuses"] = statuses;
        Stats.AddPercentiles(report, "", ok);
        report["rss_before_mb"] = before.Rss;
        report["rss_after_mb"] = after.Rss;
        report["rss_peak_mb"] = after.Hwm;
        report["server_cpu_ms_per_request"] = Math.Round(serverCpu, 4);
        report["client_cpu_ms_per_request"] = Math.Round(clientCpu, 4);
        report["client_bytes_per_request"] = clientBytes;
        exit = errors == 0 ? 0 : 1;
        break;
    }
    case "bad":
    {
        int count = IntOpt("--count", 1000), parallel = IntOpt("--parallel", 4);
        var kinds = BadRequests.All(target, long.Parse(Opt("--max-body-bytes", "1048576"), inv), IntOpt("--max-seq-len", 16384), target.Grpc is not null);
        // Every kind once first (the JIT, the first allocation of each path), then RSS, then count of each.
        foreach (var (_, send) in kinds) await Load.Count(send, 1, 1);
        var before = Memory();
        var statuses = new Dictionary<string, int>(StringComparer.Ordinal);
        var cpuPer1000 = new Dictionary<string, double>(StringComparer.Ordinal);
        var sw = Stopwatch.StartNew();
        foreach (var (kind, send) in kinds)
        {
            double cpu0 = Cpu.Server(serverPid);
            var results = await Load.Count(send, parallel, count);
            cpuPer1000[kind] = Math.Round((Cpu.Server(serverPid) - cpu0) * 1000 / count * 1000, 1); // server CPU ms per 1,000
            foreach (var (status, n) in results)
            {
                string key = $"{kind} -> {status}";
                statuses[key] = statuses.GetValueOrDefault(key) + n;
            }
        }
        var after = Memory();
        var wrong = statuses.Where(kv => !BadRequests.IsClientError(kv.Key[(kv.Key.LastIndexOf("-> ", StringComparison.Ordinal) + 3)..])).ToList();
        Console.WriteLine($"bad requests: {count} of each of {kinds.Length} kinds ({count * kinds.Length} in {sw.Elapsed.TotalSeconds:0.0} s)");
        foreach (var (k, v) in statuses) Console.WriteLine($"  {k} x{v}");
        Console.WriteLine(string.Create(inv, $"server RSS before {before.Rss:0.0} MB, after {after.Rss:0.0} MB, growth {after.Rss - before.Rss:0.0} MB (peak {after.Hwm:0.0} MB)"));
        if (wrong.Count > 0) Console.WriteLine("NOT a client error: " + string.Join("; ", wrong.Select(kv => $"{kv.Key} x{kv.Value}")));
        if (serverPid is not null)
        {
            Console.WriteLine("server CPU ms per 1,000 refusals of each kind (/proc, 10 ms ticks), costliest first:");
            foreach (var (k, v) in cpuPer1000.OrderByDescending(kv => kv.Value)) Console.WriteLine(string.Create(inv, $"  {k}: {v:0}"));
            report["server_cpu_ms_per_1000"] = cpuPer1000;
        }
        report["kinds"] = kinds.Length;
        report["count_each"] = count;
        report["not_client_errors"] = wrong.Sum(kv => kv.Value);
        report["rss_before_mb"] = before.Rss;
        report["rss_after_mb"] = after.Rss;
        report["rss_growth_mb"] = Math.Round(after.Rss - before.Rss, 1);
        exit = wrong.Count == 0 ? 0 : 1;
        break;
    }
    case "interfere":
    {
        double seconds = DoubleOpt("--seconds", 5), rate = DoubleOpt("--flood-rate", 0);
        int rounds = IntOpt("--rounds", 2), flood = IntOpt("--flood-clients", 4);
        var good = target.Good(Opt("--good", target.Grpc is not null ? "grpc" : "binary"), 4);
        var bad = BadRequests.All(target, long.Parse(Opt("--max-body-bytes", "1048576"), inv), IntOpt("--max-seq-len", 16384), target.Grpc is not null)
            .Where(k => !k.Kind.Contains("over-MaxRequestBodyBytes", StringComparison.Ordinal) && !k.Kind.Contains("over-size", StringComparison.Ordinal)) // the flood is of cheap requests: many per second
            .Select(k => k.Send).ToArray();
        await Load.Run(good, 1, 2, 0);
        var alone = new List<double[]>();
        var flooded = new List<double[]>();
        long badSent = 0;
        int goodErrors = 0;
        // CPU seconds per phase: the server's, and this process's (the good client alone; the good client and the
        // flood's clients): what the flood costs the machine beside the server's refusals.
        double serverAlone = 0, serverFlooded = 0, ownAlone = 0, ownFlooded = 0, wallAlone = 0, wallFlooded = 0;
        long goodAlone = 0, goodFlooded = 0;
        for (int r = 0; r < rounds; r++)
        {
            double s0 = Cpu.Server(serverPid), o0 = Cpu.Own();
            var (a, wa) = await Load.Run(good, 1, seconds, 0);
            double s1 = Cpu.Server(serverPid), o1 = Cpu.Own();
            using var stop = new CancellationTokenSource();
            long floodStart = Stopwatch.GetTimestamp(), floodSent = 0;
            var floodTasks = Enumerable.Range(0, flood).Select(c => Task.Run(async () =>
            {
                var rng = new Random(c);
                while (!stop.IsCancellationRequested)
                {
                    if (rate > 0)
                    {
                        // Open loop at `rate` in all: the n-th request is due at n / rate seconds from the start.
                        long n = Interlocked.Increment(ref floodSent);
                        double due = n / rate - Stopwatch.GetElapsedTime(floodStart).TotalSeconds;
                        if (due > 0)
                        {
                            try
                            {
                                await Task.Delay(TimeSpan.FromSeconds(due), stop.Token);
                            }
                            catch (OperationCanceledException)
                            {
                                break;
                            }
                        }
                    }
                    try
                    {
                        await bad[rng.Next(bad.Length)](c, stop.Token);
                        Interlocked.Increment(ref badSent);
                    }
                    catch (OperationCanceledException)
                    {
                    }
                }
            })).ToArray();
            double s2 = Cpu.Server(serverPid), o2 = Cpu.Own();
            var (f, wf) = await Load.Run(good, 1, seconds, 0);
            double s3 = Cpu.Server(serverPid), o3 = Cpu.Own();
            stop.Cancel();
            await Task.WhenAll(floodTasks);
            serverAlone += s1 - s0; ownAlone += o1 - o0; wallAlone += wa; goodAlone += a.Count;
            serverFlooded += s3 - s2; ownFlooded += o3 - o2; wallFlooded += wf; goodFlooded += f.Count;
            goodErrors += a.Concat(f).Count(s => s.Status is not ("200" or "OK"));
            alone.Add(a.Where(s => s.Status is "200" or "OK").Select(s => s.Ms).Order().ToArray());
            flooded.Add(f.Where(s => s.Status is "200" or "OK").Select(s => s.Ms).Order().ToArray());
        }
        double aP50 = Stats.Median(alone.Select(x => Stats.P(x, .5))), fP50 = Stats.Median(flooded.Select(x => Stats.P(x, .5)));
        double aP99 = Stats.Median(alone.Select(x => Stats.P(x, .99))), fP99 = Stats.Median(flooded.Select(x => Stats.P(x, .99)));
        double badRate = badSent / wallFlooded;
        // Cores busy (CPU seconds per second) in each phase. The refusals' CPU is the flooded phase's less what its good
        // requests cost at the alone phase's CPU per good request (the good client slows down, so it sends fewer).
        double serverCoresAlone = serverAlone / wallAlone, serverCoresFlooded = serverFlooded / wallFlooded;
        double clientCoresAlone = ownAlone / wallAlone, clientCoresFlooded = ownFlooded / wallFlooded;
        double serverMsPer1000 = (serverFlooded - serverAlone / goodAlone * goodFlooded) / badSent * 1e6;
        double floodClientMsPer1000 = (ownFlooded - ownAlone / goodAlone * goodFlooded) / badSent * 1e6;
        Console.WriteLine(string.Create(inv, $"one good client, {rounds} rounds of {seconds} s alone then {seconds} s with {flood} clients sending bad requests ({(rate > 0 ? $"at most {rate:0}/s" : "as fast as they can")}: {badSent} sent, {badRate:0}/s)"));
        Console.WriteLine(string.Create(inv, $"  alone:   p50 {aP50:0.00} ms, p99 {aP99:0.00} ms (medians of the rounds)"));
        Console.WriteLine(string.Create(inv, $"  flooded: p50 {fP50:0.00} ms, p99 {fP99:0.00} ms; p50 ratio {fP50 / aP50:0.00}, good errors {goodErrors}"));
        Console.WriteLine(string.Create(inv, $"  cores busy: server {serverCoresAlone:0.00} alone, {serverCoresFlooded:0.00} flooded; load generator {clientCoresAlone:0.00} alone, {clientCoresFlooded:0.00} flooded"));
        Console.WriteLine(string.Create(inv, $"  CPU per 1,000 bad requests: server {serverMsPer1000:0} ms (its refusals), flood clients {floodClientMsPer1000:0} ms"));
        report["flood_rate_limit"] = rate;
        report["alone_p50_ms"] = Math.Round(aP50, 3);
        report["alone_p99_ms"] = Math.Round(aP99, 3);
        report["flooded_p50_ms"] = Math.Round(fP50, 3);
        report["flooded_p99_ms"] = Math.Round(fP99, 3);
        report["p50_ratio"] = Math.Round(fP50 / aP50, 3);
        report["bad_sent"] = badSent;
        report["bad_per_second"] = Math.Round(badRate, 1);
        report["good_errors"] = goodErrors;
        report["server_cores_alone"] = Math.Round(serverCoresAlone, 3);
        report["server_cores_flooded"] = Math.Round(serverCoresFlooded, 3);
        report["client_cores_alone"] = Math.Round(clientCoresAlone, 3);
        report["client_cores_flooded"] = Math.Round(clientCoresFlooded, 3);
        report["server_cpu_ms_per_1000_bad"] = Math.Round(serverMsPer1000, 1);
        report["client_cpu_ms_per_1000_bad"] = Math.Round(floodClientMsPer1000, 1);
        exit = goodErrors == 0 ? 0 : 1;
        break;
    }
    case "seq-growth":
    {
        int appends = IntOpt("--appends", 256), repeats = IntOpt("--repeats", 3);
        bool grpc = target.Grpc is not null;
        var raw = ByteString.CopyFrom(target.InputBytes);
        var perAppend = new double[repeats][];
        string run = Guid.NewGuid().ToString("N")[..8];
        for (int r = -1; r < repeats; r++) // r = -1: an untimed sequence (the JIT)
        {
            var ms = new double[appends];
            for (int k = 0; k < appends; k++)
            {
                string id = $"growth-{run}-{r + 1}";
                long t0 = Stopwatch.GetTimestamp();
                string status;
                if (grpc)
                {
                    var request = target.GrpcRequest(raw);
                    request.Parameters["sequence_id"] = new DualChunk.Server.Grpc.InferParameter { StringParam = id };
                    request.Parameters["sequence_start"] = new DualChunk.Server.Grpc.InferParameter { BoolParam = k == 0 };
                    request.Parameters["sequence_end"] = new DualChunk.Server.Grpc.InferParameter { BoolParam = k == appends - 1 };
                    status = await target.GrpcInfer(request, CancellationToken.None);
                }
                else
                {
                    string p = $"\"sequence_id\": \"{id}\", \"sequence_start\": {(k == 0 ? "true" : "false")}, \"sequence_end\": {(k == appends - 1 ? "true" : "false")}";
                    status = await target.Post(target.Infer, Target.Binary(target.BinaryHeader(p), target.InputBytes), CancellationToken.None);
                }
                ms[k] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
                if (status is not ("200" or "OK"))
                {
                    Console.Error.WriteLine($"append {k + 1} of sequence {id}: {status} (the server needs --max-seq-len and Server:Sequences:MaxSequenceLength >= {appends * target.Seq})");
                    return 1;
                }
            }
            if (r >= 0) perAppend[r] = ms;
        }
        // The k-th append of each repeat; the first and last eight as well (one call is noisy on a busy machine).
        double first = Stats.Median(perAppend.Select(x => x[0])), last = Stats.Median(perAppend.Select(x => x[^1]));
        double first8 = Stats.Median(perAppend.SelectMany(x => x[..8])), last8 = Stats.Median(perAppend.SelectMany(x => x[^8..]));
        Console.WriteLine(string.Create(inv, $"{repeats} sequences of {appends} appends of {target.Shape} ({(grpc ? "gRPC" : "REST binary")}), medians over the sequences:"));
        Console.WriteLine(string.Create(inv, $"  append 1: {first:0.00} ms, append {appends}: {last:0.00} ms, ratio {last / first:0.00}"));
        Console.WriteLine(string.Create(inv, $"  appends 1-8: {first8:0.00} ms, appends {appends - 7}-{appends}: {last8:0.00} ms, ratio {last8 / first8:0.00}"));
        report["appends"] = appends;
        report["first_ms"] = Math.Round(first, 3);
        report["last_ms"] = Math.Round(last, 3);
        report["ratio"] = Math.Round(last / first, 3);
        report["first8_ms"] = Math.Round(first8, 3);
        report["last8_ms"] = Math.Round(last8, 3);
        report["ratio8"] = Math.Round(last8 / first8, 3);
        break;
    }
    case "idle":
    {
        int count = IntOpt("--sequences", 1000), parallel = IntOpt("--parallel", 4);
        double idle = double.Parse(opts.GetValueOrDefault("--idle-seconds") ?? throw new ArgumentException("idle needs --idle-seconds S: the server's Server:Sequences:IdleTimeoutSeconds."), inv);
        var raw = ByteString.CopyFrom(target.InputBytes);
        string run = Guid.NewGuid().ToString("N")[..8];
        Task<string> Open(int i)
        {
            if (target.Grpc is not null)
            {
                var request = target.GrpcRequest(raw);
                request.Parameters["sequence_id"] = new DualChunk.Server.Grpc.InferParameter { StringParam = $"idle-{run}-{i}" };
                request.Parameters["sequence_start"] = new DualChunk.Server.Grpc.InferParameter { BoolParam = true };
                return target.GrpcInfer(request, CancellationToken.None);
            }
            return target.Post(target.Infer, Target.Binary(target.BinaryHeader($"\"sequence_id\": \"idle-{run}-{i}\", \"sequence_start\": true"), target.InputBytes), CancellationToken.None);
        }
        var before = Memory();
        int next = -1, failed = 0;
        var sw = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, parallel).Select(_ => Task.Run(async () =>
        {
            for (int i = Interlocked.Increment(ref next); i < count; i = Interlocked.Increment(ref next))
                if (await Open(i) is not ("200" or "OK")) Interlocked.Increment(ref failed);
        })));
        double openSeconds = sw.Elapsed.TotalSeconds;
        var open = Memory();
        // The sweeper runs every idle/4 (at most 5 s), and returns freed memory to the OS at most every 10 s
        // (SequenceTable.ReturnMemoryInterval): wait the timeout, two sweeps, that interval and a margin, from the last open.
        await Task.Delay(TimeSpan.FromSeconds(idle + 2 * Math.Min(idle / 4, 5) + 10 + 2));
        var after = Memory();
        string probe = await Append(target, $"idle-{run}-0", raw);
        Console.WriteLine(string.Create(inv, $"{count} sequences opened in {openSeconds:0.0} s ({failed} failed), idle timeout {idle} s"));
        Console.WriteLine(string.Create(inv, $"  server RSS before {before.Rss:0.0} MB, all open {open.Rss:0.0} MB, after the timeout {after.Rss:0.0} MB: {after.Rss - before.Rss:+0.0;-0.0} MB"));
        Console.WriteLine($"  an append to the first one after the timeout: {probe} (expected a client error: it idled out)");
        report["sequences"] = count;
        report["failed"] = failed;
        report["rss_before_mb"] = before.Rss;
        report["rss_open_mb"] = open.Rss;
        report["rss_after_mb"] = after.Rss;
        report["rss_back_within_mb"] = Math.Round(after.Rss - before.Rss, 1);
        report["probe_after_timeout"] = probe;
        exit = failed == 0 && BadRequests.IsClientError(probe) ? 0 : 1;
        break;
    }
    default:
        Console.Error.WriteLine($"unknown command '{args[0]}'");
        return 2;
}
Console.WriteLine(JsonSerializer.Serialize(report, new JsonSerializerOptions { NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals })); // NaN: no --server-pid
return exit;

static async Task<string> Append(Target target, string id, ByteString raw)
{
    if (target.Grpc is not null)
    {
        var request = target.GrpcRequest(raw);
        request.Parameters["sequence_id"] = new DualChunk.Server.Grpc.InferParameter { StringParam = id };
        return await target.GrpcInfer(request, CancellationToken.None);
    }
    return await target.Post(target.Infer, Target.Binary(target.BinaryHeader($"\"sequence_id\": \"{id}\""), target.InputBytes), CancellationToken.None);
}
