#!/usr/bin/env bash
# Copies the router's starmesh_worker_removal_cost onto each worker pod's
# controller.kubernetes.io/pod-deletion-cost annotation, so that when the autoscaler lowers the
# worker Deployment's replicas, its ReplicaSet deletes the cheapest worker first (a draining
# one, then an idle one, then the one holding the least kept context and running work).
# docs/SCALING.md says what the cost counts and where to run this.
#
# usage: pod-deletion-cost.sh METRICS_URL [NAMESPACE] [SELECTOR]
#   METRICS_URL  the router's /metrics, e.g. http://starmesh-router:9100/metrics
#   NAMESPACE    the workers' namespace (default: starmesh)
#   SELECTOR     the worker pods' label selector (default: app.kubernetes.io/name=starmesh-worker)
# Needs curl and kubectl with get/list/patch on pods in NAMESPACE. Run it every 15-30 s; one
# run annotates only the pods whose cost changed. A pod is matched to its series by its IP:
# the series' endpoint label is the address the worker registered (--listen=$(POD_IP):PORT).
set -euo pipefail

url=${1:?usage: pod-deletion-cost.sh METRICS_URL [NAMESPACE] [SELECTOR]}
namespace=${2:-starmesh}
selector=${3:-app.kubernetes.io/name=starmesh-worker}
annotation=controller.kubernetes.io/pod-deletion-cost

metrics=$(curl -fsS --max-time 10 "$url")

# "IP COST" per registered worker, from lines such as
# starmesh_worker_removal_cost{endpoint="10.1.2.3:7401",worker="4"} 1200
costs=$(printf '%s\n' "$metrics" | awk '
  /^starmesh_worker_removal_cost\{/ {
    if (!match($0, /endpoint="[^"]*"/)) next
    endpoint = substr($0, RSTART + 10, RLENGTH - 11)
    sub(/:[0-9]+$/, "", endpoint)            # IPv4 host:port, or [IPv6]:port
    gsub(/^\[|\]$/, "", endpoint)
    value = $NF
    if (value !~ /^-?[0-9]+(\.[0-9]+)?(e\+?[0-9]+)?$/) next
    printf "%s %d\n", endpoint, value + 0
  }')

# "IP NAME CURRENT" per worker pod (CURRENT: its annotation now, or "-").
pods=$(kubectl -n "$namespace" get pods -l "$selector" -o \
  jsonpath='{range .items[*]}{.status.podIP}{" "}{.metadata.name}{" "}{.metadata.annotations.controller\.kubernetes\.io/pod-deletion-cost}{"\n"}{end}')

while read -r ip name current; do
  [[ -n "$ip" && -n "$name" ]] || continue
  cost=$(awk -v ip="$ip" '$1 == ip { print $2; exit }' <<<"$costs")
  # A pod the router does not know (starting, or not registered) holds nothing: it is left
  # unannotated (cost 0, Kubernetes' default).
  [[ -n "$cost" ]] || continue
  [[ "$cost" == "${current:-}" ]] && continue
  kubectl -n "$namespace" annotate pod "$name" --overwrite "$annotation=$cost" >/dev/null
  echo "$name ($ip): $annotation=$cost"
done <<<"$pods"
