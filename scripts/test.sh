#!/usr/bin/env bash
# README command 2: install Debian deps, build everything, run all tests (ctest), build the API docs.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
export CCACHE_DIR="${CCACHE_DIR:-$PWD/.cache/ccache}"
start=$(date +%s)
cmake --preset dev
cmake --build --preset dev -j "${CXRL_JOBS:-2}"
echo "[cxrl] build took $(( $(date +%s) - start )) s"
ctest --preset dev
doxygen docs/Doxyfile
echo "[cxrl] API docs in build/docs/html (warnings are errors)"
