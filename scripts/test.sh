#!/usr/bin/env bash
# README command 2: install Debian deps, build everything, run all tests (ctest), replay the fuzz corpora under
# ASan + UBSan, build the API docs.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
# ccache keyed on paths relative to the checkout, so another clone on the same machine reuses it.
export CCACHE_BASEDIR="$PWD" CCACHE_SLOPPINESS="pch_defines,time_macros,include_file_mtime,include_file_ctime"
start=$(date +%s)
cmake --preset dev
cmake --build --preset dev -j "${CXRL_JOBS:-2}"
echo "[cxrl] build took $(( $(date +%s) - start )) s"
ctest --preset dev
# The parsers of outside input under ASan + UBSan (clang, libFuzzer; torch-free, so this build is quick): every seed
# corpus and saved reproducer once. scripts/fuzz.sh fuzzes them for real.
cmake --preset fuzz > /dev/null
cmake --build --preset fuzz -j "${CXRL_JOBS:-2}"
ctest --preset fuzz
doxygen docs/Doxyfile
echo "[cxrl] API docs in build/docs/html (warnings are errors)"
