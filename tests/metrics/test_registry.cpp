// The registry (prometheus-cpp underneath) and its text exposition: exact output for each
// metric kind, label escaping, cumulative histogram buckets, refusals of bad names, exact
// totals under concurrency, round bucket bounds, observations kept aside.
#include <doctest/doctest.h>

#include <stdexcept>
#include <thread>
#include <vector>

#include "starmesh/metrics/registry.hpp"

using namespace starmesh::metrics;

TEST_CASE("the exposition lists counters, gauges and histograms in the Prometheus text format") {
  Registry r;
  auto& req = r.counter("starmesh_requests_total", "Requests by outcome.");
  req.with({{"outcome", "ok"}}).inc();
  req.with({{"outcome", "ok"}}).inc(2);
  req.with({{"outcome", "failed"}}).inc();
  r.gauge("starmesh_workers", "Registered workers.").with().set(4);
  auto& h = r.histogram("starmesh_request_seconds", "End-to-end time.", {0.1, 1, 10}).with();
  for (double v : {0.05, 0.1, 0.5, 3.0, 30.0}) h.observe(v);
  const std::string want =
      "# HELP starmesh_requests_total Requests by outcome.\n"
      "# TYPE starmesh_requests_total counter\n"
      "starmesh_requests_total{outcome=\"failed\"} 1\n"
      "starmesh_requests_total{outcome=\"ok\"} 3\n"
      "# HELP starmesh_workers Registered workers.\n"
      "# TYPE starmesh_workers gauge\n"
      "starmesh_workers 4\n"
      "# HELP starmesh_request_seconds End-to-end time.\n"
      "# TYPE starmesh_request_seconds histogram\n"
      "starmesh_request_seconds_count 5\n"  // prometheus-cpp writes count and sum first
      "starmesh_request_seconds_sum 33.65\n"
      "starmesh_request_seconds_bucket{le=\"0.1\"} 2\n"
      "starmesh_request_seconds_bucket{le=\"1\"} 3\n"
      "starmesh_request_seconds_bucket{le=\"10\"} 4\n"
      "starmesh_request_seconds_bucket{le=\"+Inf\"} 5\n";
  CHECK(r.expose() == want);
  CHECK(r.names() ==
        std::vector<std::string>{"starmesh_requests_total", "starmesh_workers", "starmesh_request_seconds"});
}

TEST_CASE("label values and help text are escaped") {
  Registry r;
  r.gauge("g", "line one\nback\\slash").with({{"worker", "a\"b\\c\nd"}}).set(-1.5);
  CHECK(r.expose() == "# HELP g line one\\nback\\\\slash\n# TYPE g gauge\ng{worker=\"a\\\"b\\\\c\\nd\"} -1.5\n");
}

TEST_CASE("bad names, kind clashes and bad buckets are refused") {
  Registry r;
  CHECK_THROWS_AS(r.counter("9lives", ""), std::invalid_argument);
  CHECK_THROWS_AS(r.counter("has-dash", ""), std::invalid_argument);
  r.counter("c", "");
  CHECK_THROWS_AS(r.gauge("c", ""), std::invalid_argument);
  CHECK_NOTHROW(r.counter("c", ""));  // the same family again
  CHECK_THROWS_AS(r.counter("c", "").with({{"__reserved", "x"}}), std::invalid_argument);
  CHECK_THROWS_AS(r.counter("c", "").with({{"le", "x"}}), std::invalid_argument);
  CHECK_THROWS_AS(r.counter("c", "").with({{"a", "x"}, {"a", "y"}}), std::invalid_argument);
  CHECK_THROWS_AS(r.counter("__c", ""), std::invalid_argument);
  CHECK_THROWS_AS(r.histogram("h", "", {1, 1}), std::invalid_argument);
  CHECK_THROWS_AS(r.histogram("h2", "", {2, 1}), std::invalid_argument);
  r.histogram("h3", "", {1, 2});
  CHECK_THROWS_AS(r.histogram("h3", "", {1, 3}), std::invalid_argument);
  CHECK(exponential_buckets(0.001, 10, 4) == std::vector<double>{0.001, 0.01, 0.1, 1.0});
}

TEST_CASE("concurrent updates lose nothing") {
  Registry r;
  auto& c = r.counter("n_total", "").with();
  auto& h = r.histogram("lat", "", {0.5}).with();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 100000; ++i) {
        c.inc();
        h.observe(i % 2 ? 1.0 : 0.0);
      }
    });
  for (auto& t : threads) t.join();
  CHECK(c.value() == 400000);
  const auto s = h.snapshot();
  CHECK(s.count == 400000);
  CHECK(s.cumulative[0] == 200000);
  CHECK(s.sum == 200000);
}

TEST_CASE("round buckets land on 1, 2 and 5 times powers of ten, printed as written") {
  CHECK(round_buckets(0.01, 5) == std::vector<double>{0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5});
  CHECK(round_buckets(1, 1000).size() == 10);
  CHECK_THROWS_AS(round_buckets(0, 1), std::invalid_argument);
  Registry r;
  r.histogram("h", "H.", round_buckets(0.01, 0.05)).with().observe(0.03);
  CHECK(r.expose().find("h_bucket{le=\"0.05\"} 1\n") != std::string::npos);
  CHECK(r.expose().find("h_bucket{le=\"0.02\"} 0\n") != std::string::npos);
}

TEST_CASE("observations kept aside count only when added, all at once") {
  Registry r;
  auto& h = r.histogram("gap_seconds", "Gaps.", {0.1, 1}).with();
  PendingObservations kept = h.pending();
  for (double v : {0.05, 0.5, 0.5, 3.0}) kept.observe(v);
  CHECK(kept.count() == 4);
  CHECK(h.snapshot().count == 0);  // nothing yet: the request has not succeeded
  h.observe(kept);
  const auto s = h.snapshot();
  CHECK(s.count == 4);
  CHECK(s.cumulative == std::vector<uint64_t>{1, 3, 4});
  CHECK(s.sum == doctest::Approx(4.05));
  h.observe(PendingObservations{});  // none kept: nothing added
  CHECK(h.snapshot().count == 4);
  PendingObservations other({0.2});
  other.observe(0.1);
  CHECK_THROWS_AS(h.observe(other), std::invalid_argument);
}
