#!/usr/bin/env python3
"""One closed-loop load run of the server with h2load (nghttp2's HTTP/2 and HTTP/1.1 load generator, written in C):
a client the project did not write, and a lean one, so that less of the load test's CPU goes to the client on a
machine where it shares the server's cores. bench/service-load.sh runs it beside DualChunk.LoadTest.

  bench/h2load-run.py --mode grpc|binary --url http://127.0.0.1:P --bodies DIR --server-pid PID
                      [--clients 8] [--seconds 20] [--warmup-seconds 3] [--binary-header-bytes N] [--round R]

--bodies: the files `DualChunk.LoadTest write-bodies --out DIR` writes (grpc.bin: one gRPC frame of ModelInfer;
binary.bin: an OIP binary request). Each of the clients is its own connection with one request at a time (-c C -m 1).
h2load sees HTTP statuses only, and a gRPC error is an HTTP 200 too: so one request is first sent with curl, which
must answer grpc-status 0 (gRPC) or 200, and its response size is the good one; the run then counts as good only as
many requests as its response bytes hold good responses (an error answer carries no output). Prints one JSON line in
the form of DualChunk.LoadTest's `run` (throughput, percentiles, statuses, RSS, CPU per request of server and client).
"""
import argparse, json, os, resource, subprocess, sys, tempfile

p = argparse.ArgumentParser()
p.add_argument('--mode', choices=['grpc', 'binary'], required=True)
p.add_argument('--url', required=True)
p.add_argument('--bodies', required=True)
p.add_argument('--server-pid', type=int, required=True)
p.add_argument('--clients', type=int, default=8)
p.add_argument('--seconds', type=float, default=20)
p.add_argument('--warmup-seconds', type=float, default=3)
p.add_argument('--binary-header-bytes', type=int, default=0)
p.add_argument('--model', default='dualchunk')
p.add_argument('--round', type=int, default=0)
a = p.parse_args()

if a.mode == 'grpc':
    path, body = '/inference.GRPCInferenceService/ModelInfer', os.path.join(a.bodies, 'grpc.bin')
    headers = ['content-type: application/grpc', 'te: trailers']
    proto = []  # h2c with prior knowledge
    curl_proto = ['--http2-prior-knowledge']
else:
    path, body = f'/v2/models/{a.model}/infer', os.path.join(a.bodies, 'binary.bin')
    headers = ['content-type: application/octet-stream', f'inference-header-content-length: {a.binary_header_bytes}']
    proto = ['--h1']
    curl_proto = ['--http1.1']
url = a.url.rstrip('/') + path

# One request with curl: it must be a good one, and its body size is what every good answer carries.
with tempfile.TemporaryDirectory() as tmp:
    out, dump = os.path.join(tmp, 'out'), os.path.join(tmp, 'headers')
    cmd = ['curl', '-s', *curl_proto, '-o', out, '-D', dump, '--data-binary', '@' + body, url]
    for h in headers: cmd += ['-H', h]
    subprocess.run(cmd, check=True)
    answer = open(dump).read().lower()
    good = 'grpc-status: 0' in answer if a.mode == 'grpc' else answer.startswith('http/1.1 200')
    if not good: sys.exit(f'the first request was not answered as a good one: {answer!r}')
    good_bytes = os.path.getsize(out)

def h2load(seconds, log=None):
    cmd = ['h2load', *proto, '-c', str(a.clients), '-m', '1', '-D', f'{seconds:g}', '-d', body]
    for h in headers: cmd += ['-H', h]
    if log: cmd += ['--log-file', log]
    return subprocess.run(cmd + [url], check=True, capture_output=True, text=True).stdout

def server_cpu_ms():
    f = open(f'/proc/{a.server_pid}/stat').read().rsplit(')', 1)[1].split()
    return (int(f[11]) + int(f[12])) * 1000 / os.sysconf('SC_CLK_TCK')

def server_memory_mb():
    m = {k: v.split()[0] for k, v in (l.split(':', 1) for l in open(f'/proc/{a.server_pid}/status') if ':' in l) if k in ('VmRSS', 'VmHWM')}
    return int(m['VmRSS']) / 1024, int(m['VmHWM']) / 1024

if a.warmup_seconds > 0: h2load(a.warmup_seconds)  # connections, pools, the server's JIT
with tempfile.TemporaryDirectory() as tmp:
    log = os.path.join(tmp, 'log')
    rss0, _ = server_memory_mb()
    cpu0, child0 = server_cpu_ms(), resource.getrusage(resource.RUSAGE_CHILDREN)
    text = h2load(a.seconds, log)
    cpu1, child1 = server_cpu_ms(), resource.getrusage(resource.RUSAGE_CHILDREN)
    rss1, hwm = server_memory_mb()
    rows = [l.split('\t') for l in open(log) if l.strip()]

def line(prefix):
    return next(l for l in text.splitlines() if l.startswith(prefix))
done = int(line('requests:').split(',')[2].split()[0])
wall = float(line('finished in').split()[2].rstrip('s,'))
data = int(line('traffic:').split('(')[-1].split(')')[0])  # the last "(N)" is the data bytes
statuses = {}
for r in rows: statuses[r[1]] = statuses.get(r[1], 0) + 1
# A gRPC error is an HTTP 200 too, with no output: count gRPC's good answers by their bytes (curl's body size each).
ok_count = min(done, round(data / good_bytes)) if a.mode == 'grpc' else statuses.get('200', 0)
lat = sorted(int(r[2]) / 1000 for r in rows if r[1] == '200')
def pct(q): return round(lat[min(len(lat) - 1, int(q * len(lat)))], 3) if lat else float('nan')
client_ms = ((child1.ru_utime + child1.ru_stime) - (child0.ru_utime + child0.ru_stime)) * 1000
print(json.dumps({
    'command': 'run', 'mode': a.mode, 'client': 'h2load', 'round': a.round, 'clients': a.clients, 'seconds': wall,
    'requests': done, 'throughput': round(ok_count / wall, 3), 'errors': done - ok_count,
    'statuses': {('HTTP ' + k if a.mode == 'grpc' else k): v for k, v in statuses.items()},
    'response_bytes_per_request': round(data / max(1, done), 1), 'good_response_bytes': good_bytes,
    'p50_ms': pct(.5), 'p90_ms': pct(.9), 'p99_ms': pct(.99), 'max_ms': lat[-1] if lat else float('nan'),
    'rss_before_mb': round(rss0, 1), 'rss_after_mb': round(rss1, 1), 'rss_peak_mb': round(hwm, 1),
    'server_cpu_ms_per_request': round((cpu1 - cpu0) / max(1, done), 4),
    'client_cpu_ms_per_request': round(client_ms / max(1, done), 4),
}))
