#!/usr/bin/env bash
# The server's load test (issue 21, item 8) on one machine: ~20 minutes (2 rounds, -W 8), ~40 with the docs' -r 4 -W 40:
#   builds Release; writes config a (random model E287 H256 NH8 L4 C64 F1024); starts the real server (the contract
#   command line, on the built apphost so that its PID is the server's); then per round each mode (OIP REST JSON,
#   REST binary, gRPC, sequences over gRPC and REST; gRPC and REST binary again from h2load when it is installed:
#   bench/h2load-run.py), CLIENTS clients x SECONDS each, between runs of the engine alone (`dualchunk bench
#   --callers K`, K = the server's MaxConcurrentCalls, each call on 1 thread as the server's are, ENGINE_SECONDS each):
#   E m1 E m2 ... E m7 E m1 ... E;
#   then the checks: 1,000 bad requests of every kind (RSS growth), good-request latency with and without a flood of
#   bad ones (as fast as 4 clients go, and 500/s; the CPU the server and the flood's clients used), one sequence
#   appended to 256 times (the 256th append's cost vs the 1st), 1,000 sequences left idle (RSS before / after the idle
#   timeout); then gRPC, REST binary and JSON again, and h2load's two modes, with the load generator on a core of its
#   own (taskset: the server and its engine baseline on cores 0..n-2, MaxConcurrentCalls n-1).
#
#   bench/service-load.sh [-s SECONDS] [-e ENGINE_SECONDS] [-c CLIENTS] [-r ROUNDS] [-n BAD_COUNT] [-i IDLE_SEQUENCES]
#                         [-W WARM_SECONDS] [-w]
#
# -W: before round 1 every mode runs once, untimed, for WARM_SECONDS (default 8; docs/service-benchmarks.md's run used
# 40): the server's JIT is still compiling (tier 1, PGO) long after it is ready, and that CPU would otherwise be
# charged to the first rounds (a fresh server on one core takes about a minute of load to settle). -w writes the
# results into docs/service-benchmarks.md (between its service-load markers): only on an idle machine. Without -w
# the markdown goes to stdout (and $out/report.md). Shorter runs (-s 3 -e 2 -n 50 -i 100) check that it works.
# Efficiency = a mode's good requests per second / the mean of the engine's calls per second right before and right
# after it (same cores): the host's speed drifts over minutes, and this keeps it out.
set -euo pipefail
seconds=20 engine_seconds=10 clients=8 rounds=2 bad_count=1000 idle_sequences=1000 write_docs=0 warm_seconds=8
while getopts "s:e:c:r:n:i:W:w" opt; do
  case $opt in
    s) seconds=$OPTARG ;;
    e) engine_seconds=$OPTARG ;;
    c) clients=$OPTARG ;;
    r) rounds=$OPTARG ;;
    n) bad_count=$OPTARG ;;
    i) idle_sequences=$OPTARG ;;
    W) warm_seconds=$OPTARG ;;
    w) write_docs=1 ;;
    *) sed -n 2,24p "$0" >&2; exit 2 ;;
  esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
for tool in dotnet python3 curl lscpu git; do command -v $tool >/dev/null || { echo "needs $tool" >&2; exit 2; }; done
out=$(mktemp -d)
server_pid=""
cleanup() {
  if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT

echo "building (Release) ..." >&2
for p in src/DualChunk.Server src/DualChunk.Cli bench/DualChunk.LoadTest; do
  dotnet build "$p" -c Release -v q -nologo >/dev/null
done
server=src/DualChunk.Server/bin/Release/net10.0/DualChunk.Server
cli=src/DualChunk.Cli/bin/Release/net10.0/dualchunk
lt="dotnet bench/DualChunk.LoadTest/bin/Release/net10.0/DualChunk.LoadTest.dll"
$lt write-model "$out/a.dcw" 287,256,8,4 64 >/dev/null

calls=$(nproc)          # the server's default MaxConcurrentCalls (cores), passed explicitly so the baseline matches
idle_timeout=10         # Server:Sequences:IdleTimeoutSeconds for the idle check (short, so the run stays short)
max_body=1048576        # Service:MaxRequestBodyBytes: the over-size kinds send 1 MiB, not the default 32 MiB, 1,000 times
# The contract command line (dotnet run -c Release --project src/DualChunk.Server -- ...) on the built apphost.
# start_server CALLS [CPU_LIST]: MaxConcurrentCalls CALLS, on the cores CPU_LIST (taskset) when given; sets server_pid
# and common (the load generator's arguments for this server).
start_server() {
  port=$((20000 + RANDOM % 20000)); gport=$((port + 1))
  rest=http://127.0.0.1:$port grpc=http://127.0.0.1:$gport
  local pin=()
  [[ -n ${2:-} ]] && pin=(taskset -c "$2")
  "${pin[@]}" $server --urls $rest --grpc-urls $grpc --model "$out/a.dcw" --threads 1 --max-batch 1 --max-seq-len 16384 \
    --max-concurrent-calls "$1" --Server:Sequences:MaxSequenceLength=16384 --Server:Sequences:IdleTimeoutSeconds=$idle_timeout \
    --Service:MaxRequestBodyBytes=$max_body >"$out/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 240); do curl -sf $rest/v2/health/ready >/dev/null && break; sleep 0.5; done
  curl -sf $rest/v2/health/ready >/dev/null || { echo "server not ready; its log:" >&2; cat "$out/server.log" >&2; exit 1; }
  common="--url $rest --grpc-url $grpc --embed 287 --seq 64 --server-pid $server_pid --max-body-bytes $max_body --max-seq-len 16384"
}
start_server $calls
results=$out/results.jsonl
load0=$(cut -d' ' -f1 /proc/loadavg)

modes="grpc binary json seq-grpc seq-rest"
# h2load (nghttp2, in C): the gRPC and REST binary modes again with a client the project did not write, and a lean one.
h2modes=""
if command -v h2load >/dev/null; then
  h2modes="grpc binary"
  $lt write-bodies --out "$out/bodies" --embed 287 --seq 64 >"$out/bodies.json"
  header_bytes=$(python3 -c "import json; print(json.load(open('$out/bodies.json'))['binary_header_bytes'])")
else
  echo "h2load not found (apt-get install nghttp2-client): its rows are skipped" >&2
fi
h2run() { # h2run MODE SECONDS WARMUP_SECONDS (on measure's client core when it has one)
  local u=$rest; [[ $1 == grpc ]] && u=$grpc
  "${on_client[@]}" python3 bench/h2load-run.py --mode $1 --url $u --bodies "$out/bodies" --server-pid $server_pid --clients "$clients" \
    --seconds "$2" --warmup-seconds "$3" --binary-header-bytes "${header_bytes:-0}"
}
tag() { # tag ROUND PYTHON: the JSON line on stdin with its round set and PYTHON (statements on d) run
  python3 -c "import json,sys; d=json.load(sys.stdin); d['round']=$1; $2 print(json.dumps(d))"
}
# measure LAYOUT CALLS MODES H2MODES [SERVER_CORES CLIENT_CORE]: every mode once, untimed (-W); then per round each
# mode (the load generator on CLIENT_CORE) between two runs of the engine alone (CALLS callers, on SERVER_CORES when
# given): E m1 E m2 ... E, so that a mode's baseline is measured right before and right after it. Rows of a LAYOUT
# other than "shared" are tagged with it; a mode's row and the engine run before it share a slot number.
measure() {
  local layout=$1 k=$2 ms=$3 h2ms=$4 extra="" say="" on_server=() on_client=()
  engine() { # engine ROUND SLOT
    echo "${say}round $1: engine" >&2
    "${on_server[@]}" $cli bench --model "$out/a.dcw" --batch 1 --seq 64 --threads 1 --callers $k --seconds "$engine_seconds" \
      | tag $1 "d['command']='engine'; d['slot']=$2; $extra" >>"$results"
  }
  if [[ -n ${5:-} ]]; then on_server=(taskset -c "$5"); on_client=(taskset -c "$6"); fi
  if [[ $layout != shared ]]; then extra="d['layout']='$layout';"; say="$layout "; fi
  if [[ $warm_seconds != 0 ]]; then
    for m in $ms; do
      echo "${say}warm-up: $m" >&2
      "${on_client[@]}" $lt run --mode $m $common --clients "$clients" --seconds "$warm_seconds" --warmup-seconds 0 >/dev/null || true
    done
    for m in $h2ms; do
      echo "${say}warm-up: $m (h2load)" >&2
      h2run $m "$warm_seconds" 0 >/dev/null || true
    done
  fi
  local slot=0
  for r in $(seq 1 "$rounds"); do
    for m in $ms; do
      engine $r $slot; echo "${say}round $r: $m" >&2
      "${on_client[@]}" $lt run --mode $m $common --clients "$clients" --seconds "$seconds" --warmup-seconds 3 \
        | tail -n 1 | tag $r "d['slot']=$slot; $extra" >>"$results" || true
      slot=$((slot + 1))
    done
    for m in $h2ms; do
      engine $r $slot; echo "${say}round $r: $m (h2load)" >&2
      h2run $m "$seconds" 3 | tag $r "d['mode']+='-h2load'; d['slot']=$slot; $extra" >>"$results" || true
      slot=$((slot + 1))
    done
  done
  engine $rounds $slot # the last mode's "after"
}
measure shared $calls "$modes" "$h2modes"
echo "bad requests" >&2
$lt bad $common --count "$bad_count" | tee "$out/bad.txt" | tail -n 1 >>"$results" || true
echo "bad requests vs a good one" >&2
$lt interfere $common --seconds 5 --rounds 2 --flood-clients 4 | tail -n 1 >>"$results" || true
echo "bad requests at 500/s vs a good one" >&2
$lt interfere $common --seconds 5 --rounds 2 --flood-clients 4 --flood-rate 500 | tail -n 1 >>"$results" || true
echo "sequence growth" >&2
$lt seq-growth $common --appends 256 --repeats 3 | tail -n 1 >>"$results" || true
echo "idle sequences" >&2
$lt idle $common --sequences "$idle_sequences" --idle-seconds $idle_timeout | tail -n 1 >>"$results" || true

# The same modes with the load generator on a core of its own: the server (and the engine baseline) on cores
# 0..n-2, MaxConcurrentCalls = n-1, the load generator on core n-1; what the server costs without the client's CPU
# in it (a client normally runs elsewhere). Needs 2 cores or more.
if (( $(nproc) >= 2 )) && command -v taskset >/dev/null; then
  split_calls=$(( $(nproc) - 1 )) client_core=$(( $(nproc) - 1 ))
  server_cores=0-$(( split_calls - 1 ))
  cleanup; start_server $split_calls $server_cores
  measure split $split_calls "grpc binary json" "$h2modes" $server_cores $client_core
fi
load1=$(cut -d' ' -f1 /proc/loadavg)

cpu=$(lscpu | awk -F: '/^Model name/ {gsub(/^ +/, "", $2); print $2; exit}')
commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src bench || echo "+changes")
python3 - "$results" "$out/report.md" "$cpu" "$(nproc)" "$commit" "$load0" "$load1" "$seconds" "$clients" "$rounds" "$calls" <<'EOF'
import json, statistics, sys, datetime
path, report, cpu, cores, commit, load0, load1, seconds, clients, rounds, calls = sys.argv[1:]
allrows = [json.loads(l) for l in open(path) if l.strip()]
rows = [r for r in allrows if 'layout' not in r]
split = [r for r in allrows if r.get('layout') == 'split']
engine = {r['slot']: r for r in rows if r['command'] == 'engine'}
runs = [r for r in rows if r['command'] == 'run']
one = lambda c: next((r for r in rows if r['command'] == c), None)
med = statistics.median
isa = next(iter(engine.values()))['kernel_isa'] if engine else '?'
names = {'grpc': 'gRPC', 'binary': 'REST binary', 'json': 'REST JSON', 'seq-grpc': 'sequences, gRPC', 'seq-rest': 'sequences, REST binary',
         'grpc-h2load': 'gRPC, h2load', 'binary-h2load': 'REST binary, h2load'}
L = []
L.append(f"Machine: {cpu}, {cores} cores (kernels: {isa}); commit {commit}; {datetime.date.today()}; load average {load0} at the start, {load1} at the end.")
L.append(f"Config a (E 287, H 256, NH 8, L 4, C 64, F 1024, random weights), input [1, 64, 287], output `last`; server `--threads 1 --max-concurrent-calls {calls}`; "
         f"{clients} clients x {seconds} s per run, {rounds} round(s), every mode between two runs of the engine. Medians over the rounds, each round's efficiency in brackets.")
L.append("")
def engine_line(engine, callers):
    cps = [e['calls_per_second'] for e in engine.values()]
    return (f"Engine alone (`dualchunk bench --callers {callers} --threads 1`), run before every mode and once after the last: {len(cps)} runs of "
            f"{next(iter(engine.values()))['seconds']:.0f} s, {min(cps):.1f}-{max(cps):.1f} calls/s (median {med(cps):.1f}; call p50 {med(e['median_ms'] for e in engine.values()):.2f} ms). "
            "A mode's efficiency is its requests/s over the mean of the engine runs right before and right after it.")
L.append(engine_line(engine, calls))
L.append("")
checks = []
def mode_table(runs, engine, where):
    L.append("| mode | requests/s | efficiency | p50 ms | p90 ms | p99 ms | max ms | p99/p50 | errors (statuses) | server RSS MB (peak) | CPU ms/request: server, load generator |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for m in ['grpc', 'binary', 'json', 'seq-grpc', 'seq-rest', 'grpc-h2load', 'binary-h2load']:
        rs = [r for r in runs if r['mode'] == m]
        if not rs: continue
        effs = [r['throughput'] / ((engine[r['slot']]['calls_per_second'] + engine[r['slot'] + 1]['calls_per_second']) / 2)
                for r in rs if r['slot'] in engine and r['slot'] + 1 in engine]
        eff = med(effs)
        p50, p90, p99, mx = (med(r[k] for r in rs) for k in ('p50_ms', 'p90_ms', 'p99_ms', 'max_ms'))
        errors = sum(r['errors'] for r in rs)
        statuses = {}
        for r in rs:
            for k, v in r['statuses'].items(): statuses[k] = statuses.get(k, 0) + v
        each = f" ({', '.join(f'{e:.1%}' for e in effs)})" if len(effs) > 1 else ""
        L.append(f"| {names[m]} | {med(r['throughput'] for r in rs):.1f} | {eff:.1%}{each} | {p50:.2f} | {p90:.2f} | {p99:.2f} | {mx:.2f} | {p99 / p50:.2f} | {errors} ({', '.join(f'{k} x{v}' for k, v in statuses.items())}) | {max(r['rss_after_mb'] for r in rs):.0f} ({max(r['rss_peak_mb'] for r in rs):.0f}) | {med(r.get('server_cpu_ms_per_request', float('nan')) for r in rs):.2f}, {med(r.get('client_cpu_ms_per_request', float('nan')) for r in rs):.2f} |")
        checks.append((f"{names[m]}{where}: 0 errors", errors == 0))
        if m in ('grpc', 'grpc-h2load'):
            checks.append((f"{names[m]}{where} p99 <= 3 x p50", p99 <= 3 * p50))
            checks.append((f"{names[m]}{where} efficiency >= 90%", eff >= 0.90))
        if m in ('binary', 'binary-h2load'):
            checks.append((f"{names[m]}{where} efficiency >= 85%", eff >= 0.85))
mode_table(runs, engine, "")
L.append("")
L.append("Sequence modes: each client appends one chunk per request to its own sequence (4 appends, then `sequence_end` and a new one); their efficiency is against the engine's `Run` on one chunk, not its stream `Append`.")
if any(r.get('client') == 'h2load' for r in runs):
    L.append("")
    L.append("h2load rows: the same gRPC and REST binary requests sent by h2load (nghttp2, written in C; `bench/h2load-run.py`), 8 connections with one request at a time each, "
             "a separate 3 s warm-up; a gRPC answer is good when it carries the good answer's bytes (an error carries none; the first request must answer grpc-status 0).")
L.append("")
split_engine = {r['slot']: r for r in split if r['command'] == 'engine'}
if split_engine:
    sc = next(iter(split_engine.values()))['callers']
    L.append(f"The load generator on a core of its own (`taskset`): the server on cores 0-{sc - 1} with `--max-concurrent-calls {sc}`, the load generator on core {sc}; "
             f"the engine on the server's cores. " + engine_line(split_engine, sc))
    L.append("")
    mode_table([r for r in split if r['command'] == 'run'], split_engine, " (own core)")
    L.append("")
L.append("| check | result |")
L.append("|---|---|")
b = one('bad')
if b:
    costly = sorted(b.get('server_cpu_ms_per_1000', {}).items(), key=lambda kv: -kv[1])[:4]
    cost = ("; server CPU per 1,000 refusals, costliest kinds: " + ", ".join(f"{k} {v:.0f} ms" for k, v in costly)) if costly else ""
    L.append(f"| {b['count_each']} bad requests of each of {b['kinds']} kinds (REST JSON, binary, gRPC, /v1) | server RSS {b['rss_before_mb']} -> {b['rss_after_mb']} MB: **{b['rss_growth_mb']:+.1f} MB**; {b['not_client_errors']} answered other than 4xx / a gRPC client error{cost} |")
    checks.append(("bad requests: RSS growth <= 50 MB, all answered 4xx", b['rss_growth_mb'] <= 50 and b['not_client_errors'] == 0))
for i in (r for r in rows if r['command'] == 'interfere'):
    rate = i.get('flood_rate_limit', 0)
    how = f"at most {rate:.0f}/s in all" if rate else "as fast as they can"
    cpu = ""
    if 'server_cores_alone' in i and i['server_cores_alone'] == i['server_cores_alone']:  # NaN without --server-pid
        cpu = (f"; cores busy: server {i['server_cores_alone']:.2f} alone, {i['server_cores_flooded']:.2f} flooded, load generator {i['client_cores_alone']:.2f} alone, {i['client_cores_flooded']:.2f} flooded;"
               f" CPU per 1,000 bad requests: server {i['server_cpu_ms_per_1000_bad']:.0f} ms, the flood's clients {i['client_cpu_ms_per_1000_bad']:.0f} ms")
    L.append(f"| one good gRPC client alone vs during a flood of bad requests (4 clients {how}: {i['bad_sent']} sent, {i.get('bad_per_second', 0):.0f}/s; 2 rounds of 5 s each, alternated) | p50 {i['alone_p50_ms']} -> {i['flooded_p50_ms']} ms (**x{i['p50_ratio']:.2f}**), p99 {i['alone_p99_ms']} -> {i['flooded_p99_ms']} ms; {i['good_errors']} good errors{cpu} |")
g = one('seq-growth')
if g:
    L.append(f"| one sequence appended to {g['appends']} times (C = 64, gRPC; median of 3) | append 1: {g['first_ms']} ms, append {g['appends']}: {g['last_ms']} ms: **x{g['ratio']:.2f}** (first 8 vs last 8: {g['first8_ms']} vs {g['last8_ms']} ms, x{g['ratio8']:.2f}) |")
    checks.append(("256th append <= 1.5 x the 1st", g['ratio'] <= 1.5))
d = one('idle')
if d:
    L.append(f"| {d['sequences']} sequences opened and left idle (timeout 10 s) | server RSS {d['rss_before_mb']} MB before, {d['rss_open_mb']} MB open, {d['rss_after_mb']} MB after the timeout: **{d['rss_back_within_mb']:+.1f} MB**; {d['failed']} failed to open; an append after it: {d['probe_after_timeout']} |")
    checks.append(("idle sequences: RSS back within 20 MB", d['rss_back_within_mb'] <= 20 and d['failed'] == 0))
L.append("")
L.append("Must hold: " + "; ".join(f"{name}: {'**yes**' if ok else '**NO**'}" for name, ok in checks) + ".")
open(report, 'w').write("\n".join(L) + "\n")
EOF
cat "$out/report.md"
if [[ $write_docs == 1 ]]; then
  python3 - docs/service-benchmarks.md "$out/report.md" <<'EOF'
import sys
doc, rep = sys.argv[1:]
text = open(doc).read()
begin, end = "<!-- service-load:begin -->", "<!-- service-load:end -->"
a, b = text.index(begin) + len(begin), text.index(end)
open(doc, 'w').write(text[:a] + "\n" + open(rep).read() + text[b:])
EOF
  echo "wrote docs/service-benchmarks.md" >&2
fi
