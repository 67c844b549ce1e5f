#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: the suite under AddressSanitizer +
# UndefinedBehaviorSanitizer (build-asan/), each libFuzzer target briefly (build-fuzz/), then
# the suite as built (build/). The last ctest prints the closing line CI reads.
set -euo pipefail
cd "$(dirname "$0")/.."
# Each stage's time, so a slow CI run shows where its minutes went.
stage() { echo "== test.sh: $1 done at $((SECONDS / 60)) min $((SECONDS % 60)) s"; }
bash tools/setup.sh
stage setup
bash tools/build.sh
stage build
bash tools/test_sanitizers.sh
stage "sanitizer suite"
bash tools/fuzz.sh
stage fuzzers
ctest --test-dir build --output-on-failure -j"$(nproc)" --timeout 600
