#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: the suite under AddressSanitizer +
# UndefinedBehaviorSanitizer (build-asan/), each libFuzzer target briefly (build-fuzz/), then
# the suite as built (build/). The last ctest prints the closing line CI reads.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
bash tools/build.sh
bash tools/test_sanitizers.sh
bash tools/fuzz.sh
ctest --test-dir build --output-on-failure -j"$(nproc)" --timeout 600
