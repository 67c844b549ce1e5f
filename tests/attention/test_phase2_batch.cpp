// QueryHost::step_batch: several requests' decode steps as one batch give every request the
// logits and tokens it gets alone, whatever the mix (context lengths, shard layouts, shards in
// this process or behind a gather, requests joining and leaving the batch).
#include <doctest/doctest.h>

#include <algorithm>
#include <random>

#include "support/phase2_requests.hpp"
#include "support/reference.hpp"

using namespace starmesh;

using test::GatheredShards;
using test::Request;
using Batch = test::Phase2Requests;

TEST_CASE_FIXTURE(Batch, "a batch of decode steps gives every request the logits and tokens it gets alone") {
  // Six requests: lengths, host counts and shard paths differ; 6 tokens each.
  const struct {
    int64_t ctx;
    int hosts;
    bool gathered;
  } mix[] = {{40, 1, false}, {97, 3, false}, {64, 2, true}, {130, 4, true}, {55, 3, false}, {81, 2, true}};
  const int steps = 6;
  std::vector<Request> alone, batched;
  for (size_t i = 0; i < std::size(mix); ++i) {
    alone.push_back(make(mix[i].ctx, mix[i].hosts, mix[i].gathered, uint32_t(10 + i), 16));
    batched.push_back(make(mix[i].ctx, mix[i].hosts, mix[i].gathered, uint32_t(10 + i), 16));
  }
  for (Request& r : alone) run_alone(r, steps);
  // Batched: each round a random subset of the unfinished requests, in a random order.
  std::mt19937 rng(7);
  for (int round = 0;; ++round) {
    std::vector<size_t> open;
    for (size_t i = 0; i < batched.size(); ++i)
      if (int(batched[i].logits.size()) < steps) open.push_back(i);
    if (open.empty()) break;
    std::shuffle(open.begin(), open.end(), rng);
    open.resize(1 + rng() % open.size());
    std::vector<QueryHost*> hosts;
    std::vector<remote_partials_i*> remotes;
    std::vector<int32_t> ids;
    for (size_t i : open) {
      hosts.push_back(&*batched[i].host);
      remotes.push_back(batched[i].remotes.get());
      ids.push_back(batched[i].next);
    }
    const QueryHost::BatchStep step = QueryHost::step_batch(hosts, remotes, ids).value();
    const Tensor& logits = step.logits;
    REQUIRE(logits.dim(0) == int64_t(open.size()));
    for (const Status& s : step.outcome) REQUIRE(s);
    for (size_t j = 0; j < open.size(); ++j) {
      Request& r = batched[open[j]];
      const std::vector<float> row = logits.rows(int64_t(j), int64_t(j) + 1).to_f32_vector();
      r.logits.push_back(row);
      r.next = greedy(row);
      r.tokens.push_back(r.next);
    }
    REQUIRE(round < 100);
  }
  test::check_as_alone(batched, alone);
}

TEST_CASE_FIXTURE(Batch, "a batch that cannot run refuses, naming why, and advances no request") {
  Request a = make(50, 2, false, 1, 16), full = make(40, 1, true, 2, 4);  // capacity 4: 3 query tokens + 1
  const int64_t a_before = a.host->local_tokens();
  std::vector<QueryHost*> hosts{&*a.host, &*full.host};
  std::vector<remote_partials_i*> remotes{a.remotes.get(), full.remotes.get()};
  std::vector<int32_t> ids{a.next, full.next};
  REQUIRE(QueryHost::step_batch(hosts, remotes, ids));  // the 4th token fits
  auto over = QueryHost::step_batch(hosts, remotes, ids);
  REQUIRE_FALSE(over);
  CHECK(over.error().message.find("exceed the local capacity of 4") != std::string::npos);
  CHECK(a.host->local_tokens() == a_before + 1);  // only the step that ran
  std::vector<QueryHost*> twice{&*a.host, &*a.host};
  std::vector<remote_partials_i*> rr{a.remotes.get(), a.remotes.get()};
  auto dup = QueryHost::step_batch(twice, rr, ids);
  REQUIRE_FALSE(dup);
  CHECK(dup.error().message.find("twice") != std::string::npos);
  CHECK(a.host->local_tokens() == a_before + 1);
}

TEST_CASE_FIXTURE(Batch, "a request whose shard hosts fail mid-step drops out alone, and the others go on as alone") {
  Request a = make(70, 3, false, 21, 16), lost = make(90, 3, true, 22, 16), c = make(60, 2, true, 23, 16);
  Request a_alone = make(70, 3, false, 21, 16), c_alone = make(60, 2, true, 23, 16);
  auto* lost_shards = static_cast<GatheredShards*>(lost.remotes.get());
  lost_shards->gathers = 0;
  lost_shards->fail_from = 1;  // from layer 1 of the next step
  const int64_t lost_before = lost.host->local_tokens();
  std::vector<QueryHost*> hosts{&*a.host, &*lost.host, &*c.host};
  std::vector<remote_partials_i*> remotes{a.remotes.get(), lost.remotes.get(), c.remotes.get()};
  std::vector<int32_t> ids{a.next, lost.next, c.next};
  const QueryHost::BatchStep step = QueryHost::step_batch(hosts, remotes, ids).value();
  CHECK(step.outcome[0]);
  REQUIRE_FALSE(step.outcome[1]);
  CHECK(step.outcome[1].code() == ErrorCode::unavailable);
  CHECK(step.outcome[2]);
  CHECK(lost.host->local_tokens() == lost_before);  // it did not advance
  for (auto [row, alone] : {std::pair{0, &a_alone}, {2, &c_alone}}) {
    const auto want =
        alone->host->step(std::span<const int32_t>(&alone->next, 1), *alone->remotes).value().to_f32_vector();
    CHECK(test::relative_error(step.logits.rows(row, row + 1).to_f32_vector(), want) < 1e-5);
  }
}

TEST_CASE_FIXTURE(Batch,
                  "queries join other requests' decode steps as prefills, and every request gets what it gets alone") {
  // Three requests already decoding, four whose queries (2 to 9 tokens) arrive in later
  // rounds: each round a random subset of the open requests steps, a new one with its whole
  // query, the others one token.
  const Batch::Spec mix[] = {{40, 1, false, true, 3},  {97, 3, false, true, 3},  {64, 2, true, true, 3},
                             {130, 4, true, false, 9}, {55, 3, false, false, 2}, {81, 2, true, false, 5},
                             {33, 1, false, false, 4}};
  const int steps = 5;  // after the query
  std::vector<Request> alone, batched;
  for (size_t i = 0; i < std::size(mix); ++i) {
    alone.push_back(make(mix[i], uint32_t(40 + i), 24));
    batched.push_back(make(mix[i], uint32_t(40 + i), 24));
  }
  for (Request& r : alone) run_alone(r, steps);
  std::mt19937 rng(11);
  int prefills_batched_with_decodes = 0;
  for (int round = 0;; ++round) {
    std::vector<size_t> open;
    for (size_t i = 0; i < batched.size(); ++i)
      if (int(batched[i].tokens.size()) < steps + 1) open.push_back(i);
    if (open.empty()) break;
    std::shuffle(open.begin(), open.end(), rng);
    open.resize(1 + rng() % open.size());
    std::vector<QueryHost*> hosts;
    std::vector<remote_partials_i*> remotes;
    std::vector<std::vector<int32_t>> ids;
    int prefills = 0;
    for (size_t i : open) {
      Request& r = batched[i];
      hosts.push_back(&*r.host);
      remotes.push_back(r.remotes.get());
      ids.push_back(r.tokens.empty() ? r.query : std::vector<int32_t>{r.next});
      prefills += r.tokens.empty() ? 1 : 0;
    }
    if (prefills > 0 && prefills < int(open.size())) ++prefills_batched_with_decodes;
    const QueryHost::BatchStep step = QueryHost::step_batch(hosts, remotes, ids).value();
    REQUIRE(step.logits.dim(0) == int64_t(open.size()));
    for (const Status& s : step.outcome) REQUIRE(s);
    for (size_t j = 0; j < open.size(); ++j)
      record(batched[open[j]], step.logits.rows(int64_t(j), int64_t(j) + 1).to_f32_vector());
    REQUIRE(round < 100);
  }
  CHECK(prefills_batched_with_decodes > 0);  // the seed mixes them (else this tests nothing new)
  test::check_as_alone(batched, alone);
}

TEST_CASE_FIXTURE(Batch, "a prefill whose shard hosts fail drops out alone, and the decode steps beside it go on") {
  Request a = make(70, 3, false, 61, 16), lost = make(90, 3, true, 62, 16, false, 6);
  Request a_alone = make(70, 3, false, 61, 16);
  auto* lost_shards = static_cast<GatheredShards*>(lost.remotes.get());
  lost_shards->fail_from = 1;
  std::vector<QueryHost*> hosts{&*lost.host, &*a.host};
  std::vector<remote_partials_i*> remotes{lost.remotes.get(), a.remotes.get()};
  std::vector<std::vector<int32_t>> ids{lost.query, {a.next}};
  const QueryHost::BatchStep step = QueryHost::step_batch(hosts, remotes, ids).value();
  REQUIRE_FALSE(step.outcome[0]);
  CHECK(step.outcome[0].code() == ErrorCode::unavailable);
  CHECK(lost.host->local_tokens() == 0);  // its query did not go in
  REQUIRE(step.outcome[1]);
  const auto want = a_alone.host->step(std::span<const int32_t>(&a_alone.next, 1), *a_alone.remotes).value();
  CHECK(test::relative_error(step.logits.rows(1, 2).to_f32_vector(), want.to_f32_vector()) < 1e-5);
}
