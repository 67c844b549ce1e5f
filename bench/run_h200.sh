#!/usr/bin/env bash
# On the H200 machine: unpack the compute core's Debian dependencies (carried as .debs in
# .devdata/debs), build the compute core with CUDA, run the cross-backend tests, time our
# attention kernels, then PyTorch SDPA on the same shapes.
# Usage: bench/run_h200.sh [--quick | --prefill | --partial | --tests | --eval | --e2e | --gemv | --batched] (--tests:
# stop after the tests; --prefill / --partial: those shapes, cuDNN only as the anchor; --eval:
# the tests, then `starmesh eval` on the GPU into $OUT/eval.json; --e2e: a random-weight
# Llama-3.1-8B checkpoint, decode_bench (global and star, per-op profile) and HF transformers
# on it, contexts from $E2E_CONTEXTS, JSON into $OUT; --mesh: the whole product built with
# CAF, Cap'n Proto and UCX, then bench/mesh_e2e.sh: a router and 4 worker processes on the GPU
# serving the same checkpoint through the API; --concurrency: concurrent requests through the mesh
# (bench/concurrency_bench) beside HF's batched generate; --batched: decode steps of many
# requests at once in one process, profiled per op (decode_bench --batches); --gemv: one-row GEMM variants against cuBLASLt). The .debs come from tools/fetch_device_debs.sh,
# run here first. --nccl: the NCCL data plane's GPU tests, then the cross-backend ones. MESH_MPS=1 with --mesh or --concurrency: the workers share the GPU through CUDA MPS.
set -eo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/out}"
mkdir -p "$out" /tmp/deps
for f in .devdata/debs/*.deb; do dpkg -x "$f" /tmp/deps; done
export CMAKE_PREFIX_PATH=/tmp/deps/usr
lib=/tmp/deps/usr/lib/x86_64-linux-gnu
export LD_LIBRARY_PATH="$lib:$lib/openblas-pthread:${LD_LIBRARY_PATH:-}"
export NCCL_NVLS_ENABLE=0
ck=/tmp/llama-3.1-8b-random
make_checkpoint() {
  [ -f "$ck/model.safetensors.index.json" ] && return 0
  echo "== random Llama-3.1-8B checkpoint"
  python3 tools/make_random_checkpoint.py --config llama-3.1-8b --out "$ck" --seed 1 \
    $([ -f build/testdata/llama3_1/tokenizer.json ] && echo --tokenizer-from build/testdata/llama3_1) 2>&1 | tail -3
}
# The whole product (CAF, Cap'n Proto, UCX, cpp-httplib from the unpacked .debs) into
# /tmp/build-mesh: the given targets.
build_mesh() {
  # pkg-config (UCX, cpp-httplib) reads the unpacked .pc files; their /usr paths live under /tmp/deps.
  export PATH="/tmp/deps/usr/bin:$PATH" PKG_CONFIG_SYSROOT_DIR=/tmp/deps
  export PKG_CONFIG_PATH="$lib/pkgconfig:/tmp/deps/usr/share/pkgconfig" PKG_CONFIG_LIBDIR="$lib/pkgconfig"
  cmake -S . -B /tmp/build-mesh -G Ninja -DSTARMESH_CUDA=ON -DCMAKE_BUILD_TYPE=Release -DSTARMESH_TESTS="${MESH_TESTS:-OFF}" \
    -DSTARMESH_CAPNP_PREFIX=/tmp/deps/usr \
    -DCMAKE_CUDA_ARCHITECTURES=90a > "$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
  cmake --build /tmp/build-mesh -j16 --target "$@" > "$out/build.log" 2>&1 \
    || { grep -E "error|FAILED" "$out/build.log" | head -30; exit 1; }
}
# MESH_MPS=1: the worker processes share the GPU through CUDA MPS (nvidia-cuda-mps-control, a
# daemon of this user, its pipes under /tmp, told to quit at exit; the GPU's settings stay as
# they are): their kernels run side by side instead of the GPU switching between the
# processes' contexts, as it does several times a layer when 4 workers share it.
start_mps() {
  command -v nvidia-cuda-mps-control > /dev/null || { echo "== no nvidia-cuda-mps-control on this machine"; exit 1; }
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
  mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
  nvidia-cuda-mps-control -d
  trap 'echo quit | nvidia-cuda-mps-control' EXIT
  echo "== CUDA MPS daemon started"
}
if [ "${1:-}" = "--concurrency" ]; then
  # Many users at once (bench/concurrency_bench): router + W workers on the GPU, C requests of
  # 8K contexts and 128 output tokens at once; then HF's batched generate on the same batches.
  # CONC_RUNS: space-separated WORKERS:LEVELS:MODE[:FLAGS] runs (MODE fresh: each request sends
  # its context; kept: questions over contexts encoded first; FLAGS: comma-separated worker
  # flags of that run alone, named in its rows), e.g. "1:1,4,16:kept 1:1,4,16:kept:--batch-prefill=0".
  # CONC_WORKER_ARGS: flags every worker gets (e.g. --no-cuda-kv-pages).
  build_mesh starmesh concurrency_bench
  [ "${MESH_MPS:-0}" = 1 ] && start_mps
  worker_args=()
  for a in ${CONC_WORKER_ARGS:-}; do worker_args+=("--worker-arg=$a"); done
  make_checkpoint
  runs="${CONC_RUNS:-1:1,4,16,64:fresh 4:1,4,16,64:fresh}"
  jsons=() all_levels=()
  for run in $runs; do
    IFS=: read -r w levels mode flags <<< "$run"
    all_levels+=("$levels")
    run_args=()
    for a in ${flags//,/ }; do run_args+=("--worker-arg=$a"); done
    variant="${flags//,/ }$([ "${MESH_MPS:-0}" = 1 ] && echo " MPS" || true)"
    [ -n "${variant# }" ] && run_args+=("--variant=${variant# }")
    name="$w-$mode${variant:+-$(printf %s "${variant# }" | tr A-Z a-z | tr -c a-z0-9 _)}"  # files of this run
    j="/tmp/concurrency-$name-${levels//,/_}.json"
    echo "== concurrency through the mesh: $w worker(s), concurrent $levels, $mode contexts"
    /tmp/build-mesh/bin/concurrency_bench --program /tmp/build-mesh/bin/starmesh --model "$ck" --device cuda \
      --workers "$w" --concurrent "$levels" --context "${CONC_CONTEXT:-8192}" --max-new 128 \
      $([ "$mode" = kept ] && echo --kept) "${worker_args[@]}" "${run_args[@]}" \
      --log-dir "/tmp/concurrency-logs/$name" \
      --json "$j" 2>&1 | tee -a "$out/concurrency.log" || echo "== that run failed (above); the next one goes on"
    [ -f "$j" ] && jsons+=("$j")
  done
  # The processes' logs, one file (only a few files come back from the machine).
  tar czf "$out/concurrency-logs.tgz" -C /tmp concurrency-logs 2>/dev/null || true
  hf=""
  if [ "${CONC_HF:-1}" != 0 ]; then
    hf_levels=$(tr ' ,' '\n\n' <<< "${all_levels[*]}" | sort -nu | paste -sd,)
    echo "== HF transformers, batched generate: $hf_levels"
    python3 bench/hf_batched_anchor.py --model "$ck" --batches "$hf_levels" --context "${CONC_CONTEXT:-8192}" \
      --new-tokens 128 --json "$out/hf_batched.json" 2>&1 | grep -v "Loading weights" | tail -8
    hf="$out/hf_batched.json"
  fi
  # Named by the card that ran it (h200, h100): the results of one are not the other's.
  card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | grep -oE 'H[0-9]+' | tr 'H' 'h')
  [ ${#jsons[@]} -gt 0 ] && python3 bench/concurrency_report.py "$(IFS=,; echo "${jsons[*]}")" $hf \
    --date "$(date -u +%F)" --json "$out/concurrency-${card:-gpu}.json" --svg "$out/concurrency-${card:-gpu}.svg"
  exit 0
fi
if [ "${1:-}" = "--nccl" ]; then
  # The NCCL data plane's GPU tests (test_comm, test_runtime: the cases named nccl*, split*,
  # device-memory*): the transport and the plane as groups of one, phase 2's device-memory
  # path in one process; the cases that need 2 GPUs run where there are 2. Then the
  # cross-backend tests, from the same build.
  MESH_TESTS=ON build_mesh test_comm test_runtime test_backend_ops
  echo "== NCCL transport and data plane on $(nvidia-smi -L | wc -l) GPU(s)"
  for t in test_comm test_runtime; do
    /tmp/build-mesh/bin/$t -tc="nccl*,split*,device-memory*" 2>&1 | tee "$out/$t-nccl.log" \
      | grep -E "ERROR|SKIPPED|test cases|assertions|Status" || true
  done
  echo "== cross-backend tests"
  /tmp/build-mesh/bin/test_backend_ops 2>&1 | tee "$out/test_backend_ops.log" \
    | grep -E "MESSAGE|ERROR|test cases|assertions|Status|relative" || true
  exit 0
fi
if [ "${1:-}" = "--mesh" ]; then
  build_mesh starmesh
  make_checkpoint
  tag=$([ "${MESH_MPS:-0}" = 1 ] && echo -mps || true)
  [ -n "$tag" ] && start_mps
  echo "== the mesh: router + 4 workers on the GPU${tag:+ (MPS)}, contexts ${E2E_CONTEXTS:-32768,131072}"
  bash bench/mesh_e2e.sh /tmp/build-mesh/bin/starmesh "$ck" "${E2E_CONTEXTS:-32768,131072}" 4 "$out/mesh-logs$tag" \
    | tee "$out/mesh$tag.jsonl"
  exit 0
fi
cmake -S . -B /tmp/build -G Ninja -DSTARMESH_CORE_ONLY=ON -DSTARMESH_CUDA=ON -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CUDA_ARCHITECTURES=90a > "$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
targets=(test_backend_ops attention_bench test_backend test_attention)
[ "${1:-}" = "--e2e" ] && targets+=(decode_bench starmesh)
[ "${1:-}" = "--gemv" ] && targets=(gemv_bench test_backend_ops)
[ "${1:-}" = "--batched" ] && targets=(decode_bench)
cmake --build /tmp/build -j16 --target "${targets[@]}" > "$out/build.log" 2>&1 \
  || { grep -E "error|FAILED" "$out/build.log" | head -30; exit 1; }
if [ "${1:-}" = "--gemv" ]; then
  echo "== one-row GEMM: the gemv kernel's tests, then its variants against cuBLASLt"
  /tmp/build/bin/test_backend_ops -tc="*one-row*" 2>&1 | grep -E "ERROR|test cases|assertions|Status" || true
  /tmp/build/bin/gemv_bench --json "$out/gemv-h200.json"
  exit 0
fi
if [ "${1:-}" = "--batched" ]; then
  # Decode steps of B requests at once in one process (QueryHost::step_batch, as a worker's
  # DecodeBatcher runs them): step time, the bytes floor, and every op's GPU time; and a query
  # prefill of BATCH_PREFILL tokens (32) inside each batch against it apart.
  make_checkpoint
  echo "== decode_bench: batched decode, contexts ${BATCHED_CONTEXTS:-8192}, batches ${BATCHES:-1,4,16,32}"
  /tmp/build/bin/decode_bench --model "$ck" --contexts "${BATCHED_CONTEXTS:-8192}" --modes global \
    --batches "${BATCHES:-1,4,16,32}" --batch-prefill "${BATCH_PREFILL:-32}" --steps 32 --profiled-steps 4 \
    --json "$out/decode_batched.json" 2>&1 \
    | tee "$out/decode_batched.log"
  exit 0
fi
if [ "${1:-}" = "--e2e" ]; then
  make_checkpoint
  contexts="${E2E_CONTEXTS:-32768,131072}"
  echo "== cross-backend tests"
  /tmp/build/bin/test_backend_ops 2>&1 | tee "$out/test_backend_ops.log" | grep -E "ERROR|test cases|assertions|Status" || true
  echo "== decode_bench: ours, global and star (4 hosts), contexts $contexts"
  /tmp/build/bin/decode_bench --model "$ck" --contexts "$contexts" --modes global,star --hosts 4 ${DECODE_FLAGS:-} \
    --json "$out/decode_bench.json" 2>&1 | tee "$out/decode_bench.log"
  [ "${E2E_HF:-1}" = 0 ] && exit 0
  echo "== HF transformers on the same checkpoint"
  python3 bench/hf_anchor_e2e.py --model "$ck" --contexts "$contexts" --decode-tokens 64 --json "$out/hf.json" 2>&1 \
    | grep -v "Loading weights" | tail -8
  python3 bench/e2e_report.py "$out/decode_bench.json" "$out/hf.json" --date "$(date -u +%F)" \
    --json "$out/e2e-h200.json" --svg "$out/e2e-h200.svg"
  exit 0
fi
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
