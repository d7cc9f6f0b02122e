#!/usr/bin/env bash
# Runs the libFuzzer harnesses (fuzz/fuzz_*.cpp) under ASan + UBSan:
#   scripts/fuzz.sh                  every harness for 60 s
#   scripts/fuzz.sh TARGET [SECONDS] one harness (csv, gzip, sections, tokenizers, safetensors_header, diffusers_config)
#   scripts/fuzz.sh --replay         every seed corpus and saved reproducer once (what CI runs)
# Each run starts from fuzz/corpus/<target> (copied to build/fuzz/corpus/<target>, where new inputs accumulate) and
# prints executions, coverage and findings; a crash is saved as build/fuzz/crash-* and should be added to
# fuzz/reproducers/<target>/ with the fix.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
export CCACHE_BASEDIR="$PWD" CCACHE_SLOPPINESS="pch_defines,time_macros,include_file_mtime,include_file_ctime"
cmake --preset fuzz > /dev/null
cmake --build --preset fuzz -j "${CXRL_JOBS:-2}"
if [ "${1:-}" = "--replay" ]; then
  exec ctest --preset fuzz
fi
targets=(csv gzip sections tokenizers safetensors_header diffusers_config)
[ $# -ge 1 ] && targets=("$1")
seconds="${2:-60}"
for t in "${targets[@]}"; do
  bin="build/fuzz/fuzz/fuzz_$t"
  [ -x "$bin" ] || { echo "fuzz.sh: no harness '$t' (have: csv gzip sections tokenizers safetensors_header diffusers_config)" >&2; exit 2; }
  work="build/fuzz/corpus/$t"
  mkdir -p "$work"
  cp -n fuzz/corpus/"$t"/* "$work"/ 2>/dev/null || true
  echo "== fuzz_$t for ${seconds} s (corpus $work)"
  (cd build/fuzz && "../../$bin" -max_total_time="$seconds" -timeout=5 -rss_limit_mb=4096 -print_final_stats=1 "../../$work" 2>&1 | \
    grep -E "^#[0-9]+.*(DONE|INITED)|stat::number_of_executed_units|stat::peak_rss_mb|ERROR|SUMMARY|Test unit written|cov:" | tail -6)
done
