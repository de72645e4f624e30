#!/usr/bin/env bash
# Cold start of the server (issue 21, item 7): time from process start to the first 200 of /v2/health/ready (every
# model loaded and warmed), JIT (Release build, the apphost) and NativeAOT (dotnet publish -p:PublishAot=true), for
# samples/tiny and config a (random model E287 H256 NH8 L4 C64), ROUNDS rounds alternating JIT and AOT; medians.
# Before timing, the AOT binary must serve: one OIP REST infer (JSON and binary), one gRPC infer and one sequence,
# with outputs equal to the JIT server's (bitwise for binary and gRPC).
#
#   bench/server-cold-start.sh [-r ROUNDS] [-a AOT_BINARY]
#
# The AOT publish takes a few minutes on 2 idle cores (longer under load); -a reuses a published binary.
set -euo pipefail
rounds=5 aot=""
while getopts "r:a:" opt; do
  case $opt in
    r) rounds=$OPTARG ;;
    a) aot=$OPTARG ;;
    *) sed -n 2,10p "$0" >&2; exit 2 ;;
  esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=$(mktemp -d)
pid=""
trap '[[ -n $pid ]] && kill $pid 2>/dev/null; rm -rf "$out"' EXIT
echo "building (Release) ..." >&2
dotnet build src/DualChunk.Server -c Release -v q -nologo >/dev/null
dotnet build bench/DualChunk.LoadTest -c Release -v q -nologo >/dev/null
jit=src/DualChunk.Server/bin/Release/net10.0/DualChunk.Server
if [[ -z $aot ]]; then
  if ! command -v clang >/dev/null || ! [ -e /usr/include/zlib.h ]; then
    (apt-get update -qq && apt-get install -y -qq clang zlib1g-dev) >/dev/null
  fi
  echo "publishing NativeAOT ..." >&2
  t0=$(date +%s)
  dotnet publish src/DualChunk.Server -c Release -r linux-x64 -p:PublishAot=true -p:IlcInstructionSet=native -o "$out/aot" -v q -nologo >"$out/publish.log" 2>&1 \
    || { cat "$out/publish.log" >&2; exit 1; }
  echo "published in $(( $(date +%s) - t0 )) s; warnings: $(grep -c 'warning' "$out/publish.log" || true)" >&2
  grep -E 'warning (IL|CS)[0-9]+' "$out/publish.log" | sort -u >&2 || true
  aot=$out/aot/DualChunk.Server
fi
lt="dotnet bench/DualChunk.LoadTest/bin/Release/net10.0/DualChunk.LoadTest.dll"
$lt write-model "$out/a.dcw" 287,256,8,4 64 >/dev/null
port=$((20000 + RANDOM % 20000))

start() { # binary, model args...: starts the server; ready_ms = ms until ready
  local bin=$1; shift
  local t0 t1
  t0=$(date +%s%N)
  "$bin" --urls http://127.0.0.1:$port --grpc-urls http://127.0.0.1:$((port + 1)) "$@" >"$out/server.log" 2>&1 &
  pid=$!
  until curl -sf -o /dev/null http://127.0.0.1:$port/v2/health/ready; do
    kill -0 $pid 2>/dev/null || { cat "$out/server.log" >&2; exit 1; }
    (( $(date +%s%N) - t0 < 120000000000 )) || { echo "not ready in 120 s" >&2; exit 1; }
    sleep 0.01
  done
  t1=$(date +%s%N)
  ready_ms=$(( (t1 - t0) / 1000000 ))
}
stop() { kill $pid; wait $pid 2>/dev/null || true; pid=""; }

# The AOT binary serves what the JIT one does: the same requests to both, the answers compared.
infer() { # prefix: writes prefix.{json,bin,grpc}
  curl -sf -X POST -H 'Content-Type: application/json' --data-binary @"$out/req.json" http://127.0.0.1:$port/v2/models/dualchunk/infer >"$1.json"
  curl -sf -X POST -H 'Content-Type: application/octet-stream' -H "Inference-Header-Content-Length: $(stat -c %s "$out/bin-header.json")" \
    --data-binary @"$out/req.bin" http://127.0.0.1:$port/v2/models/dualchunk/infer >"$1.bin"
  $lt run --mode grpc --url http://127.0.0.1:$port --grpc-url http://127.0.0.1:$((port + 1)) --embed 287 --seq 64 --clients 1 --seconds 0.2 --warmup-seconds 0 >/dev/null
  $lt run --mode seq-grpc --url http://127.0.0.1:$port --grpc-url http://127.0.0.1:$((port + 1)) --embed 287 --seq 64 --clients 1 --seconds 0.2 --warmup-seconds 0 >/dev/null
}
python3 - "$out" <<'EOF'
import json, random, struct, sys
out = sys.argv[1]
random.seed(7)
data = [random.uniform(-1, 1) for _ in range(64 * 287)]
json.dump({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64, 287], "data": data}]}, open(f"{out}/req.json", "w"))
header = json.dumps({"parameters": {"binary_data_output": True}, "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64, 287], "parameters": {"binary_data_size": 64 * 287 * 4}}]}).encode()
open(f"{out}/bin-header.json", "wb").write(header)
open(f"{out}/req.bin", "wb").write(header + struct.pack(f"<{len(data)}f", *data))
EOF
start $jit --model "$out/a.dcw"; infer "$out/jit"; stop
start $aot --model "$out/a.dcw"; infer "$out/aot"; stop
cmp -s "$out/jit.bin" "$out/aot.bin" || { echo "AOT binary output differs from JIT's" >&2; exit 1; }
python3 - "$out" <<'EOF'
import json, sys
out = sys.argv[1]
a, b = (json.load(open(f"{out}/{k}.json"))["outputs"][0]["data"] for k in ("jit", "aot"))
assert a == b, "AOT JSON output differs from JIT's"
EOF
echo "AOT serves: OIP JSON and binary (equal to JIT's), gRPC, a sequence" >&2

declare -A runs
for r in $(seq 1 "$rounds"); do
  for build in jit aot; do
    bin=$jit; [[ $build == aot ]] && bin=$aot
    for model in tiny a; do
      if [[ $model == tiny ]]; then args=(--model samples/tiny/model.safetensors --chunk-size 4); else args=(--model "$out/a.dcw"); fi
      start "$bin" "${args[@]}"; ms=$ready_ms; rss=$(awk '/^VmRSS/ {print int($2 / 1024)}' /proc/$pid/status); stop
      runs[$build,$model]+="$ms "; runs[$build,$model,rss]+="$rss "
      echo "round $r: $build $model ${ms} ms, RSS ${rss} MB" >&2
    done
  done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
cpu=$(lscpu | awk -F: '/^Model name/ {gsub(/^ +/, "", $2); print $2; exit}')
echo "Machine: $cpu, $(nproc) cores; commit $(git rev-parse --short HEAD); $(date -u +%F); load average $(cut -d' ' -f1-3 /proc/loadavg)."
echo "AOT binary: $(du -m "$aot" | cut -f1) MB."
echo
echo "| build | model | runs to ready (ms) | median | RSS when ready (MB, median) |"
echo "|---|---|---|---|---|"
for build in jit aot; do
  for model in tiny a; do
    name=$([[ $model == tiny ]] && echo "samples/tiny" || echo "config a")
    echo "| ${build^^} | $name | ${runs[$build,$model]% } | $(echo "${runs[$build,$model]}" | median) ms | $(echo "${runs[$build,$model,rss]}" | median) |"
  done
done
