#!/usr/bin/env bash
# Configures and builds starmesh into build/ (ninja, ccache). Extra arguments go to CMake.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d /usr/local/cuda/bin ] && export PATH="/usr/local/cuda/bin:$PATH"
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
# Hits across checkouts in other folders (CI clones afresh): paths relative to the repo.
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
cmake -S . -B build -G Ninja "$@" >/dev/null
# STARMESH_BUILD_TARGET: one target instead of all (tools/test.sh: starmesh_product).
cmake --build build -j"$(nproc)" --target "${STARMESH_BUILD_TARGET:-all}"
