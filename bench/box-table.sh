#!/usr/bin/env bash
# Issue 24's box table: where one config-a pass (1 thread) goes, box by box, in µs and % of the one-core FMA peak.
#   bench/box-table.sh [DUALCHUNK] [-- extra dualchunk bench arguments, e.g. --seq 128]
# Measures the peak (DualChunk.Bench peak 400), then runs `dualchunk bench --random-model 287,256,8,4 --chunk-size 64
# --batch 1 --seq 64 --threads 1` with DUALCHUNK_BOX_TRACE=1, which times every dense layer, norm, chunk-means and
# attention call at the layer (src/DualChunk.Core/Execution/BoxTrace.cs) and prints one row per box (rows × in × out)
# with the median µs per pass over the timed calls. The timestamps cost ~50 ns per call (~100 calls a pass), so the
# pass's own time in the JSON line is a little above an untraced run's. Run it on an idle machine.
# DUALCHUNK defaults to a Release build of src/DualChunk.Cli (built first).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bin=${1:-}
[[ $bin == -- ]] && bin=
[[ $# -gt 0 ]] && shift
[[ ${1:-} == -- ]] && shift
if [[ -z $bin ]]; then
  dotnet build "$root/src/DualChunk.Cli" -c Release -o "$work/cli" -v q -nologo >/dev/null
  bin=$work/cli/dualchunk
fi
dotnet build "$root/bench/DualChunk.Bench" -c Release -o "$work/bench" -v q -nologo >/dev/null
peak=$(dotnet "$work/bench/DualChunk.Bench.dll" peak 400 | sed -n 's/.*peak_gflops=\([0-9.]*\).*/\1/p' | tail -1)
echo "one-core FMA peak: $peak GFLOP/s (load $(cut -d' ' -f1-3 /proc/loadavg))"
DUALCHUNK_BOX_TRACE=1 DUALCHUNK_PEAK_GFLOPS=$peak "$bin" bench --random-model 287,256,8,4 --chunk-size 64 --batch 1 \
  --seq 64 --threads 1 --json "$@" 2>&1
