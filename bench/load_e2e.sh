#!/usr/bin/env bash
# The load proof on one machine: a router and W CPU worker processes (1 compute thread each,
# UCX shared memory), then bench/load_bench's C clients through the public API for S seconds.
# Prints load_bench's JSON (latency p50/p99, throughput, failures by ErrorCode) and exits
# non-zero when a request failed with anything but a refusal for load (`overloaded`).
# Usage: bench/load_e2e.sh BUILD_DIR MODEL_DIR LOG_DIR [CLIENTS] [SECONDS] [WORKERS] [CONTEXT] [MAX_TOKENS]
#   e.g. bench/load_e2e.sh build models/starmesh-tiny /tmp/load 32 120 4 512 16
set -euo pipefail
build=$1 model=$2 logs=$3 clients=${4:-32} seconds=${5:-120} workers=${6:-4} context=${7:-512} max_tokens=${8:-16}
bin=$build/bin/starmesh
mkdir -p "$logs"
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"' EXIT
# Room for every client's request at once on the mesh (a shard each, the query and output on
# the query host), so that the queue, not refusals, absorbs the bursts.
capacity=$(((clients * (context + max_tokens + 64)) / workers + 1024))

"$bin" router --listen 127.0.0.1:0 --port-file "$dir/router.port" --api-listen 127.0.0.1:0 \
  --api-port-file "$dir/api.port" --model "$model" --block-size 256 --api-max-connections $((clients + 8)) \
  > "$logs/router.log" 2>&1 &
for _ in $(seq 600); do [ -s "$dir/router.port" ] && [ -s "$dir/api.port" ] && break; sleep 0.1; done
port=$(cat "$dir/router.port") api=$(cat "$dir/api.port")
for i in $(seq "$workers"); do
  "$bin" worker --router "127.0.0.1:$port" --listen 127.0.0.1:0 --model "$model" --device cpu --threads 1 \
    --transport ucx-shm --capacity "$capacity" > "$logs/worker-$i.log" 2>&1 &
done
for _ in $(seq 600); do
  n=$("$bin" client info --connect "127.0.0.1:$api" 2>/dev/null | sed -n 's/.*workers: *\([0-9]*\).*/\1/p' | head -1)
  [ "${n:-0}" -ge "$workers" ] && break
  sleep 0.5
done
[ "${n:-0}" -ge "$workers" ] || { echo "only ${n:-0} of $workers workers registered" >&2; tail -5 "$logs"/*.log >&2; exit 1; }
"$build/bin/load_bench" --connect "127.0.0.1:$api" --clients "$clients" --seconds "$seconds" --context "$context" \
  --max-tokens "$max_tokens" --block 256
