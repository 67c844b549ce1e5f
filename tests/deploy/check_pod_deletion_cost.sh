#!/usr/bin/env bash
# deploy/k8s/autoscaling/pod-deletion-cost.sh against a fake router /metrics and a fake
# kubectl (both on PATH): it annotates each worker pod with its series' cost, matched by IP,
# skips pods whose annotation is already right and pods the router does not know, and ignores
# other metrics.
set -euo pipefail
script=${1:?usage: check_pod_deletion_cost.sh path/to/pod-deletion-cost.sh}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat >"$dir/curl" <<'FAKE'
#!/usr/bin/env bash
cat <<'METRICS'
# HELP starmesh_worker_removal_cost What removing the worker would cost
# TYPE starmesh_worker_removal_cost gauge
starmesh_worker_removal_cost{endpoint="10.0.0.1:7401",worker="1"} 1200
starmesh_worker_removal_cost{endpoint="10.0.0.2:7401",worker="2"} -1
starmesh_worker_removal_cost{endpoint="10.0.0.3:7401",worker="3"} 0
starmesh_worker_removal_cost{endpoint="10.0.0.5:7401",worker="5"} 2147483647
starmesh_kept_tokens 1200
METRICS
FAKE
cat >"$dir/kubectl" <<FAKE
#!/usr/bin/env bash
if [[ "\$*" == *" get pods "* ]]; then
  printf '10.0.0.1 worker-a 5\n10.0.0.2 worker-b \n10.0.0.3 worker-c 0\n10.0.0.4 worker-d \n10.0.0.5 worker-e \n'
else
  echo "\$*" >>"$dir/calls"
fi
FAKE
chmod +x "$dir/curl" "$dir/kubectl"
PATH="$dir:$PATH" bash "$script" http://router:9100/metrics ns >"$dir/out"
expected='-n ns annotate pod worker-a --overwrite controller.kubernetes.io/pod-deletion-cost=1200
-n ns annotate pod worker-b --overwrite controller.kubernetes.io/pod-deletion-cost=-1
-n ns annotate pod worker-e --overwrite controller.kubernetes.io/pod-deletion-cost=2147483647'
got=$(cat "$dir/calls")
if [[ "$got" != "$expected" ]]; then
  printf 'annotations differ.\nexpected:\n%s\ngot:\n%s\n' "$expected" "$got"
  exit 1
fi
grep -q "worker-a (10.0.0.1): controller.kubernetes.io/pod-deletion-cost=1200" "$dir/out"
echo "ok: 3 pods annotated, 1 already right, 1 unknown to the router"
