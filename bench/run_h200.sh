#!/usr/bin/env bash
# On the H200 machine: unpack the compute core's Debian dependencies (carried as .debs in
# .devdata/debs), build the compute core with CUDA, run the cross-backend tests, time our
# attention kernels, then PyTorch SDPA on the same shapes.
# Usage: bench/run_h200.sh [--quick | --prefill | --partial | --tests | --eval] (--tests: stop
# after the tests; --prefill / --partial: those shapes, cuDNN only as the anchor; --eval: the
# tests, then `starmesh eval` on the GPU into $OUT/eval.json). The .debs come from
# tools/fetch_device_debs.sh, run here first.
set -eo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/out}"
mkdir -p "$out" /tmp/deps
for f in .devdata/debs/*.deb; do dpkg -x "$f" /tmp/deps; done
export CMAKE_PREFIX_PATH=/tmp/deps/usr
lib=/tmp/deps/usr/lib/x86_64-linux-gnu
export LD_LIBRARY_PATH="$lib:$lib/openblas-pthread:${LD_LIBRARY_PATH:-}"
export NCCL_NVLS_ENABLE=0
cmake -S . -B /tmp/build -G Ninja -DSTARMESH_CORE_ONLY=ON -DSTARMESH_CUDA=ON -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CUDA_ARCHITECTURES=90a > "$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
cmake --build /tmp/build -j16 --target test_backend_ops attention_bench test_backend test_attention > "$out/build.log" 2>&1 \
  || { grep -E "error|FAILED" "$out/build.log" | head -30; exit 1; }
echo "== cross-backend tests"
/tmp/build/bin/test_backend_ops 2>&1 | tee "$out/test_backend_ops.log" | grep -E "MESSAGE|ERROR|test cases|assertions|Status|relative" || true
[ "${1:-}" = "--tests" ] && exit 0
if [ "${1:-}" = "--eval" ]; then
  cmake --build /tmp/build -j16 --target starmesh >> "$out/build.log" 2>&1 || { grep -E "error|FAILED" "$out/build.log" | head; exit 1; }
  echo "== starmesh eval on the GPU (models/starmesh-needle)"
  /tmp/build/bin/starmesh eval --device cuda --n "${EVAL_N:-20}" --json > "$out/eval.json" 2> "$out/eval.log" || { tail "$out/eval.log"; exit 1; }
  /tmp/build/bin/starmesh eval --device cuda --n "${EVAL_N:-20}" --tasks niah_single --lengths 4096 --fractions 4 \
    --modes star --anchor-fractions 1,0.5,0.25,0.125 > "$out/eval_anchor.txt" 2>> "$out/eval.log"
  tail -1 "$out/eval.log"
  exit 0
fi
echo "== our kernels"
/tmp/build/bin/attention_bench "$@" 2>&1 | tee "$out/attention_bench.log"
echo "== PyTorch SDPA anchor"
python3 bench/sdpa_anchor.py "$@" 2>&1 | tee "$out/sdpa_anchor.log"
