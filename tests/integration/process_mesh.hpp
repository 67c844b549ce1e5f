#pragma once
// The integration tests' mesh: `starmesh router` and N `starmesh worker` processes on
// 127.0.0.1 (CPU, 1 thread each) through LocalMesh, driven over CAF from the test, with the
// single-process references (star engine, global attention) to compare against.
#include <doctest/doctest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <thread>

#include "starmesh/backend/cpu_backend.hpp"
#include "starmesh/launch/dev_tls.hpp"
#include "starmesh/launch/local_mesh.hpp"
#include "starmesh/runtime/mesh_config.hpp"
#include "support/engine_reference.hpp"

extern "C" void openblas_set_num_threads(int);

namespace starmesh::test {

// What a request's callbacks write while a test kills workers under it: held by a shared_ptr
// the callbacks keep, so a late callback after a failed REQUIRE finds it alive.
struct StreamedRun {
  std::mutex mu;
  std::vector<int32_t> ids;
  std::promise<Expected<GenerateSummary>> finished;
  std::atomic<bool> killed{false};
};

struct ProcessMesh {
  ThreadPool pool{1};
  CpuBackend cpu{pool};
  Transformer model = [this] {
    openblas_set_num_threads(1);  // as the workers (--threads 1)
    return Transformer::load(cpu, STARMESH_GOLDEN_MODEL_DIR).value();
  }();
  std::string logs = [] {
    char tmpl[] = "/tmp/starmesh-it-XXXXXX";
    REQUIRE(mkdtemp(tmpl));
    return std::string(tmpl);
  }();
  // The mesh speaks mutual TLS, as in production; this client presents the mesh's certificate.
  DevTls tls = make_dev_tls(logs + "/tls").value();
  MeshConfig cfg{{2, true, false, tls.mesh}};
  caf::actor_system sys{cfg};
  std::string model_dir = STARMESH_GOLDEN_MODEL_DIR;  // what the workers serve (set before start)
  std::unique_ptr<LocalMesh> mesh;

  ~ProcessMesh() {
    if (mesh) mesh->stop();
    mesh.reset();
    std::filesystem::remove_all(logs);
  }

  void start(const std::string& transport, int workers, std::vector<int64_t> capacities = {},
             std::vector<std::string> router_args = {}, bool metrics = false) {
    LocalMeshOptions o;
    o.program = STARMESH_CLI;
    o.model_dir = model_dir;
    o.workers = workers;
    o.transport = transport;
    o.capacity = 8192;
    o.capacities = std::move(capacities);
    o.threads_per_worker = 1;
    o.block_size = 256;
    o.router_args = std::move(router_args);
    o.log_dir = logs;
    o.tls = tls.mesh;
    o.metrics = metrics;
    auto m = LocalMesh::start(sys, o);
    REQUIRE_MESSAGE(m, (m ? "" : m.error().message));
    mesh = std::move(*m);
  }

  // A mesh whose router also serves the public API on a free port: its address, read from
  // the router's --api-port-file ("" if it never appeared).
  std::string start_with_api(int workers, std::vector<std::string> router_args = {}, bool metrics = false,
                             std::vector<int64_t> capacities = {}) {
    const std::string port_file = logs + "/api.port";
    router_args.insert(router_args.end(), {"--api-listen", "127.0.0.1:0", "--api-port-file", port_file});
    start("ucx-shm", workers, std::move(capacities), std::move(router_args), metrics);
    std::string port;
    for (int i = 0; i < 100 && port.empty(); ++i) {
      std::ifstream(port_file) >> port;
      if (port.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return port.empty() ? std::string() : "127.0.0.1:" + port;
  }

  // A request that fails shows the processes' logs; `expect_failure` leaves them out (a test
  // that checks a refusal shows them itself if the request was served after all): a log dump
  // of an expected failure would bury a later check's own message.
  Expected<MeshClient::Result> run(const std::vector<int32_t>& ctx, const std::vector<int32_t>& query, int64_t block,
                                   int max_new, bool expect_failure = false) {
    GenerateOrder o;
    o.request.context_ids = ctx;
    o.request.query_ids = query;
    o.request.block_size = block;
    o.request.max_new_tokens = max_new;
    o.return_logits = true;
    auto r = mesh->client().run(o);
    if (!r && !expect_failure) MESSAGE("logs:\n" << mesh->log_tail());
    return r;
  }

  std::vector<int32_t> random_ids(size_t n, uint32_t seed) const { return test::random_token_ids(n, seed); }
  Reference star(const std::vector<int32_t>& ctx, const std::vector<int32_t>& query, int64_t block, int hosts,
                 int max_new) {
    return test::star_reference(model, ctx, query, block, hosts, max_new);
  }
  Reference global(const std::vector<int32_t>& ctx, const std::vector<int32_t>& query, int max_new) {
    return test::global_reference(model, ctx, query, max_new);
  }

  // The two checks of the issue on a running mesh of 4 workers.
  void check_star_and_global() {
    const auto ctx = random_ids(1536, 11), query = random_ids(8, 12);
    auto got = run(ctx, query, 256, 16);
    REQUIRE_MESSAGE(got, (got ? "" : got.error().message));
    CHECK(got->summary.hosts == 4);
    CHECK(got->summary.generated_tokens == int64_t(got->ids.size()));
    const Reference want = star(ctx, query, 256, 4, 16);
    CHECK(got->ids == want.ids);
    const double err = test::relative_distance(got->logits, want.logits);
    const std::string exact = got->logits == want.logits ? " (bit for bit)" : "";
    MESSAGE("star, 1536 context tokens, 4 workers: logits relative distance " << err << exact);
    CHECK(err < 1e-6);

    const auto small = random_ids(200, 13);
    auto one = run(small, query, 256, 16);
    REQUIRE_MESSAGE(one, (one ? "" : one.error().message));
    CHECK(one->summary.hosts == 1);
    const Reference g = global(small, query, 16);
    CHECK(one->ids == g.ids);
    CHECK(test::relative_distance(one->logits, g.logits) < 1e-5);
  }
};

}  // namespace starmesh::test
