#!/usr/bin/env bash
# Streaming benchmark (issue 13, docs/benchmarks.md "Streaming"): the time of one DualChunkStream.Append at stream
# length N = 64 … 65,536 next to Run on the whole prefix (up to RUN_MAX), the state's bytes vs the formula, and the
# must-hold check: N = 16,384 vs N = 128 alternating in one run. Default dims E=287 H=256 NH=8 L=4 C=64, B = 1,
# 1 thread, last_timestep. Prints JSON lines to $OUT (default /tmp/stream-sweep.jsonl), then the markdown table and plot.
# Usage: bench/stream-sweep.sh [ROUNDS] — bounded: each call is `timeout 300`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
RUN_MAX=${RUN_MAX:-16384}
OUT=${OUT:-/tmp/stream-sweep.jsonl}
dotnet build src/DualChunk.Cli -c Release -v q -nologo >/dev/null
CLI=src/DualChunk.Cli/bin/Release/net10.0/dualchunk
MODEL=(--random-model 287,256,8,4 --chunk-size 64 --batch 1 --output-mode last --threads 1)
bench() { DOTNET_TieredCompilation=0 timeout 300 nice -n 19 "$CLI" bench "${MODEL[@]}" "$@"; }
: > "$OUT"
echo "{\"commit\": \"$(git rev-parse --short HEAD)\", \"loadavg_start\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"}" >> "$OUT"
for n in 64 128 256 512 1024 2048 4096 8192 16384 32768 65536; do
  bench --seq "$n" --stream --warmup 20 --iterations 60 | sed "s/^{/{\"kind\": \"append\", /" >> "$OUT"
  if [ "$n" -le "$RUN_MAX" ]; then
    if [ "$n" -le 1024 ]; then w=10; k=30; else w=2; k=5; fi
    bench --seq "$n" --warmup "$w" --iterations "$k" | sed "s/^{/{\"kind\": \"run\", /" >> "$OUT"
  fi
done
for r in $(seq "$ROUNDS"); do   # the must-hold pair, alternating under the same load
  for n in 128 16384; do
    bench --seq "$n" --stream --warmup 20 --iterations 60 | sed "s/^{/{\"kind\": \"pair\", \"round\": $r, /" >> "$OUT"
  done
done
echo "{\"loadavg_end\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"}" >> "$OUT"
python3 - "$OUT" <<'PY'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1])]
meta = {k: v for r in rows for k, v in r.items() if k in ("commit", "loadavg_start", "loadavg_end")}
app = {r["seq_len"]: r for r in rows if r.get("kind") == "append"}
run = {r["seq_len"]: r for r in rows if r.get("kind") == "run"}
print(f"commit {meta['commit']}, load average {meta['loadavg_start']} at start, {meta['loadavg_end']} at end\n")
print("| N | Append median ms | Append CPU ms | Run(prefix) median ms | Run CPU ms | state bytes (measured) | formula L·NC·2H·4 + 2H·8 |")
print("|---:|---:|---:|---:|---:|---:|---:|")
for n, a in sorted(app.items()):
    r = run.get(n)
    rm = f"{r['median_ms']:.2f}" if r else "—"
    rc = f"{r['cpu_ms_per_call']:.2f}" if r else "—"
    print(f"| {n:,} | {a['median_ms']:.3f} | {a['cpu_ms_per_call']:.3f} | {rm} | {rc} | {a['stream_state_bytes']:,} | {a['stream_state_bytes_formula']:,} |")
pairs = [r for r in rows if r.get("kind") == "pair"]
for key in ("median_ms", "cpu_ms_per_call"):
    small = statistics.median(r[key] for r in pairs if r["seq_len"] == 128)
    big = statistics.median(r[key] for r in pairs if r["seq_len"] == 16384)
    print(f"\nmust-hold ({key}, median of {len(pairs)//2} alternating rounds): N=16384 {big:.3f} / N=128 {small:.3f} = {big/small:.2f}x (limit 1.5x)")
print("\nCPU ms per call (log2 N across, one '#' = 0.25 ms; A = Append, R = Run on the prefix, capped at 60 columns):")
for n, a in sorted(app.items()):
    bar = "#" * max(1, round(a["cpu_ms_per_call"] / 0.25))
    print(f"{n:>6} A {bar[:60]} {a['cpu_ms_per_call']:.2f}")
    if n in run:
        r = run[n]["cpu_ms_per_call"]
        rb = "#" * max(1, round(r / 0.25))
        print(f"{'':>6} R {rb[:60]}{'>' if len(rb) > 60 else ''} {r:.2f}")
PY
