#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: the product as users build it
# (build/), the suite under AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/), each
# libFuzzer target briefly (build-fuzz/), then the checks labelled main_build on build/ (the
# tree's rules, the manifests, the README's main job). The last ctest prints the closing line
# CI reads.
set -euo pipefail
cd "$(dirname "$0")/.."
# Each stage's time, so a slow CI run shows where its minutes went.
stage() { echo "== test.sh: $1 done at $((SECONDS / 60)) min $((SECONDS % 60)) s"; }
bash tools/setup.sh
stage setup
# The build users get (CUDA compiled in, -O2), without the CPU test binaries: the suite runs
# under the sanitizers below, and compiling it twice was a third of CI's time.
STARMESH_BUILD_TARGET=starmesh_product bash tools/build.sh
stage build
bash tools/test_sanitizers.sh
stage "sanitizer suite"
bash tools/fuzz.sh
stage fuzzers
# On that build: the tree's rules, the manifests against its binary, the README's main job.
ctest --test-dir build --output-on-failure -j"$(nproc)" --timeout 600 -L main_build
