#!/usr/bin/env bash
# README command 1: install Debian deps, build the release tree, run the reference program's main job
# on the built-in phantom world. Output goes to ./report.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
export CCACHE_DIR="${CCACHE_DIR:-$PWD/.cache/ccache}"
cmake --preset release
cmake --build --preset release -j "${CXRL_JOBS:-2}" --target cxrl_mimic
./build/release/examples/cxrl_mimic main --out report "$@"
