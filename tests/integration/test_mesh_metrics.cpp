// Operators' view of a real mesh: router and worker processes serve /metrics; after one
// request that succeeds and one the mesh refuses, the counters, gauges and histograms say so,
// a real Prometheus server scrapes all of them, every metric the Grafana dashboard and the
// Prometheus rules in deploy/k8s/monitoring use is one the binaries export, and
// `promtool check metrics` finds nothing to say of any endpoint. (Every dashboard query
// having data: test_dashboard_queries.cpp.)
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
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

double sample(const std::string& exposition, const std::string& series) {
  return test::metric_value(exposition, series);
}

// Every starmesh_* metric name an expression uses, histogram suffixes taken off.
std::set<std::string> metric_names(const std::string& text) {
  std::set<std::string> out;
  static const std::regex name("starmesh_[a-z0-9_]+");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), name); it != std::sregex_iterator(); ++it) {
    std::string n = it->str();
    for (const char* suffix : {"_bucket", "_sum", "_count"})
      if (n.size() > std::strlen(suffix) && n.compare(n.size() - std::strlen(suffix), std::string::npos, suffix) == 0)
        n.resize(n.size() - std::strlen(suffix));
    out.insert(n);
  }
  return out;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  REQUIRE_MESSAGE(in, "cannot read " << path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST_CASE("router and workers export their metrics, and a real Prometheus scrapes them") {
  MeshConfig cfg{{2, true, false}};
  caf::actor_system sys{cfg};
  LocalMeshOptions o = test::metrics_mesh_options();
  o.transport = "ucx-shm";
  auto mesh = LocalMesh::start(sys, o);
  REQUIRE_MESSAGE(mesh, (mesh ? "" : mesh.error().message));
  const auto ports = (*mesh)->metrics_ports();
  REQUIRE(ports.size() == 3);
  for (int port : ports) {  // the router and both workers: alive, and ready to serve
    CHECK(test::http_get(port, "/healthz").status == 200);
    CHECK(test::http_get(port, "/readyz").status == 200);
  }

  GenerateOrder ok;
  ok.request.context_ids = test::random_token_ids(700, 5);
  ok.request.query_ids = test::random_token_ids(6, 6);
  ok.request.block_size = 256;
  ok.request.max_new_tokens = 8;
  auto done = (*mesh)->client().run(ok);
  REQUIRE_MESSAGE(done, (done ? "" : done.error().message + "\n" + (*mesh)->log_tail()));
  GenerateOrder too_big = ok;
  too_big.request.context_ids = test::random_token_ids(6000, 7);  // more than 2 x 2048 KV tokens
  CHECK_FALSE((*mesh)->client().run(too_big));

  const std::string router = test::http_get(ports[0], "/metrics").body;
  INFO("router /metrics:\n" << router);
  CHECK(sample(router, "starmesh_requests_total{outcome=\"ok\"}") == 1);
  CHECK(sample(router, "starmesh_requests_total{outcome=\"refused\",reason=\"refused\"}") == 1);  // by its code
  CHECK(sample(router, "starmesh_requests_total{outcome=\"cancelled\"}") == 0);
  CHECK(sample(router, "starmesh_requests_total") == 2);
  CHECK(sample(router, "starmesh_request_seconds_count") == 1);  // served requests only
  CHECK(sample(router, "starmesh_first_token_seconds_count") == 1);
  CHECK(sample(router, "starmesh_phase1_seconds_count") == 1);
  CHECK(sample(router, "starmesh_phase1_slowest_host_seconds_count") == 1);
  CHECK(sample(router, "starmesh_context_tokens_total") == 700);
  CHECK(sample(router, "starmesh_query_tokens_total") == 6);
  CHECK(sample(router, "starmesh_time_per_output_token_seconds_count") == (done->ids.size() > 1 ? 1 : 0));
  CHECK(sample(router, "starmesh_inter_token_latency_seconds_count") == double(done->ids.size()) - 1);
  CHECK(sample(router, "starmesh_phase2_prefill_seconds_count") == 1);
  CHECK(sample(router, "starmesh_build_info{model=\"starmesh-tiny\"}") == 1);
  CHECK(sample(router, "starmesh_generated_tokens_total") == double(done->ids.size()));
  CHECK(sample(router, "starmesh_workers") == 2);
  CHECK(sample(router, "starmesh_kv_capacity_tokens") == 4096);
  CHECK(sample(router, "starmesh_requests_in_flight") == 0);
  CHECK(sample(router, "starmesh_kv_reserved_tokens") == 0);
  // Idle workers cost nothing to remove (removal_cost.hpp): a series each, named by id and endpoint.
  CHECK(sample(router, "starmesh_worker_removal_cost{worker=\"1\"}") == 0);
  CHECK(sample(router, "starmesh_worker_removal_cost{worker=\"2\"}") == 0);

  // Workers free their KV on a fire-and-forget message: give them a moment.
  double encoded = 0, encoded_tokens = 0, reserved = 1;
  for (int attempt = 0; attempt < 100 && reserved != 0; ++attempt) {
    encoded = encoded_tokens = reserved = 0;
    for (size_t i = 1; i < ports.size(); ++i) {
      const std::string w = test::http_get(ports[i], "/metrics").body;
      encoded += sample(w, "starmesh_worker_requests_total{result=\"encoded\"}");
      encoded_tokens += sample(w, "starmesh_worker_encoded_tokens_total");
      reserved += sample(w, "starmesh_worker_kv_reserved_tokens");
      CHECK(sample(w, "starmesh_worker_kv_capacity_tokens") == 2048);
    }
    if (reserved != 0) std::this_thread::sleep_for(50ms);
  }
  CHECK(encoded == done->summary.hosts);
  REQUIRE(done->summary.hosts == 2);  // so the query host exchanged with the other
  double exchanges = 0, received = 0, partials = 0;
  for (size_t i = 1; i < ports.size(); ++i) {
    const std::string w = test::http_get(ports[i], "/metrics").body;
    exchanges += sample(w, "starmesh_worker_phase2_exchange_seconds_count");
    partials += sample(w, "starmesh_worker_shard_partial_seconds_count");
    received += sample(w, "starmesh_worker_phase2_exchange_bytes_total{direction=\"received\"}");
    CHECK(sample(w, "starmesh_build_info") == 1);
  }
  CHECK(exchanges >= double(done->ids.size()));  // a layer of every step at least
  CHECK(partials == exchanges);                  // the shard host answered each exchange once
  CHECK(received > 0);
  CHECK(encoded_tokens == 700);
  CHECK(reserved == 0);

  // A real Prometheus server scraping the three endpoints.
  test::PrometheusServer prom({ports[0], ports[1], ports[2]});
  const auto up = prom.wait_for(
      "count(up == 1)", [](double v) { return v == 3; }, 30s);
  INFO("prometheus log:\n" << prom.log());
  REQUIRE(up == 3);
  CHECK(prom.wait_for(
            "sum(starmesh_requests_total)", [](double v) { return v == 2; }, 10s) == 2);
  CHECK(prom.wait_for(
            "sum(starmesh_worker_encoded_tokens_total)", [](double v) { return v == 700; }, 10s) == 700);

  // The dashboard and the rules use only exported names (router's and workers').
  std::string exported = router;
  for (size_t i = 1; i < ports.size(); ++i) exported += test::http_get(ports[i], "/metrics").body;
  const std::set<std::string> have = metric_names(exported);
  const std::string dir = STARMESH_SOURCE_DIR "/deploy/k8s/monitoring";
  const auto dashboard = nlohmann::json::parse(read_file(dir + "/starmesh-dashboard.json"));
  std::string exprs;
  for (const auto& panel : dashboard["panels"])
    for (const auto& target : panel["targets"]) exprs += target["expr"].get<std::string>() + "\n";
  const std::string rules = read_file(dir + "/prometheus-rules.yml");
  for (const std::string& used : metric_names(exprs + rules)) {
    CAPTURE(used);
    CHECK(have.count(used) == 1);
  }
  CHECK(metric_names(exprs).size() >= 10);
  // promtool validates the rules file.
  const std::string check = "promtool check rules " + dir + "/prometheus-rules.yml > /dev/null 2>&1";
  CHECK(std::system(check.c_str()) == 0);
}

TEST_CASE("every /metrics endpoint of a live mesh passes promtool check metrics") {
  MeshConfig cfg{{2, true, false}};
  caf::actor_system sys{cfg};
  const LocalMeshOptions o = test::metrics_mesh_options();
  auto mesh = LocalMesh::start(sys, o);
  REQUIRE_MESSAGE(mesh, (mesh ? "" : mesh.error().message));
  GenerateOrder ok;  // so the histograms and the phase-2 exchange have observations
  ok.request.context_ids = test::random_token_ids(600, 8);
  ok.request.query_ids = test::random_token_ids(4, 9);
  ok.request.block_size = 256;
  ok.request.max_new_tokens = 4;
  REQUIRE((*mesh)->client().run(ok));
  const auto dir = std::filesystem::temp_directory_path() / ("starmesh-promtool-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  for (size_t i = 0; i < (*mesh)->metrics_ports().size(); ++i) {
    const auto got = test::http_get((*mesh)->metrics_ports()[i], "/metrics");
    REQUIRE(got.status == 200);
    const auto file = dir / ("endpoint-" + std::to_string(i) + ".prom");
    std::ofstream(file) << got.body;
    const std::string cmd = "promtool check metrics < " + file.string() + " > " + file.string() + ".out 2>&1";
    CAPTURE(i);  // 0: the router, then the workers
    INFO("promtool says:\n" << read_file(file.string() + ".out") << "\nof:\n" << got.body);
    CHECK(std::system(cmd.c_str()) == 0);
    CHECK(read_file(file.string() + ".out").empty());
  }
  std::filesystem::remove_all(dir);
}
