// Every query of the Grafana dashboard (deploy/k8s/monitoring) has data from a live mesh, as a
// real Prometheus scraped it: the variables substituted as "All" and a rate window that spans
// the test. A real Prometheus scrapes from the start, so rate() sees every event, and the
// events that some panels wait for are made to happen: a served request that keeps its
// context, a question over it (a kept-context hit) and one over a context never kept (a miss),
// a refusal, a cancel, and a request that waits in the queue for KV capacity.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "integration/metrics_mesh.hpp"
#include "starmesh/launch/local_mesh.hpp"
#include "starmesh/runtime/mesh_config.hpp"
#include "support/engine_reference.hpp"
#include "support/http_client.hpp"
#include "support/prometheus_server.hpp"

using namespace starmesh;
using namespace std::chrono_literals;

namespace {

GenerateOrder order(int64_t context_tokens, int max_new_tokens, uint64_t seed) {
  GenerateOrder o;
  if (context_tokens > 0) o.request.context_ids = test::random_token_ids(context_tokens, seed);
  o.request.query_ids = test::random_token_ids(6, seed + 1);
  o.request.block_size = 256;
  o.request.max_new_tokens = max_new_tokens;
  return o;
}

// Runs `o` without waiting; `cancel_at_first_token`: the client stops it at its first token.
std::future<Expected<GenerateSummary>> submit(MeshClient& client, GenerateOrder o, bool cancel_at_first_token) {
  auto done = std::make_shared<std::promise<Expected<GenerateSummary>>>();
  auto result = done->get_future();
  client.submit(
      std::move(o), [cancel_at_first_token](const ClientChunk&) { return !cancel_at_first_token; },
      [done](Expected<GenerateSummary> r) { done->set_value(std::move(r)); });
  return result;
}

// Grafana's variables as "All", and a rate window over the whole test.
std::string as_grafana_runs_it(std::string expr) {
  for (const char* v : {"$namespace", "$job", "$pod"})
    expr = std::regex_replace(expr, std::regex("\\" + std::string(v)), ".*");
  return std::regex_replace(expr, std::regex("\\$__rate_interval"), "5m");
}

}  // namespace

TEST_CASE("every dashboard query has data from a live mesh scraped by a real Prometheus") {
  MeshConfig cfg{{2, true, false}};
  caf::actor_system sys{cfg};
  const LocalMeshOptions o = test::metrics_mesh_options();
  auto mesh = LocalMesh::start(sys, o);
  REQUIRE_MESSAGE(mesh, (mesh ? "" : mesh.error().message));
  MeshClient& client = (*mesh)->client();
  const auto ports = (*mesh)->metrics_ports();
  test::PrometheusServer prom({ports[0], ports[1], ports[2]});
  INFO("prometheus log:\n" << prom.log());
  REQUIRE(prom.wait_for(
              "count(up == 1)", [](double v) { return v == 3; }, 30s) == 3);
  // A scrape of the idle mesh first: the events below are increases rate() sees.
  REQUIRE(prom.wait_for(
      "count(starmesh_requests_total)", [](double v) { return v > 0; }, 10s));

  // Served, its context kept; a question over it (hit), one over a context never kept (miss).
  GenerateOrder keep = order(700, 8, 11);
  keep.request.keep_context = true;
  auto kept = client.run(keep);
  REQUIRE_MESSAGE(kept, (kept ? "" : kept.error().message + "\n" + (*mesh)->log_tail()));
  REQUIRE(kept->summary.hosts == 2);  // so the query host exchanges with the other
  GenerateOrder again = order(0, 4, 13);
  again.request.context_id = kept->summary.context_id;
  CHECK(client.run(again));
  GenerateOrder unknown = again;
  unknown.request.context_id = ContextId::random();
  auto missed = client.run(unknown);
  REQUIRE_FALSE(missed);
  CHECK(missed.error().code == ErrorCode::not_found);
  CHECK(client.drop(kept->summary.context_id));
  // Refused: more than the 2 x 2048 KV tokens there are.
  CHECK_FALSE(client.run(order(6000, 4, 15)));
  // Cancelled by the client at its first token.
  auto cancelled = submit(client, order(500, 512, 17), true).get();
  REQUIRE(cancelled);
  CHECK(cancelled->stop_reason == StopReason::cancelled);
  // Two that cannot hold their KV at once: one waits in the queue for the other.
  auto first = submit(client, order(3000, 16, 19), false);
  auto second = submit(client, order(3000, 16, 21), false);
  CHECK(first.get());
  CHECK(second.get());
  const std::string router = test::http_get(ports[0], "/metrics").body;
  CHECK(test::metric_value(router, "starmesh_queue_wait_seconds_count") >= 1);
  CHECK(test::metric_value(router, "starmesh_kept_context_hits_total") == 1);
  CHECK(test::metric_value(router, "starmesh_kept_context_misses_total") == 1);
  CHECK(test::metric_value(router, "starmesh_requests_total{outcome=\"cancelled\"}") == 1);

  std::ifstream in(STARMESH_SOURCE_DIR "/deploy/k8s/monitoring/starmesh-dashboard.json");
  const auto dashboard = nlohmann::json::parse(in);
  int queries = 0;
  for (const auto& panel : dashboard["panels"])
    for (const auto& target : panel["targets"]) {
      const std::string expr = as_grafana_runs_it(target["expr"].get<std::string>());
      CAPTURE(panel["title"].get<std::string>());
      CAPTURE(expr);
      // Data: a series with a number (a quantile of no observations is NaN), once scraped.
      auto has_data = [](double v) { return std::isfinite(v); };
      std::optional<std::vector<double>> got;
      const auto until = std::chrono::steady_clock::now() + 15s;
      do {
        got = prom.query_all(expr);
        if (got && std::any_of(got->begin(), got->end(), has_data)) break;
        std::this_thread::sleep_for(250ms);
      } while (std::chrono::steady_clock::now() < until);
      REQUIRE(got);
      CHECK(std::any_of(got->begin(), got->end(), has_data));
      ++queries;
    }
  CHECK(queries >= 30);
  // The variables' own selector (Grafana's label_values) finds the router and the workers.
  CHECK(prom.query_all("count({__name__=~\"starmesh_workers|starmesh_worker_requests\"})") == std::vector<double>{3});
}
