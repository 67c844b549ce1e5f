#!/usr/bin/env bash
# Builds the tests with AddressSanitizer + UndefinedBehaviorSanitizer (GCC, no CUDA) into
# build-asan/ and runs the CPU suites under them: any report fails the run. Extra arguments
# go to ctest (e.g. -R api).
set -euo pipefail
cd "$(dirname "$0")/.."
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}" CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
# -Og -g1: a quarter of -O2 -g's compile time under the sanitizers (CAF's templates; 174 s ->
# 42 s for test_http_door.cpp), still with line numbers in every report's stack.
cmake -S . -B build-asan -G Ninja -DSTARMESH_CUDA=OFF -DSTARMESH_SANITIZE=address,undefined \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-Og -g1 -DNDEBUG" \
  -DCMAKE_C_FLAGS_RELWITHDEBINFO="-Og -g1 -DNDEBUG" >/dev/null
cmake --build build-asan -j"$(nproc)" --target starmesh_tests  # not the benches: no test runs them
# detect_leaks: a leak is a finding too; the suppressions name third-party code only.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_init_order=1:detect_stack_use_after_return=0"
export LSAN_OPTIONS="suppressions=$PWD/tools/sanitizers/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$PWD/tools/sanitizers/ubsan.supp"
# UCX patches malloc and mmap for its memory cache; under ASan those hooks fight its interceptors.
export UCX_MEM_MALLOC_HOOKS=no UCX_MEM_MMAP_HOOK_MODE=none UCX_MEM_EVENTS=no
# The main_build label (the tree's rules, the manifests, the main job) runs on build/ instead
# (tools/test.sh): reading sources gains nothing from a sanitizer.
ctest --test-dir build-asan --output-on-failure -j"$(nproc)" --timeout 900 -LE main_build "$@"
