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

. "$(dirname "$0")/start_mesh.sh"
start_mesh "$bin" "$model" "$logs" "$dir" "$workers" "--block-size 256 --api-max-connections $((clients + 8))" \
  "--device cpu --threads 1 --transport ucx-shm --capacity $capacity"
"$build/bin/load_bench" --connect "127.0.0.1:$api" --clients "$clients" --seconds "$seconds" --context "$context" \
  --max-tokens "$max_tokens" --block 256
