#!/usr/bin/env bash
# Two cores for one batch-1 request (issue 12): `dualchunk bench` at 1 and 2 threads, alternating (1 2 1 2 ...) in
# one run, for configs a-d; prints a markdown table of the medians, speed-ups and phases (barriers) per call.
#
# Each round also measures the machine's own ceiling: two 1-thread processes of the same config at once ("pair").
# On independent, uncontended cores each runs as fast as one alone and the ceiling is 2×; on a VM whose vCPUs
# share a physical core, power budget or caches with other tenants it is lower, and no intra-op split can beat it.
# Ceiling = 2 × (1 thread alone) / (1 thread, two at once); efficiency = speed-up / ceiling.
#
#   bench/two-cores.sh [-r ROUNDS] [-b BASELINE_DUALCHUNK] [DUALCHUNK]
#
# DUALCHUNK defaults to a Release build of src/DualChunk.Cli (built first). With -b, a second binary (e.g. a build
# of main) is timed at 1 and 2 threads in the same rounds, so "1 thread not slower" is checked side by side.
# The load average is printed with every round: 2-thread numbers mean little when it is above ~1.
set -euo pipefail
rounds=2
baseline=""
while getopts "r:b:" opt; do
  case $opt in
    r) rounds=$OPTARG ;;
    b) baseline=$OPTARG ;;
    *) echo "usage: $0 [-r ROUNDS] [-b BASELINE_DUALCHUNK] [DUALCHUNK]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-}
if [[ -z $bin ]]; then
  out=$(mktemp -d)
  dotnet build "$root/src/DualChunk.Cli" -c Release -o "$out" >/dev/null
  bin=$out/dualchunk
fi

# name batch seq [calls]: a and b warm up and time by time (the bench's default); c and d, whose calls are long
# (the JIT has tiered their kernels up within the first calls), by count, so a round takes minutes, not ten.
configs=("a 1 64" "b 1 128" "c 16 64 --warmup 20 --iterations 40" "d 1 4096 --warmup 5 --iterations 15")
results=$(mktemp)
run() { # label binary batch seq threads [calls...]; the line is built first, then appended whole
  local json line
  json=$("$2" bench --random-model 287,256,8,4 --chunk-size 64 --batch "$3" --seq "$4" --threads "$5" "${@:6}" --json)
  line=$(python3 -c 'import json,sys; d=json.loads(sys.argv[2]); print(sys.argv[1], d["median_ms"], d.get("phases_per_call", -1), d["allocated_bytes_per_call"])' "$1" "$json")
  echo "$line" >>"$results"
}
for ((r = 1; r <= rounds; r++)); do
  for cfg in "${configs[@]}"; do
    read -r name batch seq calls <<<"$cfg"
    read -ra calls <<<"${calls:-}"
    echo "round $r config $name (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    run "$name 1" "$bin" "$batch" "$seq" 1 "${calls[@]}"
    run "$name 2" "$bin" "$batch" "$seq" 2 "${calls[@]}"
    run "$name pair" "$bin" "$batch" "$seq" 1 "${calls[@]}" &
    run "$name pair" "$bin" "$batch" "$seq" 1 "${calls[@]}"
    wait $!
    if [[ -n $baseline ]]; then
      run "$name base" "$baseline" "$batch" "$seq" 1 "${calls[@]}"
      run "$name base2" "$baseline" "$batch" "$seq" 2 "${calls[@]}"
    fi
  done
done

python3 - "$results" "$rounds" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'EOF'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    cfg, kind, median, phases, alloc = line.split()
    rows.setdefault((cfg, kind), []).append((float(median), float(phases), int(alloc)))
names = {"a": "B1 N64", "b": "B1 N128", "c": "B16 N64", "d": "B1 N4096"}
base = any(k == "base" for _, k in rows)
print(f"E287 H256 NH8 L4 C64, last_timestep; {sys.argv[2]} alternating rounds; medians of the rounds' medians (ms); load at the end {sys.argv[3]}")
print()
print("| config | 1 thread | 2 threads | 2T / 1T | speed-up | two 1-thread processes at once | machine ceiling | efficiency | phases per call (2T) | B/call |" + (" main, 1 thread | 1T / main | main, 2 threads | main speed-up |" if base else ""))
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|---:|---:|" if base else ""))
for c in "abcd":
    one = statistics.median(m for m, _, _ in rows[(c, "1")])
    two = statistics.median(m for m, _, _ in rows[(c, "2")])
    phases = rows[(c, "2")][-1][1]
    pair = statistics.median(m for m, _, _ in rows[(c, "pair")])
    ceiling = 2 * one / pair
    alloc = max(a for k in ("1", "2") for _, _, a in rows[(c, k)])
    line = (f"| {c}: {names[c]} | {one:.3f} | {two:.3f} | {two / one:.3f} | {one / two:.2f}× | {pair:.3f} | {ceiling:.2f}× | "
            f"{one / two / ceiling:.2f} | {phases:g} | {alloc} |")
    if base:
        b = statistics.median(m for m, _, _ in rows[(c, "base")])
        b2 = statistics.median(m for m, _, _ in rows[(c, "base2")])
        line += f" {b:.3f} | {one / b:.3f} | {b2:.3f} | {b / b2:.2f}× |"
    print(line)
print()
print("Every round (ms): " + "; ".join(f"{c}/{k}: " + ", ".join(f"{m:.3f}" for m, _, _ in v) for (c, k), v in sorted(rows.items())))
EOF
rm -f "$results"
