#!/usr/bin/env bash
# README command 1: install Debian deps, build the release tree, run the reference program's main job
# on the built-in phantom world. Output goes to ./report.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
export CCACHE_BASEDIR="$PWD" CCACHE_SLOPPINESS="pch_defines,time_macros,include_file_mtime,include_file_ctime"
cmake --preset release
cmake --build --preset release -j "${CXRL_JOBS:-2}" --target cxrl_mimic
./build/release/examples/cxrl_mimic main --out report "$@"
