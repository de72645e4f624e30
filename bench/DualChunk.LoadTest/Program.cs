using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using DualChunk.Core;

// Load generator for src/DualChunk.Server. Loopback only, bounded in time and in requests; stops by itself.
//   write-model <out.dcw> E,H,NH,L C            a random model file (config a: 287,256,8,4 64)
//   run --url http://127.0.0.1:P --embed E --seq N [--batch B] [--clients 8] [--seconds 20] [--bad-fraction 0.1]
//       [--npy-fraction 0.5] [--max-requests 1000000] [--server-pid PID]
//   bad --url ... --embed E --seq N --count 1000 [--server-pid PID]   every bad kind, count times each; RSS before/after
var inv = CultureInfo.InvariantCulture;
if (args.Length == 0 || args[0] is "-h" or "--help")
{
    Console.WriteLine("usage: write-model <out.dcw> E,H,NH,L C | run --url U --embed E --seq N [...] | bad --url U --embed E --seq N --count K [...]");
    return 2;
}
var opts = new Dictionary<string, string>(StringComparer.Ordinal);
for (int i = 1; i + 1 < args.Length; i += 2)
    if (args[i].StartsWith("--", StringComparison.Ordinal)) opts[args[i]] = args[i + 1];
string Opt(string k, string d) => opts.TryGetValue(k, out var v) ? v : d;

if (args[0] == "write-model")
{
    var dims = args[2].Split(',').Select(x => int.Parse(x, inv)).ToArray();
    var config = new ModelConfig(dims[0], dims[1], dims[2], dims[3], int.Parse(args[3], inv), 4 * dims[1]);
    DcwFile.Write(args[1], config, RandomWeights.Create(config, 1));
    Console.WriteLine($"wrote {args[1]}: {config}");
    return 0;
}

var url = new Uri(Opt("--url", "http://127.0.0.1:5080"));
if (!IPAddress.TryParse(url.Host, out var ip) || !IPAddress.IsLoopback(ip))
{
    Console.Error.WriteLine($"--url must be a loopback address (127.0.0.1 or [::1]), not {url.Host}.");
    return 2;
}
int embed = int.Parse(Opt("--embed", "287"), inv), seq = int.Parse(Opt("--seq", "64"), inv), batch = int.Parse(Opt("--batch", "1"), inv);
int? serverPid = opts.TryGetValue("--server-pid", out var pidText) ? int.Parse(pidText, inv) : null;
using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 256 }) { BaseAddress = url, Timeout = TimeSpan.FromSeconds(30) };
var predict = new Uri("/v1/predict", UriKind.Relative);

var input = RandomWeights.Input(batch * seq * embed, 3);
byte[] npyBody = Npy(input, batch, seq, embed);
byte[] jsonBody = Encoding.UTF8.GetBytes(Json(input, batch, seq, embed));
var badKinds = BadRequests(embed, seq);

long rssBefore = Rss(serverPid);
if (args[0] == "bad")
{
    int count = int.Parse(Opt("--count", "1000"), inv);
    var statuses = new Dictionary<string, int>();
    foreach (var (kind, type, body) in badKinds)
    {
        for (int i = 0; i < count; i++)
        {
            using var r = await http.PostAsync(predict, Content(type, body));
            string key = $"{kind}:{(int)r.StatusCode}";
            statuses[key] = statuses.GetValueOrDefault(key) + 1;
        }
    }
    long rssAfter = Rss(serverPid);
    Console.WriteLine($"bad requests: {count} of each of {badKinds.Length} kinds");
    foreach (var (k, v) in statuses.OrderBy(x => x.Key, StringComparer.Ordinal)) Console.WriteLine($"  {k} x{v}");
    Console.WriteLine($"server RSS before {rssBefore / 1048576.0:0.0} MB, after {rssAfter / 1048576.0:0.0} MB, growth {(rssAfter - rssBefore) / 1048576.0:0.0} MB");
    return statuses.Keys.All(k => k.EndsWith(":400", StringComparison.Ordinal)) ? 0 : 1;
}

int clients = int.Parse(Opt("--clients", "8"), inv);
double seconds = double.Parse(Opt("--seconds", "20"), inv);
double badFraction = double.Parse(Opt("--bad-fraction", "0.1"), inv), npyFraction = double.Parse(Opt("--npy-fraction", "0.5"), inv);
long maxRequests = long.Parse(Opt("--max-requests", "1000000"), inv);
long sent = 0;
var deadline = Stopwatch.GetTimestamp() + (long)(seconds * Stopwatch.Frequency);
var results = new List<(bool Bad, int Status, double Ms, double ModelMs)>[clients];
var workers = Enumerable.Range(0, clients).Select(c => Task.Run(async () =>
{
    var rng = new Random(c);
    var mine = results[c] = [];
    while (Stopwatch.GetTimestamp() < deadline && Interlocked.Increment(ref sent) <= maxRequests)
    {
        bool bad = rng.NextDouble() < badFraction;
        HttpContent content;
        if (bad)
        {
            var (_, type, body) = badKinds[rng.Next(badKinds.Length)];
            content = Content(type, body);
        }
        else
        {
            content = rng.NextDouble() < npyFraction ? Content("application/x-npy", npyBody) : Content("application/json", jsonBody);
        }
        long t0 = Stopwatch.GetTimestamp();
        int status;
        double modelMs = double.NaN;
        try
        {
            using var r = await http.PostAsync(predict, content);
            await r.Content.ReadAsByteArrayAsync();
            status = (int)r.StatusCode;
            if (r.Headers.TryGetValues("Server-Timing", out var st))
            {
                string v = st.First();
                int d = v.IndexOf("dur=", StringComparison.Ordinal);
                if (d >= 0) modelMs = double.Parse(v[(d + 4)..], inv);
            }
        }
        catch (HttpRequestException)
        {
            status = -1;
        }
        catch (TaskCanceledException)
        {
            status = -2; // client timeout
        }
        mine.Add((bad, status, Stopwatch.GetElapsedTime(t0).TotalMilliseconds, modelMs));
    }
})).ToArray();
var wall = Stopwatch.StartNew();
await Task.WhenAll(workers);
wall.Stop();
long rssEnd = Rss(serverPid);

var all = results.SelectMany(r => r).ToList();
var good = all.Where(r => !r.Bad).ToList();
double[] lat = good.Where(r => r.Status == 200).Select(r => r.Ms).Order().ToArray();
double[] model = good.Where(r => r.Status == 200 && !double.IsNaN(r.ModelMs)).Select(r => r.ModelMs).Order().ToArray();
double P(double[] a, double q) => a.Length == 0 ? double.NaN : a[Math.Min(a.Length - 1, (int)Math.Ceiling(q * a.Length) - 1)];
Console.WriteLine(string.Create(inv, $"clients {clients}, {wall.Elapsed.TotalSeconds:0.0} s, input [{batch}, {seq}, {embed}], bad fraction {badFraction}, npy fraction {npyFraction}"));
Console.WriteLine(string.Create(inv, $"requests {all.Count} ({all.Count / wall.Elapsed.TotalSeconds:0.0}/s), good {good.Count} ({good.Count(r => r.Status == 200) / wall.Elapsed.TotalSeconds:0.0}/s ok), bad {all.Count - good.Count}"));
Console.WriteLine("good requests by status: " + string.Join(", ", good.GroupBy(r => r.Status).OrderBy(g => g.Key).Select(g => $"{g.Key} x{g.Count()}")));
Console.WriteLine("bad requests by status:  " + string.Join(", ", all.Where(r => r.Bad).GroupBy(r => r.Status).OrderBy(g => g.Key).Select(g => $"{g.Key} x{g.Count()}")));
Console.WriteLine(string.Create(inv, $"good latency ms: p50 {P(lat, .5):0.000} p90 {P(lat, .9):0.000} p99 {P(lat, .99):0.000} max {(lat.Length > 0 ? lat[^1] : double.NaN):0.000}"));
Console.WriteLine(string.Create(inv, $"model call ms (Server-Timing): p50 {P(model, .5):0.000} p90 {P(model, .9):0.000} p99 {P(model, .99):0.000}; service overhead p50 {P(lat, .5) - P(model, .5):0.000} ms"));
Console.WriteLine(string.Create(inv, $"server RSS before {rssBefore / 1048576.0:0.0} MB, after {rssEnd / 1048576.0:0.0} MB"));
return good.All(r => r.Status == 200) ? 0 : 1;

static ByteArrayContent Content(string type, byte[] body)
{
    var c = new ByteArrayContent(body);
    c.Headers.ContentType = new MediaTypeHeaderValue(type);
    return c;
}

static long Rss(int? pid)
{
    if (pid is null) return 0;
    foreach (var line in File.ReadLines($"/proc/{pid}/status"))
        if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
    return 0;
}

static byte[] Npy(float[] data, params int[] shape)
{
    string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + string.Join(", ", shape) + "), }";
    int pad = (64 - (10 + dict.Length + 1) % 64) % 64;
    var header = Encoding.ASCII.GetBytes(dict + new string(' ', pad) + "\n");
    var bytes = new byte[10 + header.Length + data.Length * 4];
    new byte[] { 0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', 1, 0 }.CopyTo(bytes, 0);
    BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(8), (ushort)header.Length);
    header.CopyTo(bytes, 10);
    for (int i = 0; i < data.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(10 + header.Length + i * 4), data[i]);
    return bytes;
}

static string Json(float[] data, int b, int n, int e)
{
    var sb = new StringBuilder("{\"input\": [");
    for (int i = 0; i < b; i++)
    {
        sb.Append(i > 0 ? ",[" : "[");
        for (int j = 0; j < n; j++)
        {
            sb.Append(j > 0 ? ",[" : "[");
            for (int k = 0; k < e; k++)
            {
                if (k > 0) sb.Append(',');
                sb.Append(data[(i * n + j) * e + k].ToString("R", CultureInfo.InvariantCulture));
            }
            sb.Append(']');
        }
        sb.Append(']');
    }
    return sb.Append("], \"output_mode\": \"last\"}").ToString();
}

// One of every bad kind the service must answer 400 to (small bodies, some claiming huge shapes).
static (string Kind, string Type, byte[] Body)[] BadRequests(int e, int n)
{
    string row = "[" + string.Join(",", Enumerable.Repeat("0.5", e)) + "]";
    string seqOf(int rows) => "[" + string.Join(",", Enumerable.Repeat(row, rows)) + "]";
    byte[] J(string s) => Encoding.UTF8.GetBytes(s);
    var nan = Npy([float.NaN, .. new float[n * e - 1]], 1, n, e);
    var hugeShape = Npy([], 1000000, 1000000, e);
    return
    [
        ("malformed-json", "application/json", J("{\"input\": [[[1,2")),
        ("ragged", "application/json", J($"{{\"input\": [{seqOf(n)}, {seqOf(n / 2)}]}}")),
        ("wrong-E", "application/json", J("{\"input\": [[[1,2,3]]]}")),
        ("N-not-multiple-of-C", "application/json", J($"{{\"input\": [[{row}]]}}")),
        ("nan-json", "application/json", J($"{{\"input\": [[[\"NaN\"{string.Concat(Enumerable.Repeat(",0", e - 1))}]]]}}")),
        ("batch-above-limit", "application/json", J($"{{\"input\": [{string.Join(",", Enumerable.Repeat("[" + row + "]", 1000))}]}}")),
        ("unknown-mode", "application/json", J($"{{\"input\": [{seqOf(n)}], \"output_mode\": \"LastTimestep\"}}")),
        ("bad-npy", "application/x-npy", J("not an npy file")),
        ("nan-npy", "application/x-npy", nan),
        ("npy-huge-claimed-shape", "application/x-npy", hugeShape),
    ];
}
