#pragma once
// What the router and the workers tell operators (scraped at /metrics, see libs/metrics and
// docs/METRICS.md): each owns a registry with its metrics looked up once, so the hot paths only
// touch atomics. deploy/k8s/monitoring uses these names; tests check that every name it uses
// is exported and that every dashboard query has data on a live mesh.
#include <array>
#include <chrono>
#include <iterator>
#include <string>
#include <string_view>

#include "starmesh/core/error_code.hpp"
#include "starmesh/core/expected.hpp"
#include "starmesh/metrics/registry.hpp"
#include "starmesh/service/request.hpp"

namespace starmesh {

// What the router times of one request: its driver keeps this, the metrics read it.
struct RequestTimes {
  std::chrono::steady_clock::time_point arrived = std::chrono::steady_clock::now(), first_token, last_token;
  int64_t tokens = 0;                 // streamed to the client
  metrics::PendingObservations gaps;  // between tokens; added only if the request is served
};

// starmesh_requests_total's outcome for a request that failed with `code`: "cancelled",
// "refused" (refused, overloaded), "invalid" (the client's mistake: invalid_argument,
// not_found, unauthenticated), "timeout" or "failed" (internal, unavailable). Served: "ok".
std::string_view request_outcome(ErrorCode code);

struct RouterMetrics {
  RouterMetrics();
  metrics::Registry registry;
  // starmesh_requests_total{outcome, reason}: ok by stop reason (eos, max_tokens); the others
  // by error code (request_outcome), a cancel by the client as cancelled/cancelled.
  std::array<metrics::Counter *, 2> served;                                   // eos, max_tokens
  std::array<metrics::Counter *, std::size(kAllErrorCodes)> requests_failed;  // by ErrorCode
  // A code from a peer may lie outside the set: it counts as internal.
  metrics::Counter &failed(ErrorCode code) {
    const size_t i = size_t(code) < requests_failed.size() ? size_t(code) : size_t(ErrorCode::internal);
    return *requests_failed[i];
  }
  metrics::Gauge &in_flight, &queued;
  metrics::Histogram &queue_wait_seconds;
  // Latencies of served requests only (outcome ok), observed when they end.
  metrics::Histogram &request_seconds, &first_token_seconds, &inter_token_latency_seconds,
      &time_per_output_token_seconds, &phase1_seconds, &phase1_slowest_host_seconds, &phase2_prefill_seconds;
  metrics::Counter &context_tokens, &query_tokens, &generated_tokens;
  metrics::Histogram &request_context_tokens, &request_generated_tokens;
  metrics::Counter &kept_context_hits, &kept_context_misses;
  metrics::Gauge &workers, &kv_capacity, &kv_reserved, &kept_contexts;
  // The scale signal (scale_policy.hpp) and the inputs it does not share with the gauges above.
  metrics::Gauge &desired_workers, &desired_workers_by_kv, &desired_workers_by_requests;
  metrics::Gauge &kv_demand, &queued_tokens, &kept_tokens;
  // starmesh_worker_removal_cost{worker, endpoint}, one child per registered worker.
  metrics::Family<metrics::Gauge> &worker_removal_cost;

  // The request driver's calls: `n` tokens reached the client; the request ended (a question
  // over a kept context: its context was encoded, and counted, before).
  void tokens_streamed(RequestTimes &times, size_t n);
  void request_finished(const RequestTimes &times, const Expected<GenerateSummary> &result, bool over_kept_context);
};

struct WorkerMetrics {
  explicit WorkerMetrics(int64_t kv_capacity_tokens);
  metrics::Registry registry;
  metrics::Counter &encoded, &refused, &phase1_failed;
  metrics::Counter &encoded_tokens;
  metrics::Histogram &phase1_seconds;
  metrics::Gauge &kv_capacity, &kv_reserved, &requests;
  // The KV page arena (paged KV): pages in all, and mapped into caches now.
  metrics::Gauge &kv_pages_total, &kv_pages_used;
  // The query host's phase-2 exchanges (one per layer and step: Q out to the shard hosts,
  // their partials back) and the bytes they moved.
  metrics::Histogram &phase2_exchange_seconds;
  metrics::Counter &phase2_sent_bytes, &phase2_received_bytes;
  // Decode steps per batch of this worker's query hosts (DecodeBatcher), and the queries
  // prefilled inside those batches and their tokens.
  metrics::Histogram &decode_batch_size;
  metrics::Counter &batched_prefills, &batched_prefill_tokens;
  // Requests per batch of this worker's shard partials (ShardBatcher), and the time of one
  // partial as a shard host (a layer of a step: its query in, its answer ready).
  metrics::Histogram &shard_batch_size;
  metrics::Histogram &shard_partial_seconds;
};

// starmesh_build_info{version, model} 1: which build serves which model (router and workers).
void publish_build_info(metrics::Registry &registry, const std::string &version, const std::string &model);

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace starmesh
