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
std::span<const int32_t> one(const int32_t& id) { return {&id, 1}; }

struct Batcher : test::Phase2Requests {
  DeviceArbiter arbiter;
  DecodeBatcher batcher{arbiter, 4};
  std::mutex sizes_mu;
  std::vector<size_t> sizes;
  Batcher() {
    batcher.on_batch([this](const DecodeBatcher::Shape& b) {
      std::lock_guard lock(sizes_mu);
      sizes.push_back(b.decode_steps);
    });
  }
  // `steps` tokens of r through the batcher, on the calling thread; stops at the first error.
  Status generate(Request& r, uint64_t id, int steps) {
    for (int s = 0; s < steps; ++s) {
      auto logits = batcher.step(*r.host, *r.remotes, one(r.next), id);
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
  for (Request& r : alone) run_alone(r, steps);
  // The device held while every thread asks its first step: they queue, then run in batches.
  arbiter.acquire(WorkKind::phase1, 999);
  std::vector<Status> results(batched.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < batched.size(); ++i)
    threads.emplace_back([&, i] { results[i] = generate(batched[i], i, steps); });
  while (batcher.waiting() < batched.size() - 1) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  arbiter.release();
  for (auto& t : threads) t.join();
  for (const Status& r : results) REQUIRE(r);
  test::check_as_alone(batched, alone);
  size_t steps_run = 0, largest = 0;
  for (size_t n : sizes) {
    steps_run += n;
    largest = std::max(largest, n);
  }
  CHECK(steps_run == batched.size() * steps);
  CHECK(largest == 4);  // the cap: 6 asked while the device was taken, 4 in a batch
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
  run_alone(ok_alone, 6);
  CHECK(ok.tokens == ok_alone.tokens);
}

TEST_CASE_FIXTURE(test::Phase2Requests,
                  "requests stepping together stay one batch: the leader waits for the last batch's") {
  // Without the wait, the threads of one batch come back (sampling their token) while the next
  // batch has already started with whoever was queued, and the requests split into two groups
  // taking turns. The window is wide here so that a slow machine cannot split a batch.
  DeviceArbiter arbiter;
  DecodeBatcher batcher(arbiter, 8, 0, std::chrono::milliseconds(500));
  std::mutex mu;
  std::vector<size_t> sizes;
  batcher.on_batch([&](const DecodeBatcher::Shape& b) {
    std::lock_guard lock(mu);
    sizes.push_back(b.decode_steps);
  });
  std::vector<Request> reqs;
  for (uint32_t i = 0; i < 6; ++i) reqs.push_back(make(40 + 9 * i, 1 + int(i % 3), i % 2 == 1, 60 + i, 16));
  const int steps = 6;
  arbiter.acquire(WorkKind::phase1, 999);  // every thread queued before the first batch
  std::vector<std::thread> threads;
  std::vector<Status> results(reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i)
    threads.emplace_back([&, i] {
      Request& r = reqs[i];
      for (int s = 0; s < steps && results[i]; ++s) {
        auto logits = batcher.step(*r.host, *r.remotes, one(r.next), i);
        if (!logits) {
          results[i] = logits.status();
          break;
        }
        r.next = greedy(logits->to_f32_vector());
      }
      batcher.leave(i);
    });
  // All six queued (the leader counts among the waiting): one still on its way when the device
  // frees would miss the first batch (seen on a loaded machine).
  while (batcher.waiting() < reqs.size()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  arbiter.release();
  for (auto& t : threads) t.join();
  for (const Status& st : results) CHECK(st);
  std::string shown;
  for (size_t n : sizes) shown += std::to_string(n) + " ";
  INFO("batches: " << shown);
  CHECK(sizes == std::vector<size_t>(size_t(steps), reqs.size()));
}

TEST_CASE_FIXTURE(test::Phase2Requests, "a request that leaves is not waited for") {
  DeviceArbiter arbiter;
  DecodeBatcher batcher(arbiter, 8, 0, std::chrono::seconds(3));
  Request short_one = make(50, 2, false, 70, 16), long_one = make(60, 2, true, 71, 16);
  std::thread t([&] {
    for (int s = 0; s < 2; ++s)
      short_one.next =
          greedy(batcher.step(*short_one.host, *short_one.remotes, one(short_one.next), 1).value().to_f32_vector());
    batcher.leave(1);
  });
  t.join();
  // Both stepped in the last batch; one left: the next batches start at once.
  const auto t0 = std::chrono::steady_clock::now();
  for (int s = 0; s < 4; ++s)
    long_one.next =
        greedy(batcher.step(*long_one.host, *long_one.remotes, one(long_one.next), 2).value().to_f32_vector());
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(2));
}

TEST_CASE_FIXTURE(test::Phase2Requests,
                  "queries' prefills join the decode batch within its prefill budget, and each request gets what it "
                  "gets alone") {
  DeviceArbiter arbiter;
  DecodeBatcher batcher(arbiter, 8, 10);  // at most 10 prefill tokens a batch
  std::mutex mu;
  std::vector<DecodeBatcher::Shape> batches;
  batcher.on_batch([&](const DecodeBatcher::Shape& b) {
    std::lock_guard lock(mu);
    batches.push_back(b);
  });
  // Three requests decoding, three arriving with queries of 6, 5 and 4 tokens (6 + 5 > 10).
  const Spec mix[] = {{40, 1, false, true, 3}, {97, 3, true, true, 3},   {64, 2, false, true, 3},
                      {80, 2, true, false, 6}, {55, 3, false, false, 5}, {33, 1, false, false, 4}};
  const int steps = 4;  // tokens after the query
  std::vector<Request> alone, batched;
  for (size_t i = 0; i < std::size(mix); ++i) {
    alone.push_back(make(mix[i], uint32_t(80 + i), 16));
    batched.push_back(make(mix[i], uint32_t(80 + i), 16));
  }
  for (Request& r : alone) run_alone(r, steps);
  arbiter.acquire(WorkKind::phase1, 999);  // every first step queued before the first batch
  std::vector<Status> results(batched.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < batched.size(); ++i)
    threads.emplace_back([&, i] {
      Request& r = batched[i];
      while (int(r.tokens.size()) < steps + 1) {
        auto logits =
            batcher.step(*r.host, *r.remotes, r.tokens.empty() ? std::span<const int32_t>(r.query) : one(r.next), i);
        if (!logits) {
          results[i] = logits.status();
          break;
        }
        record(r, logits->to_f32_vector());
      }
      batcher.leave(i);
    });
  while (batcher.waiting() < batched.size()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  arbiter.release();
  for (auto& t : threads) t.join();
  for (const Status& r : results) REQUIRE(r);
  test::check_as_alone(batched, alone);
  // The first batch took every decode step and the prefills that fit the budget; the prefill
  // left out ran in a later batch; no batch went over the budget.
  REQUIRE_FALSE(batches.empty());
  CHECK(batches.front().decode_steps == 3);
  CHECK(batches.front().prefills >= 1);
  CHECK(batches.front().prefill_tokens <= 10);
  int64_t prefilled = 0;
  size_t prefills = 0;
  for (const DecodeBatcher::Shape& b : batches) {
    CHECK(b.prefill_tokens <= 10);
    prefilled += b.prefill_tokens;
    prefills += b.prefills;
  }
  CHECK(prefills == 3);
  CHECK(prefilled == 6 + 5 + 4);
  // A prefill over the budget is refused, naming the budget (the coordinator runs it alone).
  Request big = make(40, 1, false, 90, 32, false, 11);
  auto over = batcher.step(*big.host, *big.remotes, big.query, 77);
  REQUIRE_FALSE(over);
  CHECK(over.error().message.find("prefill budget of 10") != std::string::npos);
  CHECK(big.host->local_tokens() == 0);
}

TEST_CASE_FIXTURE(Batcher, "a request out of room fails alone, before it joins a batch") {
  Request full = make(40, 1, false, 95, 4), ok = make(60, 2, true, 96, 16), ok_alone = make(60, 2, true, 96, 16);
  REQUIRE(generate(full, 1, 1));  // 3 query tokens + 1: the capacity of 4 is used up
  // The device held and another request queued: the full one is refused at once, without
  // waiting for a batch (so none of its batch fails with it).
  arbiter.acquire(WorkKind::phase1, 999);
  Status ok_result;
  std::thread t([&] { ok_result = generate(ok, 2, 3); });
  while (batcher.waiting() < 1) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const auto over = batcher.step(*full.host, *full.remotes, one(full.next), 1);
  arbiter.release();
  t.join();
  REQUIRE_FALSE(over);
  CHECK(over.error().message.find("room") != std::string::npos);
  CHECK(full.host->local_tokens() == 4);
  REQUIRE(ok_result);
  run_alone(ok_alone, 3);
  CHECK(ok.tokens == ok_alone.tokens);
}

TEST_CASE_FIXTURE(test::Phase2Requests,
                  "a batch's prefills take turns between tenants: one tenant's burst does not "
                  "hold back another's question") {
  DeviceArbiter arbiter;
  DecodeBatcher batcher(arbiter, 8, 8);  // room for two 4-token prefills a batch
  std::mutex mu;
  std::vector<DecodeBatcher::Shape> batches;
  batcher.on_batch([&](const DecodeBatcher::Shape& b) {
    std::lock_guard lock(mu);
    batches.push_back(b);
  });
  // Tenant 1 asks three questions, then tenant 2 one, all queued before the first batch.
  const uint64_t tenant[] = {1, 1, 1, 2};
  std::vector<Request> reqs, alone;
  for (uint32_t i = 0; i < 4; ++i) {
    reqs.push_back(make(Spec{40 + 10 * i, 1, false, false, 4}, 100 + i, 8));
    alone.push_back(make(Spec{40 + 10 * i, 1, false, false, 4}, 100 + i, 8));
    run_alone(alone.back(), 0);
  }
  arbiter.acquire(WorkKind::phase1, 999);
  std::vector<Status> results(reqs.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < reqs.size(); ++i) {
    threads.emplace_back([&, i] {
      auto logits = batcher.step(*reqs[i].host, *reqs[i].remotes, reqs[i].query, i, tenant[i]);
      if (logits)
        record(reqs[i], logits->to_f32_vector());
      else
        results[i] = logits.status();
      batcher.leave(i);
    });
    while (batcher.waiting() < i + 1) std::this_thread::sleep_for(std::chrono::milliseconds(1));  // in this order
  }
  arbiter.release();
  for (auto& t : threads) t.join();
  for (const Status& r : results) REQUIRE(r);
  test::check_as_alone(reqs, alone);
  // The first batch: tenant 1's oldest and tenant 2's question (not tenant 1's second).
  REQUIRE(batches.size() == 2);
  CHECK(batches[0].prefills == 2);
  CHECK(batches[0].prefill_tenants == 2);
  CHECK(batches[1].prefill_tenants == 1);
}

TEST_CASE_FIXTURE(test::Phase2Requests,
                  "steps asked with their sampling rule get the token drawn from their own logits, as alone") {
  // The leader draws every row's token after the batch; each request keeps its own rule and
  // draws. Alone: the same step, then backend.sample with the same spec.
  DeviceArbiter arbiter;
  DecodeBatcher batcher(arbiter, 8);
  const SamplingParams rules[] = {
      {0.0f, 0, 1.0f, 1}, {0.9f, 0, 1.0f, 7}, {1.3f, 20, 1.0f, 8}, {0.7f, 0, 0.8f, 9}, {2.0f, 5, 0.9f, 10}};
  const int steps = 6;
  std::vector<Request> alone, batched;
  for (uint32_t i = 0; i < std::size(rules); ++i) {
    alone.push_back(make(50 + 13 * i, 1 + int(i % 3), i % 2 == 0, 80 + i, 16));
    batched.push_back(make(50 + 13 * i, 1 + int(i % 3), i % 2 == 0, 80 + i, 16));
  }
  for (size_t i = 0; i < alone.size(); ++i) {
    Sampler sampler(rules[i]);
    Request& r = alone[i];
    for (int s = 0; s < steps; ++s) {
      Tensor logits = r.host->step(one(r.next), *r.remotes).value();
      r.logits.push_back(logits.to_f32_vector());
      r.next = cpu.sample(logits, sampler.next_spec()).value();
      r.tokens.push_back(r.next);
    }
  }
  arbiter.acquire(WorkKind::phase1, 999);
  std::vector<Status> results(batched.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < batched.size(); ++i)
    threads.emplace_back([&, i] {
      Sampler sampler(rules[i]);
      Request& r = batched[i];
      for (int s = 0; s < steps; ++s) {
        auto out = batcher.step_sampled(*r.host, *r.remotes, one(r.next), i, 0, sampler.next_spec());
        if (!out) {
          results[i] = out.status();
          return;
        }
        r.logits.push_back(out->logits.to_f32_vector());
        r.next = out->token;
        r.tokens.push_back(r.next);
      }
      batcher.leave(i);
    });
  while (batcher.waiting() < batched.size()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  arbiter.release();
  for (auto& t : threads) t.join();
  for (const Status& st : results) REQUIRE(st);
  test::check_as_alone(batched, alone);
  // The rules drew more than the greedy token somewhere (else this would test argmax only).
  bool drew_other = false;
  for (size_t i = 1; i < alone.size(); ++i)
    for (size_t s = 0; s < alone[i].logits.size(); ++s)
      drew_other |= alone[i].tokens[s + 1] != greedy(alone[i].logits[s]);
  CHECK(drew_other);
}

TEST_CASE_FIXTURE(test::Phase2Requests, "a step asked with a malformed sampling rule is refused before it queues") {
  DeviceArbiter arbiter;
  DecodeBatcher batcher(arbiter, 8);
  Request r = make(40, 2, false, 5, 16);
  const int64_t held = r.host->local_tokens();
  const auto bad = batcher.step_sampled(*r.host, *r.remotes, one(r.next), 1, 0, SampleSpec{0.5f, 0, 1.0f, 1.5});
  REQUIRE_FALSE(bad);
  CHECK(bad.code() == ErrorCode::invalid_argument);
  CHECK(bad.status().message().find("uniform draw") != std::string::npos);
  CHECK(batcher.waiting() == 0);
  CHECK(r.host->local_tokens() == held);  // the bad step ran nothing
}
