// Phase 2 on the data plane (in-process fabric): RemoteShards at the query host and
// serve_shard loops at the shard hosts give exactly the logits of InProcessShards.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <random>
#include <thread>

#include "starmesh/attention/star_session.hpp"
#include "starmesh/backend/cpu_backend.hpp"
#include "starmesh/comm/in_process_transport.hpp"
#include "starmesh/model/generator.hpp"
#include "starmesh/runtime/data_plane.hpp"
#include "starmesh/runtime/remote_shards.hpp"
#include "starmesh/runtime/shard_server.hpp"

using namespace starmesh;

namespace {
struct Tiny {
  ThreadPool pool{1};
  CpuBackend cpu{pool};
  Transformer model = Transformer::load(cpu, STARMESH_GOLDEN_MODEL_DIR).value();
  std::vector<int32_t> ids(size_t n, uint32_t seed) const {
    std::mt19937 rng(seed);
    std::vector<int32_t> v(n);
    for (auto& x : v) x = int32_t(rng() % 2000);
    return v;
  }
};
}  // namespace

TEST_CASE("phase-2 tags keep step, layer and kind apart") {
  CHECK(phase2_tag(0, 0, Phase2Kind::header) != phase2_tag(0, 0, Phase2Kind::query));
  CHECK(phase2_tag(1, 0, Phase2Kind::query) != phase2_tag(0, 1, Phase2Kind::query));
  CHECK(phase2_tag(0xfffff, 255, Phase2Kind::partial) <= 0xffffffffull);  // fits UCX's 32-bit user tag
  const Phase2Header h{Phase2Op::step, 3, 7, 4};
  const Phase2Header back = decode_header(encode_header(h));
  CHECK(back.step == 3);
  CHECK(back.rows == 7);
  CHECK(back.layers == 4);
}

TEST_CASE_FIXTURE(Tiny, "RemoteShards + serve_shard over the in-process fabric equal InProcessShards, bit for bit") {
  const auto ctx = ids(600, 1), query = ids(9, 2);
  const StarOptions so{128, -1, 3};
  // Truth: the single-process session.
  auto truth = StarSession::encode(model, ctx, so, 32).value();
  GenerationParams p;
  p.max_new_tokens = 8;
  std::vector<int32_t> want_ids;
  std::vector<std::vector<float>> want_logits;
  REQUIRE(generate_with(
      cpu,
      [&](std::span<const int32_t> x) {
        auto r = truth->step(x);
        if (r) want_logits.push_back(r->to_f32_vector());
        return r;
      },
      query, p,
      [&](int32_t t) {
        want_ids.push_back(t);
        return true;
      }));

  // The same plan, hosts 0 and 1 served by loops on their own threads.
  const BlockPlan plan = truth->plan();
  auto anchor = encode_anchor(model, plan, ctx).value();
  std::vector<KvShard> shards;
  for (int h = 0; h < 3; ++h) shards.push_back(encode_shard(model, plan, h, ctx, &anchor).value());
  InProcessFabric fabric(3);
  MutexComputeLock compute;
  std::atomic<bool> stop{false};
  std::vector<std::thread> servers;
  std::vector<Expected<ShardServerStats>> served(2, Error{"not run"});
  for (int h = 0; h < 2; ++h)
    servers.emplace_back([&, h] {
      served[size_t(h)] = serve_shard(model, shards[size_t(h)].cache, fabric.endpoint(h), compute, stop, {});
    });
  RemoteShards remotes(model, fabric.endpoint(2), {"host 0", "host 1", "host 2"}, std::chrono::seconds(10));
  auto qh = QueryHost::create(model, std::move(shards[2]), int64_t(ctx.size()), 32).value();
  std::vector<int32_t> got_ids;
  std::vector<std::vector<float>> got_logits;
  REQUIRE(generate_with(
      cpu,
      [&](std::span<const int32_t> x) {
        std::unique_lock<compute_lock_i> lock(compute);
        remotes.release_while_waiting(&lock);
        auto r = qh.step(x, remotes);
        if (r) got_logits.push_back(r->to_f32_vector());
        return r;
      },
      query, p,
      [&](int32_t t) {
        got_ids.push_back(t);
        return true;
      }));
  CHECK(remotes.finish());
  for (auto& t : servers) t.join();
  for (auto& s : served) {
    REQUIRE(s);
    CHECK(s->steps == int64_t(want_logits.size()));
  }
  CHECK(got_ids == want_ids);
  REQUIRE(got_logits.size() == want_logits.size());
  for (size_t i = 0; i < got_logits.size(); ++i) CHECK(got_logits[i] == want_logits[i]);
}

TEST_CASE_FIXTURE(Tiny,
                  "a shard host that never answers: the coordinator's gather fails at its deadline, naming the hosts") {
  const auto ctx = ids(300, 3);
  auto plan = plan_blocks(300, 128, -1, 2).value();
  auto anchor = encode_anchor(model, plan, ctx).value();
  auto own = encode_shard(model, plan, 1, ctx, &anchor).value();
  InProcessFabric fabric(2);  // rank 0 runs no loop
  RemoteShards remotes(model, fabric.endpoint(1), {"worker 1 at a:1", "worker 2 at b:2"},
                       std::chrono::milliseconds(200));
  auto qh = QueryHost::create(model, std::move(own), 300, 8).value();
  const auto t0 = std::chrono::steady_clock::now();
  auto r = qh.step(ids(3, 4), remotes);
  REQUIRE_FALSE(r);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
  CAPTURE(r.error().message);
  CHECK(r.error().message.find("worker 1 at a:1") != std::string::npos);
  CHECK(r.error().message.find("did not all answer within 0.2 s") != std::string::npos);
}

TEST_CASE_FIXTURE(Tiny, "serve_shard stops when told, and on the coordinator's done") {
  const auto ctx = ids(200, 5);
  auto plan = plan_blocks(200, 100, 0, 2).value();
  auto shard = encode_shard(model, plan, 0, ctx, nullptr).value();
  InProcessFabric fabric(2);
  MutexComputeLock compute;
  std::atomic<bool> stop{false};
  Expected<ShardServerStats> result = Error{"not run"};
  std::thread t([&] { result = serve_shard(model, shard.cache, fabric.endpoint(0), compute, stop, {}); });
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  stop = true;
  t.join();
  REQUIRE(result);
  CHECK(result->steps == 0);
  stop = false;
  std::thread t2([&] { result = serve_shard(model, shard.cache, fabric.endpoint(0), compute, stop, {}); });
  RemoteShards remotes(model, fabric.endpoint(1), {}, std::chrono::seconds(5));
  CHECK(remotes.finish());
  t2.join();
  CHECK(result);
}

TEST_CASE_FIXTURE(Tiny, "a query host with no shard host: every other shard is here (none), steps equal global's") {
  const auto ctx = ids(200, 5), query = ids(4, 6);
  InProcessFabric alone(1), pair(2);
  RemoteShards none(model, alone.endpoint(0), {"worker 1 at a:1"}, std::chrono::seconds(5));
  RemoteShards some(model, pair.endpoint(1), {"worker 1 at a:1", "worker 2 at b:2"}, std::chrono::seconds(5));
  REQUIRE(none.shards_here() != nullptr);
  CHECK(none.shards_here()->empty());
  CHECK(some.shards_here() == nullptr);  // its shard host answers over the network

  // One host holding the whole context, stepped through `none`: the logits of global attention.
  auto plan = plan_blocks(200, 200, -1, 1).value();
  auto qh = QueryHost::create(model, encode_shard(model, plan, 0, ctx, nullptr).value(), 200, 8).value();
  auto cache = model.make_cache(200 + 8).value();
  std::vector<int32_t> prompt = ctx;
  prompt.insert(prompt.end(), query.begin(), query.end());
  REQUIRE(model.forward(prompt, cache));
  REQUIRE(qh.step(query, none));
  for (int32_t t : {7, 11, 13}) {
    const auto got = qh.step(std::span<const int32_t>(&t, 1), none).value().to_f32_vector();
    const auto want = model.forward(std::span<const int32_t>(&t, 1), cache).value().to_f32_vector();
    REQUIRE(got.size() == want.size());
    float worst = 0;
    for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::abs(got[i] - want[i]));
    CHECK(worst < 1e-4f);
  }
}
