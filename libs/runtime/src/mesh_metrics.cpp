#include "starmesh/runtime/mesh_metrics.hpp"

namespace starmesh {
namespace {
using metrics::round_buckets;
// Requests and their phases: 10 ms to 5.5 h (phase 1 of 1M tokens on slow hosts).
std::vector<double> request_buckets() { return round_buckets(0.01, 20000); }
// Between tokens: 1 ms to 50 s.
std::vector<double> token_buckets() { return round_buckets(0.001, 50); }

metrics::Counter &outcome(metrics::Registry &r, std::string_view outcome, std::string_view reason) {
  return r
      .counter("starmesh_requests_total",
               "Requests the router finished, by outcome (ok, cancelled, refused, invalid, timeout, failed) and "
               "reason (the stop reason of a served request, else the error code).")
      .with({{"outcome", std::string(outcome)}, {"reason", std::string(reason)}});
}

// Every series exists from the start, so rate() sees a request's first increment.
std::array<metrics::Counter *, std::size(kAllErrorCodes)> failure_counters(metrics::Registry &r) {
  std::array<metrics::Counter *, std::size(kAllErrorCodes)> out{};
  for (ErrorCode code : kAllErrorCodes) out[size_t(code)] = &outcome(r, request_outcome(code), to_string(code));
  return out;
}
}  // namespace

std::string_view request_outcome(ErrorCode code) {
  switch (code) {
    case ErrorCode::cancelled:
      return "cancelled";
    case ErrorCode::refused:
    case ErrorCode::overloaded:
      return "refused";
    case ErrorCode::invalid_argument:
    case ErrorCode::not_found:
    case ErrorCode::unauthenticated:
      return "invalid";
    case ErrorCode::timeout:
      return "timeout";
    case ErrorCode::internal:
    case ErrorCode::unavailable:
      break;
  }
  return "failed";
}

RouterMetrics::RouterMetrics()
    : served{&outcome(registry, "ok", to_string(StopReason::eos)),
             &outcome(registry, "ok", to_string(StopReason::max_tokens))},
      requests_failed(failure_counters(registry)),
      in_flight(registry.gauge("starmesh_requests_in_flight", "Requests the router is running now.").with()),
      queued(registry.gauge("starmesh_requests_queued", "Requests waiting for KV capacity now.").with()),
      queue_wait_seconds(registry
                             .histogram("starmesh_queue_wait_seconds",
                                        "How long requests that had to wait for KV capacity waited (placed or not).",
                                        request_buckets())
                             .with()),
      request_seconds(registry
                          .histogram("starmesh_request_seconds",
                                     "Served requests: from the request's arrival to its last token.",
                                     request_buckets())
                          .with()),
      first_token_seconds(registry
                              .histogram("starmesh_first_token_seconds",
                                         "Served requests: from arrival to the first token out (phase 1 included).",
                                         request_buckets())
                              .with()),
      inter_token_latency_seconds(registry
                                      .histogram("starmesh_inter_token_latency_seconds",
                                                 "Served requests: the time between two tokens out, each token "
                                                 "of a batch counting its share.",
                                                 token_buckets())
                                      .with()),
      time_per_output_token_seconds(registry
                                        .histogram("starmesh_time_per_output_token_seconds",
                                                   "Served requests of 2 tokens or more: from the first token out to "
                                                   "the last, over the tokens after the first.",
                                                   token_buckets())
                                        .with()),
      phase1_seconds(registry
                         .histogram("starmesh_phase1_seconds",
                                    "Served requests: context encoding (all hosts, in parallel; none for a "
                                    "question over a kept context).",
                                    request_buckets())
                         .with()),
      phase1_slowest_host_seconds(registry
                                      .histogram("starmesh_phase1_slowest_host_seconds",
                                                 "Served requests: the slowest host's own phase 1, timed to its "
                                                 "device's end (what phase 1 takes when the hosts run in parallel).",
                                                 request_buckets())
                                      .with()),
      phase2_prefill_seconds(registry
                                 .histogram("starmesh_phase2_prefill_seconds",
                                            "Served requests: the query host's prefill of the query (phase 2's first "
                                            "step, over every host's context).",
                                            request_buckets())
                                 .with()),
      context_tokens(
          registry.counter("starmesh_context_tokens_total", "Context tokens encoded for ended requests.").with()),
      query_tokens(registry.counter("starmesh_query_tokens_total", "Query tokens of ended requests.").with()),
      generated_tokens(
          registry.counter("starmesh_generated_tokens_total", "Tokens generated for ended requests.").with()),
      request_context_tokens(registry
                                 .histogram("starmesh_request_context_tokens",
                                            "Context tokens per ended request (a kept context's too).",
                                            round_buckets(10, 1e7))
                                 .with()),
      request_generated_tokens(registry
                                   .histogram("starmesh_request_generated_tokens",
                                              "Tokens generated per ended request.", round_buckets(1, 1e6))
                                   .with()),
      kept_context_hits(
          registry.counter("starmesh_kept_context_hits_total", "Requests that named a kept context the router found.")
              .with()),
      kept_context_misses(registry
                              .counter("starmesh_kept_context_misses_total",
                                       "Requests that named a kept context the router did not find (dropped, "
                                       "expired, never kept, or another tenant's).")
                              .with()),
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
      kept_tokens(registry.gauge("starmesh_kept_tokens", "KV tokens the kept contexts hold.").with()),
      worker_removal_cost(registry.gauge(
          "starmesh_worker_removal_cost",
          "What removing the worker would cost, in tokens: its kept contexts whole, its running requests' KV, and "
          "1024 per running request; -1 while it drains (removal_cost.hpp). Remove the cheapest first: "
          "pod-deletion-cost (docs/SCALING.md).")) {}

void RouterMetrics::tokens_streamed(RequestTimes &t, size_t n) {
  if (n == 0) return;
  const auto now = std::chrono::steady_clock::now();
  if (t.tokens == 0) {
    t.first_token = now;
    t.gaps = inter_token_latency_seconds.pending();
    for (size_t i = 1; i < n; ++i) t.gaps.observe(0);  // out with the first token
  } else {
    // A batch of n out after a gap: each of its tokens took its share of the gap.
    const double share = std::chrono::duration<double>(now - t.last_token).count() / double(n);
    for (size_t i = 0; i < n; ++i) t.gaps.observe(share);
  }
  t.last_token = now;
  t.tokens += int64_t(n);
}

void RouterMetrics::request_finished(const RequestTimes &t, const Expected<GenerateSummary> &result,
                                     bool over_kept_context) {
  in_flight.add(-1);
  if (!result) {
    failed(result.code()).inc();
    return;
  }
  const GenerateSummary &s = *result;
  // Tokens: every request that ended with a summary, served or cancelled.
  generated_tokens.inc(double(s.generated_tokens));
  query_tokens.inc(double(s.query_tokens));
  if (!over_kept_context) context_tokens.inc(double(s.context_tokens));
  request_context_tokens.observe(double(s.context_tokens));
  request_generated_tokens.observe(double(s.generated_tokens));
  if (s.stop_reason == StopReason::cancelled) {
    failed(ErrorCode::cancelled).inc();
    return;
  }
  served[s.stop_reason == StopReason::eos ? 0 : 1]->inc();
  request_seconds.observe(seconds_since(t.arrived));
  if (t.tokens > 0) first_token_seconds.observe(std::chrono::duration<double>(t.first_token - t.arrived).count());
  inter_token_latency_seconds.observe(t.gaps);
  if (t.tokens > 1)
    time_per_output_token_seconds.observe(std::chrono::duration<double>(t.last_token - t.first_token).count() /
                                          double(t.tokens - 1));
  if (!over_kept_context) {
    if (s.phase1_seconds > 0) phase1_seconds.observe(s.phase1_seconds);
    if (s.phase1_max_host_seconds > 0) phase1_slowest_host_seconds.observe(s.phase1_max_host_seconds);
  }
  if (s.phase2_prefill_seconds > 0) phase2_prefill_seconds.observe(s.phase2_prefill_seconds);
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
                                    request_buckets())
                         .with()),
      kv_capacity(registry.gauge("starmesh_worker_kv_capacity_tokens", "This worker's KV pool, in tokens.").with()),
      kv_reserved(registry.gauge("starmesh_worker_kv_reserved_tokens", "KV reserved by running requests.").with()),
      requests(registry.gauge("starmesh_worker_requests", "Requests holding KV on this worker now.").with()),
      kv_pages_total(
          registry
              .gauge("starmesh_worker_kv_pages", "KV pages of this worker's arena: in all, and mapped into caches now.")
              .with({{"state", "total"}})),
      kv_pages_used(registry.gauge("starmesh_worker_kv_pages", "").with({{"state", "used"}})),
      phase2_exchange_seconds(registry
                                  .histogram("starmesh_worker_phase2_exchange_seconds",
                                             "As query host: one phase-2 exchange (a layer of a step): the query "
                                             "sent to the shard hosts until all their partials are in.",
                                             round_buckets(0.0001, 10))
                                  .with()),
      phase2_sent_bytes(registry
                            .counter("starmesh_worker_phase2_exchange_bytes_total",
                                     "As query host: bytes of phase-2 exchanges, sent (queries) and received "
                                     "(partial attention states).")
                            .with({{"direction", "sent"}})),
      phase2_received_bytes(
          registry.counter("starmesh_worker_phase2_exchange_bytes_total", "").with({{"direction", "received"}})),
      decode_batch_size(registry
                            .histogram("starmesh_worker_decode_batch_size",
                                       "As query host: requests whose decode steps ran as one batch.",
                                       {1, 2, 4, 8, 16, 32, 64, 128, 256})
                            .with()),
      batched_prefills(registry
                           .counter("starmesh_worker_batched_prefills_total",
                                    "As query host: queries prefilled in the decode batcher (beside whatever "
                                    "decode steps were ready) rather than alone; at most --batch-prefill tokens.")
                           .with()),
      batched_prefill_tokens(registry
                                 .counter("starmesh_worker_batched_prefill_tokens_total",
                                          "As query host: the tokens of the queries prefilled in the decode batcher.")
                                 .with()),
      shard_batch_size(registry
                           .histogram("starmesh_worker_shard_batch_size",
                                      "As shard host: requests whose layer partials ran as one batch.",
                                      {1, 2, 4, 8, 16, 32, 64, 128, 256})
                           .with()),
      shard_partial_seconds(registry
                                .histogram("starmesh_worker_shard_partial_seconds",
                                           "As shard host: one phase-2 partial (a layer of a step), from its query's "
                                           "arrival until its answer is ready to send (the batch's wait included).",
                                           round_buckets(0.00001, 10))
                                .with()) {
  kv_capacity.set(double(kv_capacity_tokens));
}

void publish_build_info(metrics::Registry &registry, const std::string &version, const std::string &model) {
  registry.gauge("starmesh_build_info", "Always 1: the starmesh version and the model this process serves.")
      .with({{"version", version}, {"model", model}})
      .set(1);
}

}  // namespace starmesh
