// What the router's metrics make of a request's end (RouterMetrics::request_finished and
// tokens_streamed, as the request driver calls them): outcomes by reason, latencies of served
// requests only, inter-token gaps kept aside until the request is served, token counts.
#include <doctest/doctest.h>

#include <thread>

#include "starmesh/runtime/mesh_metrics.hpp"
#include "support/http_client.hpp"

using namespace starmesh;
using namespace std::chrono_literals;

namespace {
double value(const RouterMetrics& m, const std::string& series) {
  return test::metric_value(m.registry.expose(), series);
}

GenerateSummary served(StopReason why, int64_t generated) {
  GenerateSummary s;
  s.context_tokens = 700;
  s.query_tokens = 6;
  s.generated_tokens = generated;
  s.phase1_seconds = 0.5;
  s.phase1_max_host_seconds = 0.4;
  s.phase2_prefill_seconds = 0.02;
  s.stop_reason = why;
  return s;
}
}  // namespace

TEST_CASE("requests end as ok by stop reason, or by outcome and error code") {
  RouterMetrics m;
  RequestTimes t;
  // Every outcome and reason is there from the start, at 0.
  CHECK(value(m, "starmesh_requests_total") == 0);
  CHECK(value(m, "starmesh_requests_total{outcome=\"timeout\",reason=\"timeout\"}") == 0);
  m.request_finished(t, served(StopReason::eos, 3), false);
  m.request_finished(t, served(StopReason::max_tokens, 8), false);
  m.request_finished(t, served(StopReason::cancelled, 1), false);
  m.request_finished(t, make_error(ErrorCode::refused, "too large"), false);
  m.request_finished(t, make_error(ErrorCode::overloaded, "queue full"), false);
  m.request_finished(t, make_error(ErrorCode::not_found, "no such kept context"), false);
  m.request_finished(t, make_error(ErrorCode::unavailable, "worker lost"), false);
  m.request_finished(t, Error{"from a newer peer", ErrorCode(200)}, false);  // counts as internal
  CHECK(value(m, "starmesh_requests_total{outcome=\"ok\",reason=\"eos\"}") == 1);
  CHECK(value(m, "starmesh_requests_total{outcome=\"ok\",reason=\"max_tokens\"}") == 1);
  CHECK(value(m, "starmesh_requests_total{outcome=\"cancelled\"}") == 1);
  CHECK(value(m, "starmesh_requests_total{outcome=\"refused\"}") == 2);
  CHECK(value(m, "starmesh_requests_total{outcome=\"invalid\",reason=\"not_found\"}") == 1);
  CHECK(value(m, "starmesh_requests_total{outcome=\"failed\",reason=\"unavailable\"}") == 1);
  CHECK(value(m, "starmesh_requests_total{outcome=\"failed\",reason=\"internal\"}") == 1);
  CHECK(value(m, "starmesh_requests_total") == 8);
  CHECK(m.in_flight.value() == -8);  // the driver adds 1 when it starts
  // Tokens of every request with a summary (the cancelled one too); latencies of served ones.
  CHECK(value(m, "starmesh_generated_tokens_total") == 12);
  CHECK(value(m, "starmesh_query_tokens_total") == 18);
  CHECK(value(m, "starmesh_context_tokens_total") == 2100);
  CHECK(value(m, "starmesh_request_context_tokens_count") == 3);
  CHECK(value(m, "starmesh_request_generated_tokens_bucket{le=\"5\"}") == 2);
  CHECK(value(m, "starmesh_request_seconds_count") == 2);
  CHECK(value(m, "starmesh_phase1_seconds_count") == 2);
  CHECK(value(m, "starmesh_phase1_slowest_host_seconds_count") == 2);
  CHECK(value(m, "starmesh_phase2_prefill_seconds_count") == 2);
  CHECK(value(m, "starmesh_phase2_prefill_seconds_bucket{le=\"0.02\"}") == 2);  // a round bound
  CHECK(value(m, "starmesh_first_token_seconds_count") == 0);                   // no token went out
  for (const char* outcome : {"ok", "cancelled", "refused", "invalid", "timeout", "failed"}) {
    CAPTURE(outcome);
    CHECK(value(m, std::string("starmesh_requests_total{outcome=\"") + outcome + "\"}") >= 0);
  }
}

TEST_CASE("a question over a kept context counts no context encoding") {
  RouterMetrics m;
  m.request_finished(RequestTimes{}, served(StopReason::eos, 2), true);
  CHECK(value(m, "starmesh_context_tokens_total") == 0);
  CHECK(value(m, "starmesh_phase1_seconds_count") == 0);
  CHECK(value(m, "starmesh_request_context_tokens_sum") == 700);  // what it asked about
  CHECK(value(m, "starmesh_request_seconds_count") == 1);
}

TEST_CASE("token latencies count when the request is served, and only then") {
  RouterMetrics m;
  auto stream = [&](RequestTimes& t) {  // 1 token, then 2 after a pause, then 1
    m.tokens_streamed(t, 1);
    std::this_thread::sleep_for(20ms);
    m.tokens_streamed(t, 2);
    std::this_thread::sleep_for(20ms);
    m.tokens_streamed(t, 0);  // an empty batch changes nothing
    m.tokens_streamed(t, 1);
  };
  RequestTimes failed;
  stream(failed);
  CHECK(failed.tokens == 4);
  m.request_finished(failed, make_error(ErrorCode::timeout, "step timeout"), false);
  CHECK(value(m, "starmesh_inter_token_latency_seconds_count") == 0);
  CHECK(value(m, "starmesh_first_token_seconds_count") == 0);

  RequestTimes ok;
  std::this_thread::sleep_for(10ms);
  stream(ok);
  m.request_finished(ok, served(StopReason::max_tokens, 4), false);
  CHECK(value(m, "starmesh_first_token_seconds_count") == 1);
  CHECK(value(m, "starmesh_first_token_seconds_sum") >= 0.01);
  CHECK(value(m, "starmesh_inter_token_latency_seconds_count") == 3);  // a gap before each token after the first
  CHECK(value(m, "starmesh_inter_token_latency_seconds_bucket{le=\"0.005\"}") == 0);  // each >= 10 ms
  CHECK(value(m, "starmesh_time_per_output_token_seconds_count") == 1);
  const double span = std::chrono::duration<double>(ok.last_token - ok.first_token).count();
  CHECK(value(m, "starmesh_inter_token_latency_seconds_sum") == doctest::Approx(span));
  CHECK(value(m, "starmesh_time_per_output_token_seconds_sum") == doctest::Approx(span / 3));
}

TEST_CASE("build info names the version and the model") {
  RouterMetrics m;
  publish_build_info(m.registry, "0.1.0", "starmesh-tiny");
  CHECK(value(m, "starmesh_build_info{version=\"0.1.0\",model=\"starmesh-tiny\"}") == 1);
}
