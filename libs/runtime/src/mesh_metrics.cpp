#include "starmesh/runtime/mesh_metrics.hpp"

namespace starmesh {
namespace {
// 10 ms .. ~5.8 h in factors of 2.5: first tokens of short requests to phase 1 of 1M tokens.
std::vector<double> duration_buckets() { return metrics::exponential_buckets(0.01, 2.5, 16); }
}  // namespace

RouterMetrics::RouterMetrics()
    : requests_ok(registry.counter("starmesh_requests_total", "Requests the router finished, by outcome.")
                      .with({{"outcome", "ok"}})),
      requests_cancelled(registry.counter("starmesh_requests_total", "").with({{"outcome", "cancelled"}})),
      in_flight(registry.gauge("starmesh_requests_in_flight", "Requests the router is running now.").with()),
      queued(registry.gauge("starmesh_requests_queued", "Requests waiting for KV capacity now.").with()),
      queue_wait_seconds(registry
                             .histogram("starmesh_queue_wait_seconds",
                                        "How long requests that had to wait for KV capacity waited.",
                                        duration_buckets())
                             .with()),
      request_seconds(registry
                          .histogram("starmesh_request_seconds", "From the request's arrival to its last token.",
                                     duration_buckets())
                          .with()),
      first_token_seconds(registry
                              .histogram("starmesh_first_token_seconds",
                                         "From the request's arrival to its first generated token (phase 1 included).",
                                         duration_buckets())
                              .with()),
      phase1_seconds(registry
                         .histogram("starmesh_phase1_seconds",
                                    "Context encoding of a request (all hosts, in parallel).", duration_buckets())
                         .with()),
      phase1_slowest_host_seconds(
          registry
              .histogram("starmesh_phase1_slowest_host_seconds",
                         "The slowest host's own phase 1 of a request, timed to its device's end: what phase 1 takes "
                         "when the hosts run in parallel.",
                         duration_buckets())
              .with()),
      context_tokens(registry.counter("starmesh_context_tokens_total", "Context tokens of finished requests.").with()),
      generated_tokens(
          registry.counter("starmesh_generated_tokens_total", "Tokens generated for finished requests.").with()),
      workers(registry.gauge("starmesh_workers", "Workers registered with the router.").with()),
      kv_capacity(
          registry.gauge("starmesh_kv_capacity_tokens", "KV capacity of the registered workers, in tokens.").with()),
      kv_reserved(registry
                      .gauge("starmesh_kv_reserved_tokens",
                             "KV the router has placed on workers for running requests and kept contexts.")
                      .with()),
      kept_contexts(
          registry
              .gauge("starmesh_kept_contexts", "Contexts kept encoded for further questions (encode once, ask many).")
              .with()),
      desired_workers(registry
                          .gauge("starmesh_desired_workers",
                                 "Workers the mesh should have for its load now (the scale rule, docs/SCALING.md): "
                                 "what an autoscaler follows.")
                          .with()),
      desired_workers_by_kv(registry
                                .gauge("starmesh_desired_workers_by_term",
                                       "The scale rule's terms: workers for the KV demand, and for the requests.")
                                .with({{"term", "kv"}})),
      desired_workers_by_requests(registry.gauge("starmesh_desired_workers_by_term", "").with({{"term", "requests"}})),
      kv_demand(registry
                    .gauge("starmesh_kv_demand_tokens",
                           "KV the load asks for: running requests, queued requests, and kept contexts by their "
                           "weight.")
                    .with()),
      queued_tokens(
          registry.gauge("starmesh_queued_tokens", "KV tokens the requests waiting for capacity ask for.").with()),
      kept_tokens(registry.gauge("starmesh_kept_tokens", "KV tokens the kept contexts hold.").with()) {
  for (ErrorCode code : kAllErrorCodes)
    requests_failed[size_t(code)] =
        &registry.counter("starmesh_requests_total", "").with({{"outcome", std::string(to_string(code))}});
}

WorkerMetrics::WorkerMetrics(int64_t kv_capacity_tokens)
    : encoded(registry.counter("starmesh_worker_requests_total", "Encode orders this worker took, by result.")
                  .with({{"result", "encoded"}})),
      refused(registry.counter("starmesh_worker_requests_total", "").with({{"result", "refused"}})),
      phase1_failed(registry.counter("starmesh_worker_requests_total", "").with({{"result", "failed"}})),
      encoded_tokens(
          registry.counter("starmesh_worker_encoded_tokens_total", "Context tokens this worker encoded.").with()),
      phase1_seconds(registry
                         .histogram("starmesh_worker_phase1_seconds", "Phase 1 of this worker's blocks of a request.",
                                    duration_buckets())
                         .with()),
      kv_capacity(registry.gauge("starmesh_worker_kv_capacity_tokens", "This worker's KV pool, in tokens.").with()),
      kv_reserved(registry.gauge("starmesh_worker_kv_reserved_tokens", "KV reserved by running requests.").with()),
      requests(registry.gauge("starmesh_worker_requests", "Requests holding KV on this worker now.").with()) {
  kv_capacity.set(double(kv_capacity_tokens));
}

}  // namespace starmesh
