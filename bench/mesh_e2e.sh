#!/usr/bin/env bash
# The mesh end to end on one GPU machine: a router and W worker processes (all on cuda:0), then
# per context length one star request through the public API (`starmesh client`, blocks of
# context / W), which reports the time to its first token and its decode speed; the server's
# summary gives phase 1 (the router's wall clock, and the slowest host's own time). Prints one
# JSON object per length, with the mean phase-2 exchange (query host) and shard partial (shard
# hosts) a layer, from the workers' /metrics; the processes' logs and metrics go to LOG_DIR.
# Usage: bench/mesh_e2e.sh STARMESH_BIN MODEL_DIR CONTEXTS WORKERS LOG_DIR [MAX_TOKENS]
# MESH_WORKER_FLAGS: flags every worker gets besides (e.g. --no-cuda-staging, to compare).
set -euo pipefail
bin=$1 model=$2 contexts=$3 workers=$4 logs=$5 max_tokens=${6:-64}
mkdir -p "$logs"
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"' EXIT
longest=$(echo "$contexts" | tr , '\n' | sort -n | tail -1)
capacity=$((longest / workers + max_tokens + 1024))  # a shard, and on the query host the query and output

. "$(dirname "$0")/start_mesh.sh"
MESH_METRICS=1 start_mesh "$bin" "$model" "$logs" "$dir" "$workers" "--phase1-timeout 900 --step-timeout 120" \
  "--device ${DEVICE:-cuda} --capacity $capacity ${MESH_WORKER_FLAGS:-}"

for len in $(echo "$contexts" | tr , ' '); do
  python3 -c "import json, random; v = min(128000, json.load(open('$model/config.json'))['vocab_size']); \
r = random.Random($len); print(','.join(str(r.randrange(v)) for _ in range($len)))" > "$dir/ids.txt"
  "$bin" client generate --connect "127.0.0.1:$api" --context-ids-file "$dir/ids.txt" --prompt-ids 791,432,30 \
    --mode star --block-size $((len / workers)) --max-tokens "$max_tokens" > "$dir/out.txt" 2> "$dir/err.txt" \
    || { cat "$dir/err.txt" >&2; exit 1; }
  cp "$dir/err.txt" "$logs/client-$len.txt"
  gpu=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1 || echo 0)
  python3 - "$dir/err.txt" "$len" "$workers" "$gpu" "$dir" "$logs" <<'PY'
import glob, json, re, sys, urllib.request
text = open(sys.argv[1]).read()
num = lambda pat: float(re.search(pat, text).group(1))
# Where a token's time goes, from the workers' metrics (this length's share: the change since
# the last length): the query host's exchange (Q out until every partial is in) and the shard
# hosts' partials (Q in until the answer is ready), mean seconds a layer.
tmp, logs = sys.argv[5], sys.argv[6]
state_file = tmp + "/metrics-state.json"
try:
    before = json.load(open(state_file))
except OSError:
    before = {}
now, means = {}, {}
for port_file in sorted(glob.glob(tmp + "/metrics-*.port")):
    worker = port_file.rsplit("-", 1)[1].split(".")[0]
    body = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % open(port_file).read().strip(), timeout=10).read().decode()
    open("%s/metrics-%s-worker-%s.txt" % (logs, sys.argv[2], worker), "w").write(
        "".join(l + "\n" for l in body.splitlines() if re.match(r"starmesh_worker_(phase2|shard|decode)", l)))
    for l in body.splitlines():
        m = re.match(r"(starmesh_worker_(?:phase2_exchange|shard_partial)_seconds_(?:sum|count)) (\S+)$", l)
        if m:
            now[m.group(1)] = now.get(m.group(1), 0.0) + float(m.group(2))
json.dump(now, open(state_file, "w"))
for name in ("phase2_exchange", "shard_partial"):
    s = now.get("starmesh_worker_%s_seconds_sum" % name, 0) - before.get("starmesh_worker_%s_seconds_sum" % name, 0)
    c = now.get("starmesh_worker_%s_seconds_count" % name, 0) - before.get("starmesh_worker_%s_seconds_count" % name, 0)
    means[name] = s / c if c else None
print(json.dumps({
    "context_tokens": int(sys.argv[2]), "mode": "mesh", "workers": int(sys.argv[3]),
    "ttft_s": num(r"first token after ([\d.]+) ms") / 1e3,
    "decode_tok_s": num(r"\(([\d.]+) tok/s after the first\)"),
    "phase1_s": num(r"phase 1 ([\d.]+) ms") / 1e3,
    "phase1_max_host_s": num(r"slowest host ([\d.]+) ms") / 1e3,
    "gpu_memory_used_bytes": int(float(sys.argv[4]) * 2**20),
    "phase2_exchange_mean_s": means["phase2_exchange"],
    "shard_partial_mean_s": means["shard_partial"],
}))
PY
done
