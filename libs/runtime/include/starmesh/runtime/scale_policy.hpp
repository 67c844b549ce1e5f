#pragma once
// How many workers the mesh should have: a pure function of what the router sees, exported as
// the metric `starmesh_desired_workers` for an autoscaler (KEDA's Prometheus trigger or an
// HPA on external metrics, deploy/k8s/autoscaling) and tested without actors.
//
// The rule (docs/SCALING.md):
//   kv_demand   = KV reserved by running requests + KV of every queued request
//                 + kept_weight x KV of the kept contexts
//   by_kv       = ceil(kv_demand / (capacity per worker x target_kv_utilisation))
//   by_requests = ceil((running + queued requests) / target_requests_per_worker)
//   desired     = clamp(max(by_kv, by_requests, 1 if anything waits), min_workers, max_workers)
// Capacity per worker is the mean over the registered workers (the configured
// worker_capacity when none is registered). A request waiting in the queue always asks for
// at least one worker more than there are unless its KV fits in what is free: it waits for
// capacity that scale-up brings. Scale-down is not damped here: the autoscaler's
// stabilization window does that, and the drain (SIGTERM) finishes running requests.
#include <cstdint>
#include <string>
#include <vector>

namespace starmesh {

struct ScaleOptions {
  double target_kv_utilisation = 0.7;     // (0, 1]: the share of KV that running work should fill
  double target_requests_per_worker = 4;  // > 0: requests a worker serves at once at the target
  double kept_weight = 0.5;               // [0, 1]: how much kept contexts count (they can be evicted)
  int min_workers = 1, max_workers = 64;  // the answer's bounds
  int64_t worker_capacity = 0;            // KV tokens of a worker, used while none is registered
};

struct ScaleInputs {
  int workers = 0;              // registered and not draining
  int64_t kv_capacity = 0;      // their KV tokens in all
  int64_t kv_reserved = 0;      // held by running requests (phase 1, phase 2 and decode)
  int64_t kv_kept = 0;          // held by kept contexts
  int64_t queued_requests = 0;  // waiting for capacity
  int64_t queued_tokens = 0;    // the KV they ask for (context + query + new tokens)
  int64_t running_requests = 0;
};

struct ScaleDecision {
  int desired = 0;
  int by_kv = 0, by_requests = 0;  // the two terms, for the metrics and the logs
  double kv_demand = 0;            // tokens, as in the rule
  double worker_capacity = 0;      // tokens per worker used
  std::string reason;              // one line: which term decided, or the bound
};

ScaleDecision desired_workers(const ScaleInputs& in, const ScaleOptions& options);

// Checks options from flags; an empty string when they are usable, else what is wrong.
std::string check_scale_options(const ScaleOptions& options);

}  // namespace starmesh
