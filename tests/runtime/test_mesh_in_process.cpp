// The whole mesh in one process: the real router, real context workers (phase 1 threads,
// shard loops, query coordinators) on CAF's threaded scheduler, the in-process data plane.
// Tokens and logits must equal the single-process Star Attention engine with the same plan.
#include <doctest/doctest.h>

#include <atomic>
#include <cstring>
#include <future>
#include <mutex>
#include <random>
#include <thread>

#include "starmesh/attention/star_session.hpp"
#include "starmesh/backend/cpu_backend.hpp"
#include "starmesh/model/generator.hpp"
#include "starmesh/runtime/context_worker.hpp"
#include "starmesh/runtime/mesh_client.hpp"
#include "starmesh/runtime/mesh_config.hpp"
#include "starmesh/runtime/router.hpp"
#include "starmesh/runtime/worker_membership.hpp"
#include "support/engine_reference.hpp"

extern "C" void openblas_set_num_threads(int);

using namespace starmesh;
using namespace std::chrono_literals;
using test::Reference;

namespace {

struct InProcessMesh {
  // One model for every worker: a pool of 1 computes inline, so concurrent callers are safe.
  // OpenBLAS too runs on the caller's thread: its own threads fight over 2 cores otherwise.
  int blas = (openblas_set_num_threads(1), 1);
  ThreadPool pool{1};
  CpuBackend cpu{pool};
  Transformer model = Transformer::load(cpu, STARMESH_GOLDEN_MODEL_DIR).value();
  std::shared_ptr<InProcessHub> hub = InProcessHub::create();
  std::vector<std::unique_ptr<data_plane_i>> planes;
  MeshConfig cfg{{2, false, false}};
  caf::actor_system sys{cfg};
  RouterActor router;
  std::vector<WorkerActor> workers;
  std::unique_ptr<MeshClient> client;

  InProcessMesh() {
    RouterOptions o;
    o.model_dir = STARMESH_GOLDEN_MODEL_DIR;
    o.block_size = 128;
    o.control_timeout = 10s;
    o.phase1_timeout = 60s;
    o.step_timeout = 20s;
    router = spawn_router(sys, load_router_context(o).value());
    client = std::make_unique<MeshClient>(sys, router);
  }
  ~InProcessMesh() {
    for (auto& w : workers) caf::anon_send_exit(w, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(router, caf::exit_reason::user_shutdown);
    sys.await_all_actors_done();
  }

  WorkerActor add_worker(int64_t capacity, int64_t page_tokens = 0) {
    planes.push_back(hub->plane());
    WorkerSetup s;
    s.model = &model;
    s.data_plane = planes.back().get();
    s.endpoint = "in-process:" + std::to_string(workers.size() + 1);
    s.kv_capacity = capacity;
    s.kv_page_tokens = page_tokens;
    WorkerActor w = spawn_context_worker(sys, s);
    REQUIRE(register_worker(sys, router, w, 5s));
    workers.push_back(w);
    return w;
  }

  std::vector<int32_t> random_ids(size_t n, uint32_t seed) const { return test::random_token_ids(n, seed); }
  Reference star(const std::vector<int32_t>& ctx, const std::vector<int32_t>& query, int64_t block, int hosts,
                 int max_new, const SamplingParams& sampling = {}) {
    return test::star_reference(model, ctx, query, block, hosts, max_new, sampling);
  }
  Reference global(const std::vector<int32_t>& ctx, const std::vector<int32_t>& query, int max_new) {
    return test::global_reference(model, ctx, query, max_new);
  }

  // Runs a request over `ctx` that keeps its context (it must succeed).
  MeshClient::Result keep_context(const std::vector<int32_t>& ctx, const std::vector<int32_t>& query, int max_new) {
    auto o = order(ctx, query, 128, max_new);
    o.request.keep_context = true;
    auto got = client->run(o);
    REQUIRE_MESSAGE(got, (got ? "" : got.error().message));
    REQUIRE_FALSE(got->summary.context_id.empty());
    return std::move(*got);
  }
  // The KV the router has booked on all workers now.
  int64_t total_reserved() {
    const auto members = client->members();  // held: a range over a temporary's value() would dangle
    int64_t sum = 0;
    for (const auto& w : members.value()) sum += w.reserved;
    return sum;
  }

  static GenerateOrder order(const std::vector<int32_t>& ctx, const std::vector<int32_t>& query, int64_t block,
                             int max_new, AttentionMode mode = AttentionMode::star) {
    GenerateOrder o;
    o.request.context_ids = ctx;
    o.request.query_ids = query;
    o.request.block_size = block;
    o.request.max_new_tokens = max_new;
    o.request.mode = mode;
    o.return_logits = true;
    return o;
  }
};

}  // namespace

namespace {

// Router + 4 workers: tokens and logits equal the single-process star engine.
void check_four_workers(InProcessMesh& m) {
  for (int i = 0; i < 4; ++i) m.add_worker(4096);
  const auto ctx = m.random_ids(1000, 1), query = m.random_ids(7, 2);
  auto got = m.client->run(m.order(ctx, query, 128, 12));
  REQUIRE_MESSAGE(got, (got ? "" : got.error().message));
  CHECK(got->summary.hosts == 4);
  CHECK(got->summary.context_tokens == 1000);
  CHECK(got->summary.generated_tokens == 12);
  const Reference want = m.star(ctx, query, 128, 4, 12);
  CHECK(got->ids == want.ids);
  CHECK(got->logits == want.logits);  // same arithmetic in the same order: bit for bit
  CHECK_FALSE(got->text.empty());
  // Every worker has its KV back.
  const auto members = m.client->members();  // held: a range over a temporary's value() would dangle
  for (const auto& w : members.value()) CHECK(w.reserved == 0);
}

}  // namespace

TEST_CASE_FIXTURE(InProcessMesh, "router + 4 workers: tokens and logits equal the single-process star engine") {
  check_four_workers(*this);
}

TEST_CASE_FIXTURE(InProcessMesh, "a context that fits one block equals global attention") {
  for (int i = 0; i < 3; ++i) add_worker(4096);
  const auto ctx = random_ids(100, 3), query = random_ids(5, 4);
  auto got = client->run(order(ctx, query, 128, 10));
  REQUIRE_MESSAGE(got, (got ? "" : got.error().message));
  CHECK(got->summary.hosts == 1);
  const Reference want = global(ctx, query, 10);
  CHECK(got->ids == want.ids);
  REQUIRE(got->logits.size() == want.logits.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < want.logits.size(); ++i) {
    num += double(got->logits[i] - want.logits[i]) * (got->logits[i] - want.logits[i]);
    den += double(want.logits[i]) * want.logits[i];
  }
  CHECK(std::sqrt(num / den) < 1e-5);
  // Global mode: the same, whatever the block size.
  auto g = client->run(order(ctx, query, 16, 10, AttentionMode::global));
  REQUIRE(g);
  CHECK(g->ids == want.ids);
}

namespace {

void check_concurrent_requests(InProcessMesh& m) {
  for (int i = 0; i < 3; ++i) m.add_worker(8192);
  const auto c1 = m.random_ids(700, 5), q1 = m.random_ids(6, 6);
  const auto c2 = m.random_ids(500, 7), q2 = m.random_ids(4, 8);
  std::optional<Expected<MeshClient::Result>> r1, r2;
  std::thread t1([&] { r1.emplace(m.client->run(m.order(c1, q1, 128, 10))); });
  std::thread t2([&] { r2.emplace(m.client->run(m.order(c2, q2, 128, 10))); });
  t1.join();
  t2.join();
  REQUIRE(*r1);
  REQUIRE(*r2);
  CHECK((*r1)->ids == m.star(c1, q1, 128, 3, 10).ids);
  CHECK((*r2)->ids == m.star(c2, q2, 128, 3, 10).ids);
}

}  // namespace

TEST_CASE_FIXTURE(InProcessMesh, "concurrent requests on shared workers do not mix") {
  check_concurrent_requests(*this);
}

// The mesh over a data plane that says it carries device memory: phase 2 takes the NCCL
// path (Q sent from the device, each shard's partial written into its message there and
// merged where it lands; step headers on the host), here on the CPU backend, whose device is
// the host. It must answer exactly as the host path does.
struct DeviceWireMesh : InProcessMesh {
  DeviceWireMesh() { hub = InProcessHub::create(/*carries_device_memory=*/true); }
};

TEST_CASE_FIXTURE(DeviceWireMesh,
                  "device-memory data plane - router + 4 workers equal the single-process star engine") {
  check_four_workers(*this);
}

TEST_CASE_FIXTURE(DeviceWireMesh, "device-memory data plane - concurrent requests on shared workers do not mix") {
  check_concurrent_requests(*this);
}

TEST_CASE_FIXTURE(InProcessMesh, "a real worker refuses an order beyond its KV capacity, and frees what it held") {
  WorkerActor w = add_worker(300);
  caf::scoped_actor self{sys};
  EncodeOrder o;
  o.request_id = 42;
  o.plan = {400, 400, 0, 1};
  o.host = 0;
  o.shard_ids = pack_ids(random_ids(400, 9));
  o.local_capacity = 20;
  o.group = {{1, "in-process:1", planes.back()->address()}};
  std::string error;
  // Without its 32-byte data-plane key an order is refused before anything is reserved.
  o.data_plane_key.assign(5, 3);
  Error keyless;
  self->request(w, 5s, encode_atom::value, o)
      .receive([&](EncodeReport&) { keyless.message = "accepted"; }, [&](caf::error& e) { keyless = to_error(e); });
  CHECK(keyless.code == ErrorCode::invalid_argument);
  CHECK(keyless.message == "request 42: the data-plane key has 5 bytes, not 32");
  o.data_plane_key.assign(kMessageKeyBytes, 3);
  self->request(w, 5s, encode_atom::value, o)
      .receive([&](EncodeReport&) { error = "accepted"; }, [&](caf::error& e) { error = describe(e); });
  CHECK(error ==
        "refused: request 42 needs 420 KV tokens here but only 300 of 300 are free (start the worker with "
        "a larger --capacity, or add workers)");
  // A smaller order fits, runs phase 1, and free gives the KV back.
  o.request_id = 43;
  o.plan = {200, 200, 0, 1};
  o.shard_ids = pack_ids(random_ids(200, 10));
  std::optional<EncodeReport> report;
  self->request(w, 10s, encode_atom::value, o)
      .receive([&](EncodeReport& r) { report = r; }, [&](caf::error& e) { FAIL(describe(e)); });
  REQUIRE(report);
  CHECK(report->tokens == 200);
  CHECK(report->kv_free == 80);
  int64_t free_after = -1;
  self->request(w, 5s, free_atom::value, uint64_t(43)).receive([&](int64_t f) { free_after = f; }, [](caf::error&) {});
  CHECK(free_after == 300);
}

TEST_CASE_FIXTURE(InProcessMesh,
                  "encode once, ask many times: a kept context answers new queries as a fresh encoding would") {
  for (int i = 0; i < 3; ++i) add_worker(4096);
  const auto ctx = random_ids(1000, 61);
  const auto q1 = random_ids(5, 62), q2 = random_ids(7, 63), q3 = random_ids(3, 64);
  const auto first = keep_context(ctx, q1, 10);
  const ContextId kept = first.summary.context_id;
  CHECK(first.ids == star(ctx, q1, 128, 3, 10).ids);
  // The context's KV stays booked on its workers, and nothing else.
  CHECK(total_reserved() == 1000);

  // New queries over it, one after the other and two at once: the tokens and logits of a
  // fresh encoding of the same context, without phase 1.
  for (const auto& q : {q2, q3}) {
    GenerateOrder again = order({}, q, 128, 10);
    again.request.context_id = kept;
    auto got = client->run(again);
    REQUIRE_MESSAGE(got, (got ? "" : got.error().message));
    const Reference want = star(ctx, q, 128, 3, 10);
    CHECK(got->ids == want.ids);
    CHECK(got->logits == want.logits);
    CHECK(got->summary.context_id == kept);
    CHECK(got->summary.context_tokens == 1000);
    CHECK(got->summary.phase1_seconds < first.summary.phase1_seconds);
  }
  std::vector<std::thread> both;
  std::vector<Expected<MeshClient::Result>> answers(2, Error{"not run"});
  for (int i = 0; i < 2; ++i)
    both.emplace_back([&, i] {
      GenerateOrder o = order({}, i ? q2 : q3, 128, 6);
      o.request.context_id = kept;
      answers[size_t(i)] = client->run(o);
    });
  for (auto& t : both) t.join();
  for (int i = 0; i < 2; ++i) {
    REQUIRE(answers[size_t(i)]);
    CHECK(answers[size_t(i)]->ids == star(ctx, i ? q2 : q3, 128, 3, 6).ids);
  }
  CHECK(total_reserved() == 1000);  // the queries' own KV went back
}

TEST_CASE_FIXTURE(InProcessMesh, "a kept context gives way when its KV is needed, and asking it again says so") {
  for (int i = 0; i < 2; ++i) add_worker(1200);
  const ContextId kept = keep_context(random_ids(1500, 71), random_ids(4, 72), 4).summary.context_id;
  // A new context that needs most of both workers: the kept one is dropped to make room.
  const auto big = random_ids(2000, 73), query = random_ids(4, 74);
  auto second = client->run(order(big, query, 128, 4));
  REQUIRE_MESSAGE(second, (second ? "" : second.error().message));
  CHECK(second->ids == star(big, query, 128, 2, 4).ids);
  GenerateOrder again = order({}, query, 128, 4);
  again.request.context_id = kept;
  auto gone = client->run(again);
  REQUIRE_FALSE(gone);
  CHECK(gone.error().message.find("no kept context " + kept.hex()) != std::string::npos);
  CHECK(gone.code() == ErrorCode::not_found);
  // Freed on request: asking it again is refused, its KV is back.
  const auto third = keep_context(random_ids(600, 75), random_ids(4, 76), 4);
  REQUIRE(client->drop(third.summary.context_id));
  GenerateOrder after_drop = order({}, query, 128, 4);
  after_drop.request.context_id = third.summary.context_id;
  auto dropped = client->run(after_drop);
  REQUIRE_FALSE(dropped);
  CHECK(dropped.error().message.find("no kept context") != std::string::npos);
  CHECK(dropped.code() == ErrorCode::not_found);
  const auto members = client->members();
  for (const auto& w : members.value()) CHECK(w.reserved == 0);
  // Bad combinations are refused with what to change.
  GenerateOrder both = order(big, query, 128, 4);
  both.request.context_id = kept;
  auto refused = client->run(both);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().message.find("not both") != std::string::npos);
}

TEST_CASE_FIXTURE(InProcessMesh,
                  "a worker that leaves frees its kept shards, and the next question encodes the context again") {
  add_worker(4096);
  WorkerActor second = add_worker(4096);
  const auto ctx = random_ids(800, 81);
  const ContextId kept = keep_context(ctx, random_ids(4, 82), 4).summary.context_id;
  caf::scoped_actor self{sys};
  bool known = false;
  self->request(router, 5s, leave_atom::value, second).receive([&](bool k) { known = k; }, [](caf::error&) {});
  CHECK(known);
  const auto members = client->members();
  for (const auto& w : members.value()) CHECK(w.reserved == 0);  // its shards went everywhere
  // The worker's pool is empty again (the context's KV went back), so it can drain.
  self->request(second, 5s, status_atom::value)
      .receive([&](WorkerInfo& info) { CHECK(info.kv_free == 4096); }, [](caf::error&) { FAIL("no status"); });
  // The context is still there: its next question encodes it again on the worker that stays.
  const auto query = random_ids(4, 83);
  GenerateOrder again = order({}, query, 128, 4);
  again.request.context_id = kept;
  auto answer = client->run(again);
  REQUIRE_MESSAGE(answer, (answer ? "" : answer.error().message));
  CHECK(answer->summary.hosts == 1);
  CHECK(answer->ids == star(ctx, query, 128, 1, 4).ids);
  CHECK(total_reserved() == 800);  // the new shard is the context's now
}

namespace {
// What a client saw of one request, in order: progress events and token chunks ("tokens").
struct Seen {
  std::mutex mutex;
  std::vector<Progress> events;
  std::vector<std::string> order;  // "queued", "encoding", "prefill", "tokens"
  std::promise<Expected<GenerateSummary>> done;
};

Expected<GenerateSummary> run_watched(MeshClient& client, GenerateRequest r, Seen& seen) {
  r.on_progress = [&seen](const Progress& p) {
    std::lock_guard lock(seen.mutex);
    seen.events.push_back(p);
    seen.order.emplace_back(to_string(p.stage));
  };
  client.generate(
      std::move(r),
      [&seen](const TokenChunk&) {
        std::lock_guard lock(seen.mutex);
        if (seen.order.empty() || seen.order.back() != "tokens") seen.order.emplace_back("tokens");
        return true;
      },
      [&seen](Expected<GenerateSummary> s) { seen.done.set_value(std::move(s)); });
  return seen.done.get_future().get();
}
}  // namespace

TEST_CASE_FIXTURE(InProcessMesh,
                  "progress: queued with the request id, every phase-1 block once, prefill, then tokens") {
  for (int i = 0; i < 3; ++i) add_worker(4096);
  GenerateRequest r = order(random_ids(1000, 91), random_ids(5, 92), 128, 6).request;
  r.keep_context = true;
  Seen seen;
  auto summary = run_watched(*client, r, seen);
  REQUIRE_MESSAGE(summary, (summary ? "" : summary.error().message));
  CHECK(summary->request_id != 0);
  REQUIRE(seen.events.size() >= 3);
  CHECK(seen.events.front().stage == ProgressStage::queued);
  for (const Progress& p : seen.events) CHECK(p.request_id == summary->request_id);
  // 1000 tokens in blocks of 128: 8 blocks on 3 hosts. Each block is counted once, in order.
  std::vector<int64_t> done;
  for (const Progress& p : seen.events)
    if (p.stage == ProgressStage::encoding) {
      CHECK(p.blocks_total == 8);
      CHECK(p.hosts == 3);
      done.push_back(p.blocks_done);
    }
  REQUIRE(done.size() == 9);  // 0 of 8, then one event per block
  for (size_t i = 0; i < done.size(); ++i) CHECK(done[i] == int64_t(i));
  const std::vector<std::string> stages = {"queued", "encoding", "prefill", "tokens"};
  std::vector<std::string> collapsed;
  for (const std::string& s : seen.order)
    if (collapsed.empty() || collapsed.back() != s) collapsed.push_back(s);
  CHECK(collapsed == stages);

  // Asking the kept context again encodes nothing: queued, prefill, tokens.
  GenerateRequest again = order({}, random_ids(5, 93), 128, 4).request;
  again.context_id = summary->context_id;
  Seen second;
  auto answer = run_watched(*client, again, second);
  REQUIRE_MESSAGE(answer, (answer ? "" : answer.error().message));
  CHECK(answer->request_id > summary->request_id);
  CHECK(second.order == std::vector<std::string>{"queued", "prefill", "tokens"});
}

TEST_CASE_FIXTURE(InProcessMesh, "paged KV: the mesh answers as the unpaged engine, and a cancel frees pages at once") {
  const auto ctx = random_ids(1000, 101), query = random_ids(7, 102);
  const Reference want = star(ctx, query, 128, 3, 12);  // before paging: whole allocations
  // The workers share this process's model, so one arena holds the three workers' pools.
  const KvPageGeometry g = page_kv(model, 3 * 4096, 16, 2s).value();
  const int64_t per_worker = g.capacity_tokens / 3 / g.page_tokens * g.page_tokens;
  const auto& arena = model.kv_paging().arena;
  REQUIRE(arena);
  for (int i = 0; i < 3; ++i) add_worker(per_worker, g.page_tokens);

  auto got = client->run(order(ctx, query, 128, 12));
  REQUIRE_MESSAGE(got, (got ? "" : got.error().message));
  CHECK(got->ids == want.ids);
  CHECK(got->logits == want.logits);
  auto pages_back = [&](std::chrono::milliseconds within) {
    const auto until = std::chrono::steady_clock::now() + within;
    while (arena->free_pages() != arena->pages() && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(1ms);
    return arena->free_pages() == arena->pages();
  };
  CHECK(pages_back(2s));

  // A long generation, cancelled at its first tokens: its shards' and local pages return as
  // soon as its threads let go, and the router's books are empty.
  std::promise<Expected<GenerateSummary>> done;
  std::atomic<int64_t> pages_while_running{0};
  GenerateRequest r = order(random_ids(900, 103), query, 128, 2000).request;
  client->generate(
      std::move(r),
      [&](const TokenChunk&) {
        pages_while_running = arena->pages() - arena->free_pages();
        return false;  // cancel
      },
      [&](Expected<GenerateSummary> s) { done.set_value(std::move(s)); });
  auto ended = done.get_future().get();
  REQUIRE_MESSAGE(ended, (ended ? "" : ended.error().message));
  CHECK(ended->stop_reason == StopReason::cancelled);
  CHECK(ended->generated_tokens < 2000);
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(pages_while_running.load() > 0);
  CHECK(pages_back(2s));
  MESSAGE("pages back " << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() * 1e3
                        << " ms after the cancel was answered");
  const auto members = client->members();
  for (const auto& w : members.value()) CHECK(w.reserved == 0);
}

TEST_CASE_FIXTURE(
    InProcessMesh,
    "a random mix served at once (sampling seeds, a kept context asked thrice, a cancel): each as alone") {
  for (int i = 0; i < 2; ++i) add_worker(8192);
  const auto kept_ctx = random_ids(600, 111);
  const auto first = keep_context(kept_ctx, random_ids(4, 112), 4);
  const ContextId kept = first.summary.context_id;
  const int kept_hosts = first.summary.hosts;

  struct Ask {
    std::vector<int32_t> ctx, query;  // ctx empty: over the kept context
    SamplingParams sampling;
    int max_new;
    int cancel_after = 0;  // chunks; 0: runs to its end
  };
  std::mt19937 rng(113);
  std::vector<Ask> asks;
  for (int i = 0; i < 3; ++i) {  // the kept context, asked three times at once; one of them sampled
    Ask a{{}, random_ids(3 + size_t(i), 120 + i), {}, 10};
    if (i == 1) a.sampling = {0.8f, 0, 1.0f, 77};
    asks.push_back(a);
  }
  for (int i = 0; i < 3; ++i) {  // fresh contexts of random lengths; two sampled with their own seeds
    Ask a{random_ids(200 + rng() % 400, 130 + i), random_ids(2 + rng() % 5, 140 + i), {}, 8 + int(rng() % 6)};
    if (i > 0) a.sampling = {0.9f, 50, 0.95f, 1000 + uint64_t(i)};
    asks.push_back(a);
  }
  asks.push_back({random_ids(400, 150), random_ids(3, 151), {}, 400, 4});  // cancelled after 4 chunks

  struct Got {
    std::vector<int32_t> ids;
    std::vector<float> logits;
    Expected<GenerateSummary> summary = Error{"not run"};
  };
  std::vector<Got> got(asks.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < asks.size(); ++i)
    threads.emplace_back([&, i] {
      const Ask& a = asks[i];
      GenerateOrder o = order(a.ctx, a.query, 128, a.max_new);
      o.request.sampling = a.sampling;
      if (a.ctx.empty()) o.request.context_id = kept;
      std::promise<void> done;
      int chunks = 0;
      client->submit(
          std::move(o),
          [&](const ClientChunk& c) {
            got[i].ids.insert(got[i].ids.end(), c.ids.begin(), c.ids.end());
            const size_t at = got[i].logits.size();
            got[i].logits.resize(at + c.logits.size() / sizeof(float));
            std::memcpy(got[i].logits.data() + at, c.logits.data(), c.logits.size());
            return a.cancel_after == 0 || ++chunks < a.cancel_after;
          },
          [&](Expected<GenerateSummary> s) {
            got[i].summary = std::move(s);
            done.set_value();
          });
      done.get_future().wait();
    });
  for (auto& t : threads) t.join();

  const size_t vocab = size_t(model.config().vocab_size);
  for (size_t i = 0; i < asks.size(); ++i) {
    CAPTURE(i);
    const Ask& a = asks[i];
    REQUIRE_MESSAGE(got[i].summary, (got[i].summary ? "" : got[i].summary.error().message));
    const Reference want = a.ctx.empty() ? star(kept_ctx, a.query, 128, kept_hosts, a.max_new, a.sampling)
                                         : star(a.ctx, a.query, 128, got[i].summary->hosts, a.max_new, a.sampling);
    if (a.cancel_after > 0) {  // what it got before the cancel is the start of what it gets alone
      CHECK(got[i].summary->stop_reason == StopReason::cancelled);
      REQUIRE(got[i].ids.size() < want.ids.size());
      CHECK(std::equal(got[i].ids.begin(), got[i].ids.end(), want.ids.begin()));
      continue;
    }
    CHECK(got[i].ids == want.ids);
    // Batched GEMMs round in their own order: logits agree to float precision, not bits.
    REQUIRE(got[i].logits.size() == got[i].ids.size() * vocab);
    CHECK(test::relative_distance(got[i].logits, want.logits) < 1e-5);
  }
  // Only the kept context holds KV now: the questions' and the cancelled request's went back.
  CHECK(total_reserved() == 600);
}
