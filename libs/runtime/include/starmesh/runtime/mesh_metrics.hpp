#pragma once
// What the router and the workers tell operators (scraped at /metrics, see
// libs/metrics): each owns a registry with its metrics looked up once, so the hot paths only
// touch atomics. deploy/grafana and deploy/prometheus use these names; tests check that
// every name they use is exported.
#include <array>
#include <chrono>
#include <iterator>

#include "starmesh/core/error_code.hpp"
#include "starmesh/metrics/registry.hpp"

namespace starmesh {

struct RouterMetrics {
  RouterMetrics();
  metrics::Registry registry;
  // starmesh_requests_total by outcome: "ok", "cancelled", or the error's code
  // ("invalid_argument", "refused", "overloaded", "timeout", "unavailable", ...).
  metrics::Counter &requests_ok, &requests_cancelled;
  std::array<metrics::Counter *, std::size(kAllErrorCodes)> requests_failed{};  // by ErrorCode
  // A code from a peer may lie outside the set: it counts as internal.
  metrics::Counter &failed(ErrorCode code) {
    const size_t i = size_t(code) < requests_failed.size() ? size_t(code) : size_t(ErrorCode::internal);
    return *requests_failed[i];
  }
  metrics::Gauge &in_flight, &queued;
  metrics::Histogram &queue_wait_seconds;
  metrics::Histogram &request_seconds, &first_token_seconds, &phase1_seconds, &phase1_slowest_host_seconds;
  metrics::Counter &context_tokens, &generated_tokens;
  metrics::Gauge &workers, &kv_capacity, &kv_reserved, &kept_contexts;
  // The scale signal (scale_policy.hpp) and the inputs it does not share with the gauges above.
  metrics::Gauge &desired_workers, &desired_workers_by_kv, &desired_workers_by_requests;
  metrics::Gauge &kv_demand, &queued_tokens, &kept_tokens;
};

struct WorkerMetrics {
  explicit WorkerMetrics(int64_t kv_capacity_tokens);
  metrics::Registry registry;
  metrics::Counter &encoded, &refused, &phase1_failed;
  metrics::Counter &encoded_tokens;
  metrics::Histogram &phase1_seconds;
  metrics::Gauge &kv_capacity, &kv_reserved, &requests;
};

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace starmesh
