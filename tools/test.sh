#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test (ctest prints the closing line CI reads).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
bash tools/build.sh
ctest --test-dir build --output-on-failure -j"$(nproc)" --timeout 600
