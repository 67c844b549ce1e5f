#!/usr/bin/env bash
# bench/mesh_e2e.sh on the CPU (the tiny model, a router and 2 workers): one star request per
# length, each reported with every field, the phase-2 means from the workers' metrics included
# (each length's own: the second is a difference of the scraped totals).
# Usage: check_mesh_e2e.sh STARMESH_BIN MODEL_DIR SOURCE_DIR
set -euo pipefail
bin=$1 model=$2 src=$3
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
out=$(DEVICE=cpu bash "$src/bench/mesh_e2e.sh" "$bin" "$model" 512,768 2 "$logs" 8)
echo "$out"
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(line) for line in sys.argv[1].splitlines() if line.startswith("{")]
assert [r["context_tokens"] for r in rows] == [512, 768], rows
for r in rows:
    for key in ("ttft_s", "decode_tok_s", "phase1_s", "phase1_max_host_s", "phase2_exchange_mean_s",
                "shard_partial_mean_s"):
        assert isinstance(r[key], float) and r[key] > 0, (key, r)
    # The query host's exchange waits for the shard host's partial, and more.
    assert r["shard_partial_mean_s"] < r["phase2_exchange_mean_s"], r
    assert r["phase1_max_host_s"] <= r["phase1_s"], r
print("ok:", len(rows), "rows")
PY
for len in 512 768; do
  for w in 1 2; do
    grep -q '^starmesh_worker_shard_partial_seconds_count' "$logs/metrics-$len-worker-$w.txt"
  done
done
