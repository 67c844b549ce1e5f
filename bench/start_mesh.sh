# Sourced by the bench scripts: start_mesh BIN MODEL LOG_DIR TMP_DIR WORKERS "ROUTER FLAGS" "WORKER FLAGS"
# starts a router (mesh and API ports on 127.0.0.1, written to TMP_DIR) and WORKERS workers in
# the background, waits until every worker has registered, and sets $port (the router's mesh
# port) and $api (its API port). The caller's EXIT trap stops them. MESH_METRICS=1: every worker
# serves /metrics on 127.0.0.1, its port in TMP_DIR/metrics-I.port.
start_mesh() {
  local bin=$1 model=$2 logs=$3 dir=$4 workers=$5 router_flags=$6 worker_flags=$7 n=0
  # shellcheck disable=SC2086 # the flag strings are word lists
  "$bin" router --listen 127.0.0.1:0 --port-file "$dir/router.port" --api-listen 127.0.0.1:0 \
    --api-port-file "$dir/api.port" --model "$model" $router_flags > "$logs/router.log" 2>&1 &
  for _ in $(seq 600); do [ -s "$dir/router.port" ] && [ -s "$dir/api.port" ] && break; sleep 0.1; done
  port=$(cat "$dir/router.port") api=$(cat "$dir/api.port")
  for i in $(seq "$workers"); do
    local metrics=()  # MESH_METRICS=1: each worker's /metrics port in TMP_DIR/metrics-I.port
    [ "${MESH_METRICS:-0}" = 1 ] && metrics=(--metrics-listen 127.0.0.1:0 --metrics-port-file "$dir/metrics-$i.port")
    # shellcheck disable=SC2086
    "$bin" worker --router "127.0.0.1:$port" --listen 127.0.0.1:0 --model "$model" $worker_flags "${metrics[@]}" \
      > "$logs/worker-$i.log" 2>&1 &
  done
  for _ in $(seq 600); do
    n=$("$bin" client info --connect "127.0.0.1:$api" 2>/dev/null | sed -n 's/.*workers: *\([0-9]*\).*/\1/p' | head -1)
    [ "${n:-0}" -ge "$workers" ] && return 0
    sleep 0.5
  done
  echo "only ${n:-0} of $workers workers registered" >&2
  tail -5 "$logs"/*.log >&2
  return 1
}
