#!/usr/bin/env bash
# Installs the Debian bookworm packages cxrl needs. Idempotent: skips apt when all are present.
set -euo pipefail
pkgs=(build-essential cmake ninja-build ccache pkg-config git
      libtorch-dev libgloo-dev librange-v3-dev catch2 doxygen
      nlohmann-json3-dev libcli11-dev libstb-dev libopenblas0-openmp
      python3-torch python3-numpy fonts-dejavu-core clang libclang-rt-14-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "[cxrl] installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "[cxrl] all Debian packages present"
fi
