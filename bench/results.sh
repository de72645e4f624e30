#!/usr/bin/env bash
# Regenerates docs/benchmarks.md, every number from the commit checked out here:
#   1. BenchmarkDotNet EndToEndBenchmarks a–d (MemoryDiagnoser, 1 thread, in-process);
#   2. `dualchunk bench` a–d on 1 and 2 threads, alternating 1 2 1 2 over rounds;
#   3. the peers harness: DualChunk.NET vs ONNX Runtime vs libtorch on 1 and 2 threads, each engine in its own process,
#      then DecoderOnly on DualChunk.NET vs ONNX Runtime (libtorch's graph is DualChunk.build's only);
#   4. the attention GFLOP/s table and the memory sweep against dense attention (and docs/bench-*.png);
#   5. streaming: one Append vs Run on the prefix, N = 64 … 65,536 (bench/stream-sweep.sh).
# Usage: bench/results.sh [--quick] [--note TEXT]
#   --quick      smoke test (≲ 3 min on 2 cores): short BenchmarkDotNet job, few calls, one peers config, sweep to N = 2,048
#   --note TEXT  a line in bold at the top of the page (e.g. "measured on a loaded machine")
# The full run takes ≲ 20 min on 2 idle cores. Run it on a quiet machine: every engine's threads compete with whatever
# else runs. History (what was tried, earlier tables) belongs in docs/performance-notes.md, not here.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

quick=0
note=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --note) note=${2:?--note needs a text}; shift ;;
    *) echo "usage: bench/results.sh [--quick] [--note TEXT]" >&2; exit 2 ;;
  esac
  shift
done

for tool in dotnet jq awk git lscpu; do
  command -v "$tool" >/dev/null || { echo "results.sh needs $tool on PATH" >&2; exit 1; }
done

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
commit=$(git rev-parse --short HEAD)
dirty=""
if [ -n "$(git status --porcelain -- src bench)" ]; then dirty=" (+ uncommitted changes in src/ or bench/)"; fi
started=$(date -u '+%Y-%m-%d %H:%M UTC')
load_start=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
page="$root/docs/benchmarks.md"
commands="$work/commands.txt"
: >"$commands"

# Runs a command and records it (as typed, relative to the repository) for the page's Commands section.
run() {
  echo "+ $*" >&2
  printf '%q ' "$@" | sed 's/ $//' >>"$commands"
  echo >>"$commands"
  "$@"
}

echo "== build (Release)" >&2
dotnet build -c Release src/DualChunk.Cli -v q -nologo >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
dotnet build -c Release bench/DualChunk.Bench -v q -nologo >>"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
dotnet build -c Release bench/DualChunk.Bench.Peers -v q -nologo >>"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
cli=src/DualChunk.Cli/bin/Release/net10.0/dualchunk
bdn=bench/DualChunk.Bench/bin/Release/net10.0/DualChunk.Bench.dll
peers=bench/DualChunk.Bench.Peers/bin/Release/net10.0/DualChunk.Bench.Peers.dll

# --- 1. BenchmarkDotNet end-to-end a–d, one thread
echo "== BenchmarkDotNet EndToEndBenchmarks" >&2
# The bench's own job (--run standard: warm-up 6, 10 iterations of 100 ms; quick: 4 and 5 of 80 ms) on this machine's best
# kernel path, out of process. (With --inProcess or job flags BenchmarkDotNet would add a second job from the command line.)
bdn_run=standard
[ $quick = 1 ] && bdn_run=quick
run dotnet "$bdn" --filter '*EndToEndBenchmarks*' --run "$bdn_run" --artifacts "$work/bdn" >"$work/bdn.log" 2>&1 \
  || { tail -40 "$work/bdn.log"; exit 1; }
bdn_md=$(ls "$work"/bdn/results/*EndToEndBenchmarks-report-github.md)

# --- 2. dualchunk bench a–d, threads 1 and 2 alternating
echo "== dualchunk bench" >&2
configs="a:1:64 b:1:128 c:16:64 d:1:4096"
rounds=2
[ $quick = 1 ] && rounds=1
: >"$work/cli.jsonl"
cli_calls="by time (≥ 1.5 s and 50 calls warm-up, ≥ 2 s and 30 calls timed)"
[ $quick = 1 ] && cli_calls="--warmup 30 --iterations 30 (d: --warmup 2 --iterations 5)"
printf '%s\n' "$cli bench --random-model 287,256,8,4 --arch A --chunk-size 64 --batch B --seq N --threads T --json   # a: B1 N64, b: B1 N128, c: B16 N64, d: B1 N4096; A = dualchunk, decoder and T = 1, 2 per config, alternating, $rounds round(s); calls: $cli_calls" >>"$commands"
# The one-core FMA peak, for the share-of-peak column (DualChunk.Bench peak, as bench/peak-ab.sh measures it).
peak=$(dotnet "$bdn" peak 400 | sed -n 's/.*peak_gflops=\([0-9.]*\).*/\1/p' | tail -1)
printf '%s\n' "dotnet $bdn peak 400   # one-core FMA peak: $peak GFLOP/s" >>"$commands"
for round in $(seq 1 $rounds); do
  for cfg in $configs; do
    IFS=: read -r name batch seq <<<"$cfg"
    calls=()
    if [ $quick = 1 ]; then
      if [ "$seq" -ge 4096 ]; then calls=(--warmup 2 --iterations 5); else calls=(--warmup 30 --iterations 30); fi
    fi
    for threads in 1 2; do
      for arch in dualchunk decoder; do   # DualChunk.build and DecoderOnly alternate: A B A B
        line=$("$cli" bench --random-model 287,256,8,4 --arch "$arch" --chunk-size 64 --batch "$batch" --seq "$seq" --threads "$threads" "${calls[@]}" --json)
        jq -c --arg config "$name" --arg arch "$arch" --argjson round "$round" '. + {config: $config, arch: $arch, round: $round}' <<<"$line" >>"$work/cli.jsonl"
      done
    done
  done
done

stream_rounds=3
[ $quick = 1 ] && stream_rounds=1
printf '%s\n' "bench/stream-sweep.sh $stream_rounds   # for N = 64 … 65,536: dualchunk bench --random-model 287,256,8,4 --chunk-size 64 --batch 1 --seq N [--stream] --threads 1" >>"$commands"

# --- 3 and 4. The peers harness appends its generated sections to the page written below.
peer_args=(--peers-only --full --configs a,b,c,d --arch dualchunk,decoder --rounds 2 --budget 5)
memory_args=(--memory-only --full --sweep-cap 60)
if [ $quick = 1 ]; then
  peer_args=(--peers-only --configs a --arch dualchunk,decoder --rounds 2 --budget 1)
  memory_args=(--memory-only --max-n 2048 --sweep-cap 5)
fi

# --- The page: header, machine, commands, the two tables above; then the harness's sections.
model=$(lscpu | awk -F: '/^Model name/ {gsub(/^ +/, "", $2); print $2; exit}')
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
has() { case " $flags " in *" $1 "*) echo yes ;; *) echo no ;; esac; }
cpus=$(nproc)
cores=$(lscpu | awk -F: '/^Core\(s\) per socket/ {gsub(/ /, "", $2); c=$2} /^Socket\(s\)/ {gsub(/ /, "", $2); s=$2} END {if (c && s) print c*s; else print "?"}')

{
  echo "# Benchmarks"
  echo
  echo "**Every number on this page is from commit \`$commit\`$dirty**, measured $started by \`bench/results.sh$([ $quick = 1 ] && echo ' --quick')\`."
  if [ $quick = 1 ]; then
    echo
    echo "**Quick smoke run (\`--quick\`): few calls, one peers config, a short sweep. Not the published numbers.**"
  fi
  if [ -n "$note" ]; then
    echo
    echo "**$note**"
  fi
  echo
  echo "History of what was tried and earlier tables: [performance-notes.md](performance-notes.md). The service's load test: [service-benchmarks.md](service-benchmarks.md)."
  echo
  echo "## Machine"
  echo
  echo "| | |"
  echo "|---|---|"
  echo "| CPU | $model |"
  echo "| cores | $cores cores, $cpus logical CPUs visible |"
  echo "| ISA | AVX2 $(has avx2), FMA $(has fma), AVX-512F $(has avx512f) |"
  echo "| OS | $(uname -sr), .NET SDK $(dotnet --version) |"
  echo "| load average at start | $load_start (1, 5, 15 min) |"
  echo
  echo "## Commands"
  echo
  echo "Run from the repository root after \`dotnet build -c Release\` of src/DualChunk.Cli, bench/DualChunk.Bench and bench/DualChunk.Bench.Peers:"
  echo
  echo '```sh'
  sed "s|$root/||g; s|$work/bdn|BenchmarkDotNet.Artifacts|g" "$commands"
  echo "dotnet $peers ${peer_args[*]}"
  echo "dotnet $peers ${memory_args[*]}"
  echo '```'
  echo
  echo "## End-to-end, BenchmarkDotNet (EndToEndBenchmarks, 1 thread, MemoryDiagnoser)"
  echo
  echo "E = 287, H = 256, NH = 8, L = 4, C = 64, F = 1024, random weights, last_timestep; a: B1 N64, b: B1 N128, c: B16 N64, d: B1 N4096."
  echo
  sed -n '/^|/p' "$bdn_md" | sed 's/\*\*//g' # without the bold BenchmarkDotNet gives every row whose parameters change
  echo
  echo "## End-to-end, \`dualchunk bench\`, 1 and 2 threads alternating"
  echo
  echo "Median wall time per call of each round (rounds alternate 1 and 2 threads per config), the median of the rounds,"
  echo "the calling thread's CPU time and run-queue wait per call (/proc/thread-self/schedstat), bytes allocated per call, and the"
  echo "speed-up: 1-thread median / 2-thread median. Architectures alternate in every round: \`dualchunk\` is DualChunk.build (F = 1024),"
  echo "\`decoder\` is DecoderOnly with attention_type: :dual_chunk (RMSNorm, SwiGLU F = 688; nominal FLOPs count its three FFN"
  echo "matrices). Share of peak: nominal GFLOP/s over T × the one-core FMA peak ($peak GFLOP/s, \`DualChunk.Bench peak\`). Nominal FLOPs count every position through every layer; last_timestep prunes the last block to one row, so the share can pass 100 %: it compares configurations and architectures, not how busy the FMA units are (config a's pruned pass is 0.342 GFLOP: divided by a time above and by the peak, that is the real share)."
  echo
  echo "| config | arch | threads | median per round (ms) | median (ms) | p90 (ms) | CPU ms/call | run-queue wait ms/call | allocated B/call | GFLOP/s | share of FMA peak | speed-up |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  jq -rs --argjson peak "${peak:-0}" '
    def med: sort | if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
    def r2: (. * 100 | round) / 100;
    map(.arch //= "dualchunk") | group_by(.config, .arch) | .[] | . as $c
    | ($c | map(select(.threads == 1) | .median_ms) | med) as $one
    | group_by(.threads) | .[]
    | (map(.median_ms) | med) as $m
    | (map(.gflops_at_median) | med) as $g
    | "| \(.[0].config): B\(.[0].batch) N\(.[0].seq_len) | \(.[0].arch) | \(.[0].threads) | \(map(.median_ms | r2 | tostring) | join(" / ")) | \($m | r2) | \(map(.p90_ms) | med | r2) | \(map(.cpu_ms_per_call) | med | r2) | \(map(.runqueue_wait_ms_per_call) | med | r2) | \(map(.allocated_bytes_per_call) | max) | \($g | r2) | \(if $peak > 0 then "\($g / ($peak * .[0].threads) * 1000 | round / 10) %" else "—" end) | \(if .[0].threads == 1 then "—" else "\($one / $m | r2)×" end) |"
  ' "$work/cli.jsonl"
  echo
} >"$work/page.md"
cp "$work/page.md" "$page"

echo "== peers harness" >&2
dotnet "$peers" "${peer_args[@]}" >"$work/peers.log" 2>&1 || { tail -40 "$work/peers.log"; exit 1; }
echo "== attention GFLOP/s and memory sweep" >&2
dotnet "$peers" "${memory_args[@]}" >"$work/memory.log" 2>&1 || { tail -40 "$work/memory.log"; exit 1; }

# --- 5. Streaming (issue 13): one Append at stream length N vs Run on the prefix, state bytes vs the formula.
echo "== streaming sweep" >&2
{
  echo
  echo "## Streaming: one Append vs Run on the prefix"
  echo
  echo "\`DualChunkStream.Append\` at stream length N (the stream already holds N − C positions) next to \`Run\` on the whole"
  echo "prefix of N positions: E=287 H=256 NH=8 L=4 C=64, B = 1, 1 thread, last_timestep, \`DOTNET_TieredCompilation=0\`."
  echo "State bytes are \`DualChunkStream.StateBytes\` against the formula L·(N / C)·2H·4 + 2H·8; the must-hold line compares"
  echo "N = 16,384 with N = 128, alternated in one run."
  echo
  OUT="$work/stream.jsonl" bench/stream-sweep.sh "$stream_rounds" | sed '/^CPU ms per call/,$ { /^CPU ms per call/ s/^/```\n/ }'
  echo '```'
} >"$work/stream.md" 2>"$work/stream.log" || { tail -40 "$work/stream.log"; exit 1; }
cat "$work/stream.md" >>"$page"

load_end=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")
sed -i "s/^| load average at start | \(.*\) |$/| load average | at start \1, at the end $load_end (1, 5, 15 min) |/" "$page"
echo "wrote $page (started $started, finished $(date -u '+%H:%M UTC'))" >&2
