// The /metrics endpoint over real HTTP, and a real Prometheus server scraping it.
#include <doctest/doctest.h>

#include <chrono>

#include "starmesh/metrics/http_endpoint.hpp"
#include "support/http_client.hpp"
#include "support/prometheus_server.hpp"

using namespace starmesh;
using namespace starmesh::metrics;

TEST_CASE("GET /metrics serves the registry, other paths get 404 and other methods 405") {
  Registry r;
  r.counter("starmesh_probe_total", "Probes.").with().inc(3);
  auto ep = HttpEndpoint::start(r, "127.0.0.1:0");
  REQUIRE_MESSAGE(ep, (ep ? "" : ep.error().message));
  REQUIRE((*ep)->port() > 0);
  auto got = test::http_get((*ep)->port(), "/metrics");
  CHECK(got.status == 200);
  CHECK(got.body == r.expose());
  r.counter("starmesh_probe_total", "Probes.").with().inc();
  CHECK(test::http_get((*ep)->port(), "/metrics").body.find("starmesh_probe_total 4\n") != std::string::npos);
  CHECK(test::http_get((*ep)->port(), "/").status == 404);
  CHECK(test::http_get((*ep)->port(), "/metrics", "POST").status == 405);
}

TEST_CASE("the endpoint refuses an address it cannot listen on") {
  Registry r;
  auto first = HttpEndpoint::start(r, "127.0.0.1:0");
  REQUIRE(first);
  const std::string taken = "127.0.0.1:" + std::to_string((*first)->port());
  auto second = HttpEndpoint::start(r, taken);
  REQUIRE_FALSE(second);
  CHECK(second.error().message.find(taken) != std::string::npos);
  CHECK_FALSE(HttpEndpoint::start(r, "no-port"));
}

TEST_CASE("a real Prometheus server scrapes the endpoint") {
  Registry r;
  r.counter("starmesh_probe_total", "Probes.").with({{"kind", "a"}}).inc(7);
  r.histogram("starmesh_probe_seconds", "Probe time.", {0.1, 1}).with().observe(0.5);
  auto ep = HttpEndpoint::start(r, "127.0.0.1:0");
  REQUIRE(ep);
  test::PrometheusServer prom({(*ep)->port()});
  using namespace std::chrono_literals;
  const auto up = prom.wait_for(
      "up", [](double v) { return v == 1; }, 30s);
  INFO("prometheus log:\n" << prom.log());
  REQUIRE(up);
  CHECK(prom.wait_for(
            "starmesh_probe_total{kind=\"a\"}", [](double v) { return v == 7; }, 10s) == 7);
  CHECK(prom.wait_for(
            "starmesh_probe_seconds_bucket{le=\"1\"}", [](double v) { return v == 1; }, 10s) == 1);
  r.counter("starmesh_probe_total", "Probes.").with({{"kind", "a"}}).inc();
  CHECK(prom.wait_for(
            "starmesh_probe_total{kind=\"a\"}", [](double v) { return v == 8; }, 10s) == 8);
}
