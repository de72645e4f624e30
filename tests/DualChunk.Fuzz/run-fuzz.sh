#!/usr/bin/env bash
# Coverage-guided fuzzing of one parser with AFL++ and SharpFuzz, for a bounded time.
#   tests/DualChunk.Fuzz/run-fuzz.sh TARGET MINUTES [OUT_DIR]
#   RESUME=1 tests/DualChunk.Fuzz/run-fuzz.sh ...   continues a previous run in OUT_DIR (afl-fuzz -i -)
# TARGET: safetensors-header | safetensors | dcw | npy | config (see FuzzTargets.cs).
# Installs afl++ (apt-get) and the sharpfuzz tool (dotnet tool restore) when missing, publishes the fuzz project,
# instruments the DualChunk assemblies, then runs afl-fuzz under nice -n 19 for MINUTES. Findings go to
# OUT_DIR/findings (default /tmp/dualchunk-fuzz/TARGET); crashes are in findings/default/crashes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
target=${1:?usage: run-fuzz.sh TARGET MINUTES [OUT_DIR]}
minutes=${2:?usage: run-fuzz.sh TARGET MINUTES [OUT_DIR]}
out=${3:-/tmp/dualchunk-fuzz/$target}
[ -d "$here/corpus/$target" ] || { echo "unknown target '$target'; targets: $(ls "$here/corpus" | tr '\n' ' ')" >&2; exit 2; }

if ! command -v afl-fuzz >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq afl++
fi
(cd "$here" && dotnet tool restore >/dev/null)

bin="$out/bin"
plain="$out/bin-plain" # uninstrumented: instrumented code only runs under afl-fuzz (it writes AFL's shared map)
rm -rf "$bin" "$plain"
input=(-i "$here/corpus/$target")
if [ "${RESUME:-0}" = 1 ] && [ -d "$out/findings/default/queue" ]; then
  input=(-i -)
else
  rm -rf "$out/findings"
fi
mkdir -p "$out"
dotnet publish "$here/DualChunk.Fuzz.csproj" -c Release -o "$plain" -p:TreatWarningsAsErrors=true >/dev/null
cp -r "$plain" "$bin"
# Instrument only our own parsers' assemblies: Core (safetensors, .dcw, config inference) and the CLI (.npy).
for dll in DualChunk.Core.dll dualchunk.dll; do
  (cd "$here" && dotnet tool run sharpfuzz "$bin/$dll")
done

case $target in
  safetensors*|config) dict=(-x "$here/dict/safetensors.dict") ;;
  npy) dict=(-x "$here/dict/npy.dict") ;;
  dcw) dict=(-x "$here/dict/dcw.dict") ;;
  nx) dict=(-x "$here/dict/nx.dict") ;;
  *) dict=() ;;
esac

# dotnet itself is not AFL-instrumented (SharpFuzz reports coverage through the fork-server pipes): skip the check.
export AFL_SKIP_BIN_CHECK=1 AFL_NO_UI=1 AFL_NO_AFFINITY=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
export DOTNET_TieredPGO=0 DOTNET_TC_QuickJitForLoops=1 DOTNET_CLI_TELEMETRY_OPTOUT=1
# -t: a slow input (> 5 s) is a hang; -m none: the CLR reserves far more address space than it uses.
nice -n 19 timeout $((minutes * 60 + 120)) afl-fuzz -V $((minutes * 60)) -t 5000 -m none "${dict[@]}" \
  "${input[@]}" -o "$out/findings" -- dotnet "$bin/DualChunk.Fuzz.dll" fuzz "$target" || true

stats="$out/findings/default/fuzzer_stats"
[ -f "$stats" ] || { echo "afl-fuzz produced no stats (see above)" >&2; exit 1; }
grep -E '^(run_time|execs_done|execs_per_sec|corpus_count|bitmap_cvg|edges_found|saved_crashes|saved_hangs|stability) ' "$stats"
# Plateau: seconds since the last new path (AFL's "last new find"), out of the run time.
val() { awk -v k="$1" '$1 == k {print $3}' "$stats"; }
echo "last new find   : $(( $(val last_update) - $(val last_find) )) s before the end"
crashes=$(find "$out/findings/default/crashes" -type f -name 'id:*' | wc -l)
hangs=$(find "$out/findings/default/hangs" -type f -name 'id:*' | wc -l)
echo "target $target: $crashes crashes, $hangs hangs (in $out/findings/default)"
if [ "$crashes" -gt 0 ]; then
  dotnet "$plain/DualChunk.Fuzz.dll" run "$target" "$out/findings/default/crashes" | grep ESCAPED | sort -u -t$'\t' -k3 | head -20 || true
fi
