// ShardBatcher: shard loops asking their layer's partial at once are batched, and each gets
// what shard_partial gives it alone; a query's prefill (several rows) and a bad ask run alone.
#include <doctest/doctest.h>

#include <random>
#include <thread>

#include "starmesh/runtime/shard_batcher.hpp"
#include "support/phase2_requests.hpp"

using namespace starmesh;

namespace {
struct Shards : test::Phase2Requests {
  // A random host q [n, hq, d].
  Tensor random_q(int64_t n, uint32_t seed) const {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1, 1);
    const int64_t hq = model.config().num_attention_heads, d = model.config().head_dim;
    std::vector<float> v(size_t(n * hq * d));
    for (float& x : v) x = u(rng);
    return Tensor::from_f32(v, {n, hq, d});
  }
  AttentionState alone(const KvCache& shard, int layer, const Tensor& q) const {
    const Tensor q_dev = model.backend().upload(q, model.backend().activation_dtype()).value();
    return shard_partial(model, shard, layer, q_dev).value();
  }
};
}  // namespace

TEST_CASE_FIXTURE(Shards, "shard partials asked at once run as one batch, each as shard_partial alone") {
  // Six requests' shards (other lengths), each asking a layer of its own with one query row,
  // and one asking with three rows (a query's prefill), all queued while the device is taken;
  // then a batch with an ask of a layer that does not exist.
  std::vector<test::Request> reqs;
  for (uint32_t i = 0; i < 6; ++i) reqs.push_back(make(30 + 17 * i, 2, false, 90 + i, 8));
  DeviceArbiter arbiter;
  ShardBatcher batcher(arbiter, 8);
  std::mutex mu;
  std::vector<size_t> sizes;
  batcher.on_batch([&](size_t n) {
    std::lock_guard lock(mu);
    sizes.push_back(n);
  });
  struct Ask {
    const KvCache* shard;
    int layer;
    Tensor q;
  };
  const auto run = [&](const std::vector<Ask>& asks) {
    sizes.clear();
    arbiter.acquire(WorkKind::phase1, 999);
    std::vector<Expected<AttentionState>> got(asks.size(), Error{"not run"});
    std::vector<std::thread> threads;
    for (size_t i = 0; i < asks.size(); ++i)
      threads.emplace_back(
          [&, i] { got[i] = batcher.partial(model, *asks[i].shard, asks[i].layer, asks[i].q, 100 + i); });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // all queued behind the held device
    arbiter.release();
    for (auto& t : threads) t.join();
    return got;
  };
  std::vector<Ask> asks;
  for (size_t i = 0; i < reqs.size(); ++i)
    asks.push_back({&reqs[i].others[0].cache, int(i) % model.layers(), random_q(1, 200 + uint32_t(i))});
  asks.push_back({&reqs[0].others[0].cache, 1, random_q(3, 300)});
  const auto got = run(asks);
  for (size_t i = 0; i < asks.size(); ++i) {
    CAPTURE(i);
    REQUIRE(got[i]);
    const AttentionState want = alone(*asks[i].shard, asks[i].layer, asks[i].q);
    CHECK(got[i]->o.to_f32_vector() == want.o.to_f32_vector());
    CHECK(got[i]->lse.to_f32_vector() == want.lse.to_f32_vector());
  }
  CHECK(std::max_element(sizes.begin(), sizes.end()) != sizes.end());
  CHECK(*std::max_element(sizes.begin(), sizes.end()) >= 5);               // the one-row asks went together
  CHECK(std::find(sizes.begin(), sizes.end(), size_t(1)) != sizes.end());  // the prefill alone

  // An ask of a layer that does not exist fails alone; the batch's others are answered.
  const std::vector<Ask> with_bad{asks[0], {asks[1].shard, model.layers() + 5, asks[1].q}, asks[2]};
  const auto got2 = run(with_bad);
  CHECK(got2[0]);
  CHECK(got2[2]);
  REQUIRE_FALSE(got2[1]);
  CHECK(got2[1].error().message.find("no layer") != std::string::npos);
  if (got2[0]) CHECK(got2[0]->o.to_f32_vector() == got[0]->o.to_f32_vector());
}
