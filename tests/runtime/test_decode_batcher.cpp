// DecodeBatcher: requests' threads asking decode steps at once get batched, and each gets the
// tokens and logits it gets alone; a request whose shard hosts fail fails alone.
#include <doctest/doctest.h>

#include <thread>

#include "starmesh/runtime/decode_batcher.hpp"
#include "support/phase2_requests.hpp"
#include "support/reference.hpp"

using namespace starmesh;
using test::GatheredShards;
using test::Request;

namespace {
struct Batcher : test::Phase2Requests {
  DeviceArbiter arbiter;
  DecodeBatcher batcher{arbiter, 4};
  std::mutex sizes_mu;
  std::vector<size_t> sizes;
  Batcher() {
    batcher.on_batch([this](size_t n) {
      std::lock_guard lock(sizes_mu);
      sizes.push_back(n);
    });
  }
  // `steps` tokens of r through the batcher, on the calling thread; stops at the first error.
  Status generate(Request& r, uint64_t id, int steps) {
    for (int s = 0; s < steps; ++s) {
      auto logits = batcher.step(*r.host, *r.remotes, r.next, id);
      if (!logits) return logits.status();
      r.logits.push_back(logits->to_f32_vector());
      r.next = greedy(r.logits.back());
      r.tokens.push_back(r.next);
    }
    return {};
  }
};
}  // namespace

TEST_CASE_FIXTURE(Batcher, "threads asking decode steps at once are batched, and each gets what it gets alone") {
  const struct {
    int64_t ctx;
    int hosts;
    bool gathered;
  } mix[] = {{40, 1, false}, {97, 3, false}, {64, 2, true}, {130, 4, true}, {55, 3, false}, {81, 2, true}};
  const int steps = 5;
  std::vector<Request> alone, batched;
  for (size_t i = 0; i < std::size(mix); ++i) {
    alone.push_back(make(mix[i].ctx, mix[i].hosts, mix[i].gathered, uint32_t(30 + i), 16));
    batched.push_back(make(mix[i].ctx, mix[i].hosts, mix[i].gathered, uint32_t(30 + i), 16));
  }
  for (Request& r : alone)
    for (int s = 0; s < steps; ++s) {
      r.logits.push_back(r.host->step(std::span<const int32_t>(&r.next, 1), *r.remotes).value().to_f32_vector());
      r.next = greedy(r.logits.back());
      r.tokens.push_back(r.next);
    }
  // The device held while every thread asks its first step: they queue, then run in batches.
  arbiter.acquire(WorkKind::phase1, 999);
  std::vector<Status> results(batched.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < batched.size(); ++i)
    threads.emplace_back([&, i] { results[i] = generate(batched[i], i, steps); });
  while (batcher.waiting() < batched.size() - 1) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  arbiter.release();
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < batched.size(); ++i) {
    CAPTURE(i);
    REQUIRE(results[i]);
    CHECK(batched[i].tokens == alone[i].tokens);
    for (int s = 0; s < steps; ++s)
      CHECK(test::relative_error(batched[i].logits[size_t(s)], alone[i].logits[size_t(s)]) < 1e-5);
  }
  size_t steps_run = 0, largest = 0;
  for (size_t n : sizes) {
    steps_run += n;
    largest = std::max(largest, n);
  }
  CHECK(steps_run == batched.size() * steps);
  CHECK(largest == 4);  // the cap: 5 queued behind the first, 4 in the next batch
  CHECK(sizes.size() < batched.size() * steps);
}

TEST_CASE_FIXTURE(Batcher, "a request whose shard hosts fail gets their error, and the batch's others finish") {
  Request ok = make(70, 3, true, 41, 16), lost = make(90, 3, true, 42, 16), ok_alone = make(70, 3, true, 41, 16);
  auto* shards = static_cast<GatheredShards*>(lost.remotes.get());
  shards->gathers = 0;
  shards->fail_from = 2 * model.layers() + 1;  // the third step, layer 1
  Status ok_result, lost_result;
  arbiter.acquire(WorkKind::phase1, 999);
  std::thread a([&] { ok_result = generate(ok, 1, 6); });
  std::thread b([&] { lost_result = generate(lost, 2, 6); });
  while (batcher.waiting() < 1) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  arbiter.release();
  a.join();
  b.join();
  REQUIRE(ok_result);
  REQUIRE_FALSE(lost_result);
  CHECK(lost_result.code() == ErrorCode::unavailable);
  CHECK(lost.tokens.size() == 3);  // the query's token and two steps
  for (int s = 0; s < 6; ++s) {
    ok_alone.logits.push_back(
        ok_alone.host->step(std::span<const int32_t>(&ok_alone.next, 1), *ok_alone.remotes).value().to_f32_vector());
    ok_alone.next = greedy(ok_alone.logits.back());
    ok_alone.tokens.push_back(ok_alone.next);
  }
  CHECK(ok.tokens == ok_alone.tokens);
}
