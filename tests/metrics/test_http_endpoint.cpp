// The /metrics endpoint over real HTTP, and a real Prometheus server scraping it.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <vector>

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

TEST_CASE("healthz and readyz answer 200, or 503 with the reason") {
  Registry r;
  std::atomic<bool> ready{false};
  HealthChecks health;
  health.ready = [&] {
    return ready.load() ? Status{} : make_error(ErrorCode::unavailable, "no worker has registered yet");
  };
  auto ep = HttpEndpoint::start(r, "127.0.0.1:0", health);
  REQUIRE(ep);
  CHECK(test::http_get((*ep)->port(), "/healthz").status == 200);
  auto not_ready = test::http_get((*ep)->port(), "/readyz");
  CHECK(not_ready.status == 503);
  CHECK(not_ready.body == "no worker has registered yet\n");
  ready = true;
  CHECK(test::http_get((*ep)->port(), "/readyz").status == 200);
  CHECK(test::http_get((*ep)->port(), "/readyz", "POST").status == 405);
}

TEST_CASE("idle and slow clients do not hold up a scrape") {
  Registry r;
  r.counter("starmesh_probe_total", "Probes.").with().inc();
  auto ep = HttpEndpoint::start(r, "127.0.0.1:0");
  REQUIRE(ep);
  // Five connections that never send a request, and one that sends its head a byte at a time.
  std::vector<int> idle;
  for (int i = 0; i < 5; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t((*ep)->port()));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    if (i == 0) CHECK(::send(fd, "G", 1, 0) == 1);
    idle.push_back(fd);
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto got = test::http_get((*ep)->port(), "/metrics");
  const auto took = std::chrono::steady_clock::now() - t0;
  CHECK(got.status == 200);
  CHECK(took < std::chrono::milliseconds(500));  // the old single-threaded endpoint took 10 s here
  for (int fd : idle) ::close(fd);
}
