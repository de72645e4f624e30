#!/usr/bin/env bash
# Config a against the one-core FMA peak, and A/B against a baseline binary (issue 24), 1 thread:
#   bench/peak-ab.sh [-r ROUNDS] [-c CONFIGS] BASELINE_DUALCHUNK [DUALCHUNK]
# Measures the peak first (DualChunk.Bench peak 400), then alternates baseline and candidate (A B A B ...) for each
# config (default "a"; "abcd" for all four) and prints, per config and binary, the quietest call of all rounds
# (min_ms), the median of the rounds' medians, the ratio candidate / baseline of both, and for config a the share of
# the peak at the quietest call (0.342 GFLOP of pruned work ÷ min time), and the median of the rounds' CPU time per
# call (the calling thread's, so time the OS gave to other processes is not in it; cache interference still is).
# The load average is printed every round: above ~1 the medians mean little, the minima and CPU times somewhat more.
# DUALCHUNK defaults to a Release build of src/DualChunk.Cli (built first). To build a baseline from main:
#   git worktree add /tmp/base origin/main && dotnet build /tmp/base/src/DualChunk.Cli -c Release -o /tmp/base-cli
set -euo pipefail
rounds=6
configs=a
while getopts "r:c:" opt; do
  case $opt in
    r) rounds=$OPTARG ;;
    c) configs=$OPTARG ;;
    *) echo "usage: $0 [-r ROUNDS] [-c CONFIGS] BASELINE_DUALCHUNK [DUALCHUNK]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
baseline=${1:?usage: $0 [-r ROUNDS] [-c CONFIGS] BASELINE_DUALCHUNK [DUALCHUNK]}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bin=${2:-}
if [[ -z $bin ]]; then
  dotnet build "$root/src/DualChunk.Cli" -c Release -o "$work/cli" -v q -nologo >/dev/null
  bin=$work/cli/dualchunk
fi
dotnet build "$root/bench/DualChunk.Bench" -c Release -o "$work/bench" -v q -nologo >/dev/null
peak=$(dotnet "$work/bench/DualChunk.Bench.dll" peak 400 | sed -n 's/.*peak_gflops=\([0-9.]*\).*/\1/p' | tail -1)
echo "one-core FMA peak: $peak GFLOP/s (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2

declare -A shape=([a]="1 64" [b]="1 128" [c]="16 64 --warmup 20 --iterations 40" [d]="1 4096 --warmup 5 --iterations 15")
results=$work/results
: >"$results"
run() { # label binary batch seq [calls...]
  local json
  json=$("$2" bench --random-model 287,256,8,4 --chunk-size 64 --batch "$3" --seq "$4" --threads 1 "${@:5}" --json)
  python3 -c 'import json,sys; d=json.loads(sys.argv[2]); print(sys.argv[1], d["min_ms"], d["median_ms"], d["allocated_bytes_per_call"], d["cpu_ms_per_call"])' "$1" "$json" >>"$results"
}
for ((r = 1; r <= rounds; r++)); do
  for ((i = 0; i < ${#configs}; i++)); do
    c=${configs:i:1}
    read -r batch seq calls <<<"${shape[$c]}"
    read -ra calls <<<"${calls:-}"
    echo "round $r config $c (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    run "$c base" "$baseline" "$batch" "$seq" "${calls[@]}"
    run "$c new" "$bin" "$batch" "$seq" "${calls[@]}"
  done
done

python3 - "$results" "$rounds" "$peak" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'EOF'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    c, kind, mn, med, alloc, cpu = line.split()
    rows.setdefault((c, kind), []).append((float(mn), float(med), int(alloc), float(cpu)))
peak = float(sys.argv[3])
print(f"1 thread, E287 H256 NH8 L4 C64 last_timestep; {sys.argv[2]} alternating rounds (base new base new ...); FMA peak {peak} GFLOP/s; load at the end {sys.argv[4]}")
print()
print("| config | base min | new min | new/base (min) | base median | new median | new/base (median) | base CPU/call | new CPU/call | new/base (CPU) | new: % of peak at min | B/call |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for c in sorted({c for c, _ in rows}):
    b, n = rows[(c, "base")], rows[(c, "new")]
    bmin, nmin = min(x[0] for x in b), min(x[0] for x in n)
    bmed, nmed = statistics.median(x[1] for x in b), statistics.median(x[1] for x in n)
    bcpu, ncpu = statistics.median(x[3] for x in b), statistics.median(x[3] for x in n)
    share = f"{0.342 / (nmin / 1000) / peak * 100:.1f} %" if c == "a" else ""
    alloc = max(x[2] for x in n)
    print(f"| {c} | {bmin:.3f} | {nmin:.3f} | {nmin / bmin:.3f} | {bmed:.3f} | {nmed:.3f} | {nmed / bmed:.3f} | {bcpu:.3f} | {ncpu:.3f} | {ncpu / bcpu:.3f} | {share} | {alloc} |")
print()
print("Every round (min / median ms): " + "; ".join(f"{c} {k}: " + ", ".join(f"{x[0]:.3f}/{x[1]:.3f}" for x in v) for (c, k), v in sorted(rows.items())))
EOF
