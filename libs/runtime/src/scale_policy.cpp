#include "starmesh/runtime/scale_policy.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>

namespace starmesh {

namespace {

int ceil_count(double x) {
  if (!(x > 0)) return 0;
  return int(std::min(std::ceil(x - 1e-9), double(1 << 20)));  // bounded: the inputs are ours, but be safe
}

}  // namespace

ScaleDecision desired_workers(const ScaleInputs& in, const ScaleOptions& o) {
  ScaleDecision d;
  d.worker_capacity = in.workers > 0 && in.kv_capacity > 0 ? double(in.kv_capacity) / in.workers
                                                           : double(std::max<int64_t>(o.worker_capacity, 0));
  d.kv_demand = double(std::max<int64_t>(in.kv_reserved, 0)) + double(std::max<int64_t>(in.queued_tokens, 0)) +
                o.kept_weight * double(std::max<int64_t>(in.kv_kept, 0));
  const double usable = d.worker_capacity * o.target_kv_utilisation;
  d.by_kv = usable > 0 ? ceil_count(d.kv_demand / usable) : 0;
  const int64_t requests = std::max<int64_t>(in.running_requests, 0) + std::max<int64_t>(in.queued_requests, 0);
  d.by_requests = ceil_count(double(requests) / o.target_requests_per_worker);
  d.desired = std::max(d.by_kv, d.by_requests);
  d.reason = d.by_kv >= d.by_requests
                 ? fmt::format("KV demand {:.0f} tokens at {:.0f} per worker x {:.2f}", d.kv_demand, d.worker_capacity,
                               o.target_kv_utilisation)
                 : fmt::format("{} requests at {:g} per worker", requests, o.target_requests_per_worker);
  // Requests wait only when what is free cannot hold them: ask for one more worker than now.
  const int64_t free_kv = std::max<int64_t>(in.kv_capacity - in.kv_reserved - in.kv_kept, 0);
  if (in.queued_requests > 0 && in.queued_tokens > free_kv && d.desired <= in.workers) {
    d.desired = in.workers + 1;
    d.reason =
        fmt::format("{} requests wait for {} tokens of KV, {} free", in.queued_requests, in.queued_tokens, free_kv);
  }
  if (d.desired < o.min_workers) {
    d.desired = o.min_workers;
    d.reason += fmt::format(" (raised to the minimum, {})", o.min_workers);
  } else if (d.desired > o.max_workers) {
    d.desired = o.max_workers;
    d.reason += fmt::format(" (capped at the maximum, {})", o.max_workers);
  }
  return d;
}

std::string check_scale_options(const ScaleOptions& o) {
  if (!(o.target_kv_utilisation > 0 && o.target_kv_utilisation <= 1))
    return fmt::format("the target KV utilisation must be in (0, 1], got {}", o.target_kv_utilisation);
  if (!(o.target_requests_per_worker > 0 && o.target_requests_per_worker <= 1e6))
    return fmt::format("the target requests per worker must be in (0, 1e6], got {}", o.target_requests_per_worker);
  if (!(o.kept_weight >= 0 && o.kept_weight <= 1))
    return fmt::format("the weight of kept contexts must be in [0, 1], got {}", o.kept_weight);
  if (o.min_workers < 0 || o.max_workers < 1 || o.min_workers > o.max_workers || o.max_workers > 4096)
    return fmt::format("want 0 <= min workers ({}) <= max workers ({}) <= 4096", o.min_workers, o.max_workers);
  if (o.worker_capacity < 0) return fmt::format("the worker capacity must be >= 0, got {}", o.worker_capacity);
  return {};
}

}  // namespace starmesh
