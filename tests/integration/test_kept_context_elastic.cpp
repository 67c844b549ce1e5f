// A kept context outlives the workers that held it (real processes on 127.0.0.1): the router
// keeps its token ids, and when a worker holding a shard of it drains (SIGTERM) or is killed
// (SIGKILL), the next question over it encodes it again on the workers left
// (kept_context_policy.hpp), then answers with the reference tokens. When the workers left
// cannot hold it, the question gets the retriable `unavailable`.
#include <doctest/doctest.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <fstream>
#include <future>
#include <memory>
#include <mutex>
#include <thread>

#include "integration/process_mesh.hpp"
#include "support/http_client.hpp"

using namespace starmesh;
using namespace std::chrono_literals;
using test::ProcessMesh;
using test::StreamedRun;

namespace {

// Keeps a 1200-token context (5 blocks of 256: a shard on each of 3 workers); returns its name.
ContextId keep_context(ProcessMesh& m, const std::vector<int32_t>& ctx, int hosts) {
  GenerateOrder first;
  first.request.context_ids = ctx;
  first.request.query_ids = m.random_ids(5, 92);
  first.request.block_size = 256;
  first.request.max_new_tokens = 6;
  first.request.keep_context = true;
  auto kept = m.mesh->client().run(first);
  REQUIRE_MESSAGE(kept, (kept ? "" : kept.error().message + "\n" + m.mesh->log_tail()));
  REQUIRE_FALSE(kept->summary.context_id.empty());
  CHECK(kept->summary.hosts == hosts);
  CHECK(kept->ids == m.star(ctx, first.request.query_ids, 256, hosts, 6).ids);
  return kept->summary.context_id;
}

Expected<MeshClient::Result> ask(ProcessMesh& m, const ContextId& id, const std::vector<int32_t>& query, int max_new) {
  GenerateOrder o;
  o.request.context_id = id;
  o.request.query_ids = query;
  o.request.max_new_tokens = max_new;
  return m.mesh->client().run(o);
}

bool wait_members(ProcessMesh& m, size_t n) {
  const auto until = std::chrono::steady_clock::now() + 15s;
  while (std::chrono::steady_clock::now() < until) {
    if (auto w = m.mesh->client().members(); w && w->size() == n) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

// How many times the router log says a kept context lost its shards and will be encoded again.
size_t reencodes_logged(const std::string& logs) {
  std::ifstream in(logs + "/router.log");
  size_t n = 0;
  for (std::string line; std::getline(in, line);) n += line.find("its next question encodes it again") != line.npos;
  return n;
}

// Asks question `q` over the kept context: it must equal the reference of the whole context
// planned on the hosts the answer reports, and a second question then reuses the new shards.
void check_answers(ProcessMesh& m, const ContextId& id, const std::vector<int32_t>& ctx, int hosts) {
  const auto q = m.random_ids(8, 93), q2 = m.random_ids(6, 94);
  auto got = ask(m, id, q, 12);
  REQUIRE_MESSAGE(got, (got ? "" : got.error().message + "\n" + m.mesh->log_tail(40)));
  CHECK(got->summary.hosts == hosts);
  CHECK(got->summary.context_id == id);
  CHECK(got->ids == m.star(ctx, q, 256, hosts, 12).ids);
  auto again = ask(m, id, q2, 10);
  REQUIRE_MESSAGE(again, (again ? "" : again.error().message + "\n" + m.mesh->log_tail(40)));
  CHECK(again->ids == m.star(ctx, q2, 256, hosts, 10).ids);
}

}  // namespace

TEST_CASE_FIXTURE(ProcessMesh, "kept context: its worker drains, the next question encodes it again and answers") {
  start("ucx-shm", 3, {}, {}, true);
  const auto ctx = random_ids(1200, 91);
  const ContextId id = keep_context(*this, ctx, 3);
  // Removing any of the three would cost the whole context (removal_cost.hpp).
  auto costs = [&] {  // the series' values, in worker order
    const std::string text = test::http_get(mesh->metrics_ports().at(0), "/metrics").body;
    std::vector<double> v;
    for (int w = 1; w <= 4; ++w) {
      const double c = test::metric_value(text, "starmesh_worker_removal_cost{worker=\"" + std::to_string(w) + "\"}");
      if (!std::isnan(c)) v.push_back(c);
    }
    return v;
  };
  CHECK(costs() == std::vector<double>{1200, 1200, 1200});
  REQUIRE(mesh->signal_worker(0, SIGTERM));  // drains: it holds a shard, and no question runs
  REQUIRE(wait_members(*this, 2));
  CHECK(reencodes_logged(logs) == 1);
  CHECK(costs() == std::vector<double>{0, 0});  // the drained one's series went, and its shards everywhere
  check_answers(*this, id, ctx, 2);
  CHECK(costs() == std::vector<double>{1200, 1200});  // encoded again on these two
  // A fresh worker joins in its place; the context stays where it was encoded again, and answers still.
  const Status joined = mesh->restart_worker(sys, 0);
  REQUIRE_MESSAGE(joined, joined.message());
  REQUIRE(wait_members(*this, 3));
  auto later = ask(*this, id, random_ids(4, 95), 8);
  REQUIRE_MESSAGE(later, (later ? "" : later.error().message));
  CHECK(later->ids == star(ctx, random_ids(4, 95), 256, 2, 8).ids);
  CHECK(reencodes_logged(logs) == 1);
  // Drop still works: then it is gone.
  REQUIRE(mesh->client().drop(id));
  auto gone = ask(*this, id, random_ids(4, 96), 4);
  REQUIRE_FALSE(gone);
  CHECK_MESSAGE(gone.code() == ErrorCode::not_found, gone.error().message << "\n" << mesh->log_tail(40));
}

TEST_CASE_FIXTURE(ProcessMesh,
                  "kept context: its query host is killed, the next question encodes it again and answers") {
  start("ucx-shm", 3);
  const auto ctx = random_ids(1200, 81);
  const ContextId id = keep_context(*this, ctx, 3);
  REQUIRE(mesh->signal_worker(2, SIGKILL));
  REQUIRE(wait_members(*this, 2));
  CHECK(reencodes_logged(logs) == 1);
  check_answers(*this, id, ctx, 2);
}

TEST_CASE_FIXTURE(ProcessMesh,
                  "kept context: a shard host killed while a question runs over it, the answer is the reference") {
  start("ucx-tcp", 3);  // a SIGKILL mid-send over shm can wedge a survivor (docs/TRAPS.md)
  const auto ctx = random_ids(1200, 71), q = random_ids(6, 72);
  const ContextId id = keep_context(*this, ctx, 3);
  auto run = std::make_shared<StreamedRun>();  // shared with the callbacks
  GenerateOrder o;
  o.request.context_id = id;
  o.request.query_ids = q;
  o.request.max_new_tokens = 24;
  LocalMesh* m = mesh.get();
  mesh->client().submit(
      o,
      [run, m](const ClientChunk& c) {
        std::lock_guard lock(run->mu);
        run->ids.insert(run->ids.end(), c.ids.begin(), c.ids.end());
        if (run->ids.size() >= 3 && !run->killed.exchange(true)) (void)m->signal_worker(0, SIGKILL);
        return true;
      },
      [run](Expected<GenerateSummary> s) { run->finished.set_value(std::move(s)); });
  auto done = run->finished.get_future();
  REQUIRE_MESSAGE(done.wait_for(60s) == std::future_status::ready, "hangs; logs:\n" << mesh->log_tail(40));
  auto got = done.get();
  REQUIRE_MESSAGE(got, (got ? "" : got.error().message + "\n" + mesh->log_tail(40)));
  CHECK(run->killed.load());
  CHECK(got->hosts == 2);  // planned again on the two left, the context encoded again
  std::lock_guard lock(run->mu);
  CHECK(run->ids == star(ctx, q, 256, 2, 24).ids);
}

TEST_CASE_FIXTURE(ProcessMesh,
                  "kept context: when the workers left cannot hold it, the question is refused as unavailable") {
  start("ucx-shm", 2, {1000, 1000});
  const auto ctx = random_ids(1200, 61);
  const ContextId id = keep_context(*this, ctx, 2);
  REQUIRE(mesh->signal_worker(0, SIGKILL));
  REQUIRE(wait_members(*this, 1));
  auto got = ask(*this, id, random_ids(4, 62), 4);
  REQUIRE_FALSE(got);
  CHECK(got.code() == ErrorCode::unavailable);
  MESSAGE(got.error().message);
}
