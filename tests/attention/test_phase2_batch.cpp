// QueryHost::step_batch: several requests' decode steps as one batch give every request the
// logits and tokens it gets alone, whatever the mix (context lengths, shard layouts, shards in
// this process or behind a gather, requests joining and leaving the batch).
#include <doctest/doctest.h>

#include <algorithm>
#include <random>

#include "starmesh/attention/star_session.hpp"
#include "starmesh/backend/cpu_backend.hpp"
#include "support/reference.hpp"

using namespace starmesh;

namespace {

// The other hosts' shards in this process, answered through gather only (as the data plane
// does): the batch then takes the per-request merge path, not the one-call path.
class GatheredShards final : public remote_partials_i {
 public:
  GatheredShards(const Transformer& model, std::vector<const KvShard*> shards) : inner_(model, std::move(shards)) {}
  Expected<std::vector<AttentionState>> gather(int layer, const Tensor& q) override { return inner_.gather(layer, q); }

 private:
  InProcessShards inner_;
};

struct Request {
  std::vector<KvShard> others;
  std::unique_ptr<remote_partials_i> remotes;
  std::optional<QueryHost> host;
  int32_t next = 0;
  std::vector<int32_t> tokens;
  std::vector<std::vector<float>> logits;
};

struct Batch {
  ThreadPool pool{2};
  CpuBackend cpu{pool};
  Transformer model = Transformer::load(cpu, STARMESH_GOLDEN_MODEL_DIR).value();

  int32_t greedy(const std::vector<float>& row) const {
    return int32_t(std::max_element(row.begin(), row.end()) - row.begin());
  }
  // A request over `context_tokens` random tokens, encoded by phase 1 in `hosts` blocks, its
  // query run alone; `gathered`: the other shards answer through gather.
  Request make(int64_t context_tokens, int hosts, bool gathered, uint32_t seed, int64_t capacity) const {
    std::mt19937 rng(seed);
    std::vector<int32_t> ctx(static_cast<size_t>(context_tokens)), query(3);
    for (auto* v : {&ctx, &query})
      for (int32_t& id : *v) id = int32_t(rng() % uint32_t(model.config().vocab_size - 8));
    const int64_t block = (context_tokens + hosts - 1) / hosts;
    auto plan = plan_blocks(context_tokens, block, block, hosts).value();
    auto anchor = encode_anchor(model, plan, ctx).value();
    Request r;
    for (int h = 0; h + 1 < hosts; ++h) r.others.push_back(encode_shard(model, plan, h, ctx, &anchor).value());
    std::vector<const KvShard*> ptrs;
    for (const KvShard& s : r.others) ptrs.push_back(&s);
    if (gathered)
      r.remotes = std::make_unique<GatheredShards>(model, ptrs);
    else
      r.remotes = std::make_unique<InProcessShards>(model, ptrs);
    r.host.emplace(
        QueryHost::create(model, encode_shard(model, plan, hosts - 1, ctx, &anchor).value(), context_tokens, capacity)
            .value());
    const std::vector<float> first = r.host->step(query, *r.remotes).value().to_f32_vector();
    r.next = greedy(first);
    r.tokens.push_back(r.next);
    return r;
  }
};

}  // namespace

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
  for (Request& r : alone)
    for (int s = 0; s < steps; ++s) {
      const std::vector<float> row =
          r.host->step(std::span<const int32_t>(&r.next, 1), *r.remotes).value().to_f32_vector();
      r.logits.push_back(row);
      r.next = greedy(row);
      r.tokens.push_back(r.next);
    }
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
    const Tensor logits = QueryHost::step_batch(hosts, remotes, ids).value();
    REQUIRE(logits.dim(0) == int64_t(open.size()));
    for (size_t j = 0; j < open.size(); ++j) {
      Request& r = batched[open[j]];
      const std::vector<float> row = logits.rows(int64_t(j), int64_t(j) + 1).to_f32_vector();
      r.logits.push_back(row);
      r.next = greedy(row);
      r.tokens.push_back(r.next);
    }
    REQUIRE(round < 100);
  }
  for (size_t i = 0; i < alone.size(); ++i) {
    CAPTURE(i);
    CHECK(batched[i].tokens == alone[i].tokens);
    for (int s = 0; s < steps; ++s)
      CHECK(test::relative_error(batched[i].logits[size_t(s)], alone[i].logits[size_t(s)]) < 1e-5);
    CHECK(batched[i].host->local_tokens() == alone[i].host->local_tokens());
  }
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
